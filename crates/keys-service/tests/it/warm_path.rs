//! The warm path (verified JWTs remembered by the digest of the token)
//! hides nothing: the same script of verifications and key changes, run on
//! a service with the warm path and on one without, gets the same verdict
//! at every step, and the steps where a change must refuse a token that
//! was verified (and remembered) a moment before do refuse it.

use keys_core::{GracePeriod, Name, NewServiceToken};
use keys_crypto::jwt::Algorithm;
use keys_crypto::mint;
use keys_service::{Caller, Clock, PublicKeyRequest, ServiceConfig};
use serde_json::json;

use crate::fixture::{fixture_with, Fixture, T0};

/// The fixture with the warm path remembering `verified_token_cache_entries`
/// tokens; the same seed on both sides: the same ids, keys and so tokens.
async fn fixture(verified_token_cache_entries: usize) -> Fixture {
    fixture_with(ServiceConfig { rsa_pool_capacity: 0, verified_token_cache_entries, ..ServiceConfig::default() }, 42)
        .await
}

/// Each step's label and verdict: `valid:<entity or sub>` or the reason.
type Transcript = Vec<(String, String)>;

struct Script<'a> {
    fixture: &'a Fixture,
    transcript: Transcript,
}

impl Script<'_> {
    async fn user(&mut self, label: &str, api_key: &str, token: &str, tenant: Option<&str>) {
        let request = PublicKeyRequest { api_key, user_token: Some(token), tenant_id: tenant, ..Default::default() };
        let verdict = self.fixture.service.verify_public_key(&self.fixture.caller, request).await.expect("store");
        let verdict = match verdict {
            Ok(verified) => format!("valid:{}", verified.entity_id.unwrap_or_default()),
            Err(refusal) => refusal.reason().to_owned(),
        };
        self.transcript.push((label.to_owned(), verdict));
    }

    async fn jwt(&mut self, label: &str, caller: &Caller, token: &str) {
        let verdict = self.fixture.service.verify_jwt(caller, token).await.expect("store");
        let verdict = match verdict {
            Ok(verified) => {
                assert_eq!(verified.claims["sub"], verified.sub.as_str(), "the claims are the token's");
                format!("valid:{}", verified.sub)
            }
            Err(refusal) => refusal.reason().to_owned(),
        };
        self.transcript.push((label.to_owned(), verdict));
    }
}

fn user_token(pem: &str, kid: Option<&str>, tenant: &str, exp: i64) -> String {
    let claims = json!({"entity_type": "subscriber", "entity_id": "user-1", "exp": exp, "iat": T0,
                        "scope": {"tenant_id": tenant}});
    mint::sign(&claims, kid, pem, Algorithm::Es256).expect("signs")
}

/// Verifications and changes interleaved; every token is verified at least
/// twice before the change that must stop it.
async fn run(fixture: &Fixture) -> Transcript {
    let Fixture { service, clock, caller, .. } = fixture;
    let mut script = Script { fixture, transcript: Vec::new() };
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    let new = keys_service::public_keys::NewPublicKey { name: Name::parse("web").expect("name"), description: None };
    let public_key = staging.create_public_key(new).await.expect("public key");
    let patch = keys_core::PublicKeyPatch { is_secure_mode_enabled: Some(true), ..Default::default() };
    staging.patch_public_key(&public_key.id, patch).await.expect("secure mode on");
    let api_key = public_key.api_key.clone();

    // A kid token: valid twice, other tenant, expiry on the clock.
    let first = staging.create_signing_key().await.expect("signing key");
    let first_pem = first.pair.private_key_pem();
    let kid = first.key.uid.as_str().to_owned();
    let short = user_token(&first_pem, Some(&kid), "acme", T0 + 30);
    script.user("kid: first", &api_key, &short, Some("acme")).await;
    script.user("kid: again", &api_key, &short, Some("acme")).await;
    script.user("kid: other tenant", &api_key, &short, Some("globex")).await;
    script.user("kid: no tenant", &api_key, &short, None).await;
    // Past `exp` and the default leeway of 60 s.
    clock.advance(91);
    script.user("kid: past exp", &api_key, &short, Some("acme")).await;
    script.user("kid: past exp again", &api_key, &short, Some("acme")).await;

    // Kid and kid-less tokens of the first key, then a roll with grace, its
    // end, and a roll of the second key without grace.
    let long = user_token(&first_pem, Some(&kid), "acme", T0 + 86_400);
    let kidless = user_token(&first_pem, None, "acme", T0 + 86_400);
    for round in ["before roll", "before roll again"] {
        script.user(&format!("kid: {round}"), &api_key, &long, Some("acme")).await;
        script.user(&format!("kid-less: {round}"), &api_key, &kidless, Some("acme")).await;
    }
    let grace = GracePeriod::from_seconds(60).expect("grace");
    let second = staging.roll_signing_key(&first.key.uid, Some(grace)).await.expect("rolled");
    script.user("kid: in grace", &api_key, &long, Some("acme")).await;
    script.user("kid-less: in grace", &api_key, &kidless, Some("acme")).await;
    clock.advance(60);
    script.user("kid: grace over", &api_key, &long, Some("acme")).await;
    script.user("kid-less: grace over", &api_key, &kidless, Some("acme")).await;

    let second_kidless = user_token(&second.pair.private_key_pem(), None, "acme", T0 + 86_400);
    let second_kid = user_token(&second.pair.private_key_pem(), Some(second.key.uid.as_str()), "acme", T0 + 86_400);
    script.user("second kid-less", &api_key, &second_kidless, Some("acme")).await;
    script.user("second kid", &api_key, &second_kid, Some("acme")).await;
    script.user("second kid again", &api_key, &second_kid, Some("acme")).await;
    staging.delete_signing_key(&second.key.uid).await.expect("deleted");
    script.user("second kid: key deleted", &api_key, &second_kid, Some("acme")).await;
    script.user("second kid-less: key deleted", &api_key, &second_kidless, Some("acme")).await;

    // A third key in another workspace: its token never verifies here.
    let production = service.in_workspace(caller, "production").await.expect("workspace");
    let elsewhere = production.create_signing_key().await.expect("signing key");
    let foreign = user_token(&elsewhere.pair.private_key_pem(), Some(elsewhere.key.uid.as_str()), "acme", T0 + 600);
    script.user("other workspace's key", &api_key, &foreign, Some("acme")).await;

    // RS256 organisation tokens: valid twice, another organisation's
    // caller, expiry, delete.
    let organisation = caller.scope().organisation_id().as_str().to_owned();
    let issued =
        service.create_organisation_key(caller, &organisation, Name::parse("k").expect("name")).await.expect("created");
    let claims = |exp: i64| json!({"iss": format!("https://versori.com/sk/{}", issued.key.id), "sub": "u", "exp": exp});
    let rs_short =
        mint::sign(&claims(clock.now().unix_timestamp() + 5), None, &issued.pair.private_key_pem(), Algorithm::Rs256)
            .expect("signs");
    let rs_long =
        mint::sign(&claims(T0 + 86_400), None, &issued.pair.private_key_pem(), Algorithm::Rs256).expect("signs");
    let other = service.create_organisation(Name::parse("other").expect("name")).await.expect("organisation");
    let token = service.create_service_token(&other, NewServiceToken::admin(Name::parse("ci").expect("name"))).await;
    let outsider = service.authenticate(token.expect("token").token.expose()).await.expect("lookup").expect("valid");
    for round in ["first", "again"] {
        script.jwt(&format!("rs256 short: {round}"), caller, &rs_short).await;
        script.jwt(&format!("rs256 long: {round}"), caller, &rs_long).await;
    }
    script.jwt("rs256: another organisation", &outsider, &rs_long).await;
    clock.advance(66);
    script.jwt("rs256 short: past exp", caller, &rs_short).await;
    script.jwt("rs256 long: still", caller, &rs_long).await;
    service.delete_organisation_key(caller, &organisation, &issued.key.id).await.expect("deleted");
    script.jwt("rs256 long: key deleted", caller, &rs_long).await;
    script.transcript
}

#[tokio::test]
async fn the_warm_path_decides_every_step_as_the_cold_path_does() {
    let warm = fixture(1024).await;
    let cold = fixture(0).await;
    let with_warm_path = run(&warm).await;
    let without = run(&cold).await;
    for (warm_step, cold_step) in with_warm_path.iter().zip(&without) {
        assert_eq!(warm_step, cold_step, "the warm path changed a verdict");
    }
    assert_eq!(with_warm_path.len(), without.len());
    assert!(warm.service.warm_path_entries() > 0, "the warm path remembered tokens");
    assert_eq!(cold.service.warm_path_entries(), 0);

    // And the verdicts are the ones the rules give, not merely equal.
    let expected = [
        ("kid: first", "valid:user-1"),
        ("kid: again", "valid:user-1"),
        ("kid: other tenant", "tenant_mismatch"),
        ("kid: past exp", "user_token_expired"),
        ("kid: past exp again", "user_token_expired"),
        ("kid: before roll again", "valid:user-1"),
        ("kid-less: before roll again", "valid:user-1"),
        ("kid: in grace", "valid:user-1"),
        ("kid-less: in grace", "valid:user-1"),
        ("kid: grace over", "key_expired"),
        ("kid-less: grace over", "user_token_invalid"),
        ("second kid again", "valid:user-1"),
        ("second kid: key deleted", "key_deleted"),
        ("other workspace's key", "unknown_key"),
        ("rs256 short: again", "valid:u"),
        ("rs256 long: again", "valid:u"),
        ("rs256: another organisation", "unknown_key"),
        ("rs256 short: past exp", "token_expired"),
        ("rs256 long: still", "valid:u"),
        ("rs256 long: key deleted", "key_deleted"),
    ];
    for (label, verdict) in expected {
        let found = with_warm_path.iter().find(|(step, _)| step == label).map(|(_, verdict)| verdict.as_str());
        assert_eq!(found, Some(verdict), "{label}: {with_warm_path:#?}");
    }
}
