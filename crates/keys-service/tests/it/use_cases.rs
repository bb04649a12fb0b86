//! The use cases as an embedding service calls them: no HTTP, a real
//! SQLite file, a clock the test moves and a seeded entropy source.

use std::sync::Arc;

use keys_core::verify::{Denial, TimePolicy};
use keys_core::{GracePeriod, Name, NewServiceToken, Role, TokenWorkspaces, WorkspaceSlug};
use keys_crypto::jwt::Algorithm;
use keys_crypto::mint;
use keys_service::api_keys::NewApiKey;
use keys_service::{Caller, Clock, PublicKeyRequest, Refusal, Service, ServiceConfig, ServiceError};
use keys_testkit::{SeededEntropy, TestClock, TestDb};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::json;

use crate::fixture::{fixture, fixture_with, Fixture, T0};

/// A public key `web` in `staging` with secure mode on, so that it verifies
/// only with a user token.
async fn secure_public_key(service: &Service, caller: &Caller) -> keys_core::PublicKey {
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    let new = keys_service::public_keys::NewPublicKey { name: Name::parse("web").expect("name"), description: None };
    let public_key = staging.create_public_key(new).await.expect("public key");
    let patch = keys_core::PublicKeyPatch { is_secure_mode_enabled: Some(true), ..Default::default() };
    staging.patch_public_key(&public_key.id, patch).await.expect("secure mode on");
    public_key
}

/// Rolls the signing key `uid` of `staging`, the old key verifying for
/// `grace_seconds` more.
async fn roll_with_grace(
    service: &Service,
    caller: &Caller,
    uid: &keys_core::SigningKeyUid,
    grace_seconds: u64,
) -> keys_service::signing_keys::IssuedSigningKey {
    let grace = GracePeriod::from_seconds(grace_seconds).expect("grace");
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    staging.roll_signing_key(uid, Some(grace)).await.expect("rolled")
}

fn user_token(private_key_pem: &str, kid: &str, exp: i64) -> String {
    let claims = json!({"entity_type": "subscriber", "entity_id": "user-1", "exp": exp, "iat": T0});
    mint::sign(&claims, Some(kid), private_key_pem, Algorithm::Es256).expect("signs")
}

#[tokio::test]
async fn a_rolled_signing_key_verifies_until_its_grace_ends_on_the_injected_clock() {
    let Fixture { service, clock, caller, _directory } = fixture().await;
    let issued =
        service.in_workspace(&caller, "staging").await.expect("workspace").create_signing_key().await.expect("created");
    let old_pem = issued.pair.private_key_pem();
    let old_kid = issued.key.uid.as_str().to_owned();

    let public_key = secure_public_key(&service, &caller).await;

    roll_with_grace(&service, &caller, &issued.key.uid, 600).await;

    // The token itself is valid for a day; only the key's grace matters.
    let token = user_token(&old_pem, &old_kid, T0 + 86_400);
    let request = PublicKeyRequest { api_key: &public_key.api_key, user_token: Some(&token), ..Default::default() };
    clock.advance(599);
    let verified = service.verify_public_key(&caller, request).await.expect("store").expect("inside the grace");
    assert_eq!(verified.entity_id.as_deref(), Some("user-1"));
    clock.advance(1);
    let refused = service.verify_public_key(&caller, request).await.expect("store");
    assert_eq!(refused.map(|_| ()), Err(Refusal::Denied(Denial::KeyExpired)));

    // Secure mode without a token is decided by keys-core, not by a caller.
    let without = PublicKeyRequest { api_key: &public_key.api_key, ..Default::default() };
    let refused = service.verify_public_key(&caller, without).await.expect("store");
    assert_eq!(refused.map(|_| ()), Err(Refusal::Denied(Denial::UserTokenRequired)));
}

#[tokio::test]
async fn api_keys_verify_for_their_own_organisation_only() {
    let Fixture { service, caller, _directory, .. } = fixture().await;
    let issued = service
        .in_workspace(&caller, "production")
        .await
        .expect("workspace")
        .create_api_key(NewApiKey::named(Name::parse("backend").expect("name")))
        .await
        .expect("created");
    // The secret is only in the issued value, never in its Debug.
    assert!(!format!("{issued:?}").contains(issued.secret.expose()));
    let verified = service.verify_api_key(&caller, issued.secret.expose()).await.expect("store").expect("valid");
    assert_eq!(verified.key().id, issued.key.id);
    assert_eq!(verified.workspace().slug.as_str(), "production");

    // A caller of another organisation sees neither the key nor the workspace.
    let other = service.create_organisation(Name::parse("other").expect("name")).await.expect("organisation");
    let new = NewServiceToken::admin(Name::parse("ci").expect("name"));
    let token = service.create_service_token(&other, new).await.expect("token");
    let outsider = service.authenticate(token.token.expose()).await.expect("lookup").expect("valid");
    let refused = service.verify_api_key(&outsider, issued.secret.expose()).await.expect("store");
    assert_eq!(refused.map(|_| ()).map_err(Refusal::reason), Err("unknown_key"));
    let hidden = service.in_workspace(&outsider, "production").await.map(|_| ());
    assert!(matches!(hidden, Err(ServiceError::WorkspaceNotFound)), "{hidden:?}");

    // Deleted is terminal, and verification says so.
    service
        .in_workspace(&caller, "production")
        .await
        .expect("workspace")
        .delete_api_key(&issued.key.id)
        .await
        .expect("deleted");
    let refused = service.verify_api_key(&caller, issued.secret.expose()).await.expect("store");
    assert_eq!(refused.map(|_| ()), Err(Refusal::Denied(Denial::Deleted)));
    assert!(service
        .in_workspace(&caller, "production")
        .await
        .expect("workspace")
        .delete_api_key(&issued.key.id)
        .await
        .is_err());
}

#[tokio::test]
async fn the_time_policy_is_the_services_one_leeway() {
    let config = ServiceConfig {
        rsa_pool_capacity: 0,
        time_policy: TimePolicy::new(0).expect("no leeway"),
        ..ServiceConfig::default()
    };
    let Fixture { service, clock, caller, _directory } = fixture_with(config, 9).await;
    let organisation = caller.scope().organisation_id().as_str().to_owned();
    let issued = service
        .create_organisation_key(&caller, &organisation, Name::parse("k").expect("name"))
        .await
        .expect("created");
    let claims = json!({"iss": format!("https://versori.com/sk/{}", issued.key.id), "sub": "u", "exp": T0 + 10});
    let token = mint::sign(&claims, None, &issued.pair.private_key_pem(), Algorithm::Rs256).expect("signs");
    clock.advance(9);
    assert!(service.verify_jwt(&caller, &token).await.expect("store").is_ok());
    clock.advance(1);
    let refused = service.verify_jwt(&caller, &token).await.expect("store");
    assert_eq!(refused.map(|_| ()), Err(Refusal::Denied(Denial::TokenExpired)));
    // The wrong organisation in the path is not the caller's.
    let wrong = service.list_organisation_keys(&caller, "01ARZ3NDEKTSV4RRFFQ69G5FAV").await;
    assert!(matches!(wrong, Err(ServiceError::OrganisationNotFound)), "{wrong:?}");
}

/// A token as SuprSend's documentation makes it: no `kid`.
fn kidless_token(private_key_pem: &str, tenant: &str, exp: i64) -> String {
    let claims = json!({"entity_type": "subscriber", "entity_id": "user-9", "exp": exp, "iat": T0, "scope": {"tenant_id": tenant}});
    mint::sign(&claims, None, private_key_pem, Algorithm::Es256).expect("signs")
}

#[tokio::test]
async fn user_tokens_without_kid_are_checked_against_the_active_then_the_graced_keys() {
    let Fixture { service, clock, caller, _directory } = fixture().await;
    let public_key = secure_public_key(&service, &caller).await;
    let verify = |token: String, tenant: &'static str| {
        let service = &service;
        let caller = &caller;
        let api_key = public_key.api_key.clone();
        async move {
            let request = PublicKeyRequest {
                api_key: &api_key,
                user_token: Some(&token),
                tenant_id: Some(tenant),
                ..Default::default()
            };
            service.verify_public_key(caller, request).await.expect("store").map(|verified| verified.entity_id)
        }
    };

    // No signing key at all: nothing can verify it.
    let stranger = keys_crypto::EcKeyPair::generate(&mut rand_core_os());
    let no_keys = verify(kidless_token(&stranger.private_key_pem(), "acme", T0 + 600), "acme").await;
    assert_eq!(no_keys, Err(Refusal::Denied(Denial::UnknownKey)));

    let first =
        service.in_workspace(&caller, "staging").await.expect("workspace").create_signing_key().await.expect("created");
    let first_pem = first.pair.private_key_pem();
    let valid = verify(kidless_token(&first_pem, "acme", T0 + 600), "acme").await;
    assert_eq!(valid, Ok(Some("user-9".to_owned())));
    assert_eq!(verify(kidless_token(&first_pem, "acme", T0 + 600), "other").await, Err(Denial::TenantMismatch.into()));

    // After a roll with grace both keys verify kid-less tokens; after the
    // grace only the new one does.
    let second = roll_with_grace(&service, &caller, &first.key.uid, 300).await;
    let second_pem = second.pair.private_key_pem();
    assert!(verify(kidless_token(&first_pem, "acme", T0 + 6_000), "acme").await.is_ok());
    assert!(verify(kidless_token(&second_pem, "acme", T0 + 6_000), "acme").await.is_ok());
    clock.advance(300);
    assert_eq!(
        verify(kidless_token(&first_pem, "acme", T0 + 6_000), "acme").await,
        Err(Denial::UserTokenInvalid.into())
    );
    assert!(verify(kidless_token(&second_pem, "acme", T0 + 6_000), "acme").await.is_ok());

    // A key outside the workspace never verifies, and a token without exp is
    // refused with its own reason.
    assert_eq!(
        verify(kidless_token(&stranger.private_key_pem(), "acme", T0 + 6_000), "acme").await,
        Err(Denial::UserTokenInvalid.into())
    );
    let missing_exp = mint::sign(
        &json!({"entity_type": "subscriber", "entity_id": "user-9", "scope": {"tenant_id": "acme"}}),
        None,
        &second_pem,
        Algorithm::Es256,
    )
    .expect("signs");
    assert_eq!(verify(missing_exp, "acme").await, Err(Denial::UserTokenExpiryMissing.into()));
}

/// A kid-less user token costs at most `MAX_KIDLESS_CANDIDATES` signature
/// checks, newest key first, however many keys are in grace: here 1,001
/// keys verify (the active one and 1,000 rolls with a 30-day grace), as a
/// `manage` token can make them in seconds. The checks are counted, not
/// timed. A token none of the newest keys verifies is told to name its
/// key, and one that does name it verifies with one check.
#[tokio::test]
async fn a_kidless_user_token_costs_a_bounded_number_of_signature_checks() {
    let Fixture { service, clock, caller, _directory } = fixture().await;
    let public_key = secure_public_key(&service, &caller).await;
    let first =
        service.in_workspace(&caller, "staging").await.expect("workspace").create_signing_key().await.expect("created");
    // (uid, private PEM) of every key, oldest first.
    let mut keys = vec![(first.key.uid.clone(), first.pair.private_key_pem().to_string())];
    for _ in 0..1_000 {
        // A roll a second: which roll is newest is then never a tie.
        clock.advance(1);
        let active = keys.last().expect("a key").0.clone();
        let rolled = roll_with_grace(&service, &caller, &active, 30 * 86_400).await;
        keys.push((rolled.key.uid.clone(), rolled.pair.private_key_pem().to_string()));
    }
    let newest = |rank: usize| &keys[keys.len() - 1 - rank];
    // Each verification with the signature checks it cost.
    let verify = |token: String| {
        let (service, caller, api_key) = (&service, &caller, public_key.api_key.clone());
        async move {
            let before = service.signature_checks();
            let request = PublicKeyRequest { api_key: &api_key, user_token: Some(&token), ..Default::default() };
            let verdict = service.verify_public_key(caller, request).await.expect("store");
            (verdict.map(|verified| verified.entity_id).map_err(Refusal::reason), service.signature_checks() - before)
        }
    };
    let token = |pem: &str, kid: Option<&str>, entity: &str| {
        let claims = json!({"entity_type": "subscriber", "entity_id": entity, "exp": T0 + 86_400, "iat": T0});
        mint::sign(&claims, kid, pem, Algorithm::Es256).expect("signs")
    };
    let bound = keys_core::verify::MAX_KIDLESS_CANDIDATES as u64;
    assert_eq!(bound, 3, "the documented bound");

    // A forged token (another key, no kid) is what an attacker sends: it
    // costs the bound, not a check per key, and is told to name its key.
    let stranger = keys_crypto::EcKeyPair::generate(&mut rand_core_os()).private_key_pem();
    for attempt in 0..3 {
        let (verdict, checks) = verify(token(&stranger, None, &format!("forged-{attempt}"))).await;
        assert_eq!(verdict, Err("user_token_kid_required"));
        assert!(checks <= bound, "a kid-less token cost {checks} signature checks against 1,001 keys");
    }
    // Newest first: the active key verifies with one check, the third
    // newest with three.
    assert_eq!(verify(token(&newest(0).1, None, "active")).await, (Ok(Some("active".to_owned())), 1));
    assert_eq!(verify(token(&newest(2).1, None, "third")).await, (Ok(Some("third".to_owned())), bound));
    // The fourth newest key and the oldest still verify, but only a token
    // that names them.
    for (uid, pem) in [newest(3), &keys[0]] {
        let (verdict, checks) = verify(token(pem, None, "older")).await;
        assert_eq!((verdict, checks), (Err("user_token_kid_required"), bound));
        assert_eq!(verify(token(pem, Some(uid.as_str()), "named")).await, (Ok(Some("named".to_owned())), 1));
    }
}

/// What the service logs, captured for the thread the test runs on.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A gateway authenticates with any token that permits verification; one
/// stronger than `verify` is warned of once (not on every request), a
/// `verify` token never.
#[tokio::test]
async fn gateways_need_verify_and_a_stronger_token_is_warned_of_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    // The test runs on one thread (tokio's current-thread runtime).
    let _guard = tracing::subscriber::set_default(subscriber);

    let Fixture { service, caller, _directory, .. } = fixture().await;
    let new = |role| NewServiceToken {
        name: Name::parse("gateway").expect("name"),
        role,
        workspaces: TokenWorkspaces::default(),
        expires_at: None,
    };
    let verify = service.issue_service_token(&caller, new(Role::Verify)).await.expect("issued");
    let manage = service.issue_service_token(&caller, new(Role::Manage)).await.expect("issued");
    for _ in 0..3 {
        for token in [&verify, &manage] {
            let gateway = service.authenticate_gateway(token.token.expose()).await.expect("store");
            assert!(gateway.is_some(), "a token that permits verification is a gateway's");
        }
    }
    assert!(service.authenticate_gateway("kst_nope").await.expect("store").is_none());

    let logged = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let warnings: Vec<&str> = logged.lines().filter(|line| line.contains("stronger than it needs")).collect();
    assert_eq!(warnings.len(), 1, "{logged}");
    assert!(warnings[0].contains(manage.record.id.as_str()) && warnings[0].contains("WARN"), "{logged}");
    assert!(!logged.contains(manage.token.expose()), "the token itself is never logged");
}

fn rand_core_os() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(99)
}

/// A fixture that records API key uses, with the key `backend` in
/// `staging`: (the fixture, the key's secret, its id).
async fn recording() -> (Fixture, String, keys_core::ApiKeyId) {
    let config = ServiceConfig { rsa_pool_capacity: 0, record_api_key_uses: true, ..ServiceConfig::default() };
    let fixture = fixture_with(config, 11).await;
    let staging = fixture.service.in_workspace(&fixture.caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(NewApiKey::named(Name::parse("backend").expect("name"))).await.expect("key");
    let (secret, id) = (issued.secret.expose().to_owned(), issued.key.id.clone());
    (fixture, secret, id)
}

/// The key's `last_used_at` as the store has it.
async fn last_used(fixture: &Fixture, id: &keys_core::ApiKeyId) -> Option<time::OffsetDateTime> {
    let staging = fixture.service.in_workspace(&fixture.caller, "staging").await.expect("workspace");
    staging.get_api_key(id).await.expect("the key").last_used_at
}

fn at(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(T0 + seconds).expect("valid")
}

/// Verification records a use in memory only; a flush writes the latest
/// use of each key once, and never moves a later value back; refused
/// verifications are no use.
#[tokio::test]
async fn flushing_writes_the_latest_use_of_each_key() {
    let (fixture, secret, id) = recording().await;
    let Fixture { service, clock, caller, .. } = &fixture;
    assert_eq!(service.flush_api_key_uses().await.expect("flush"), 0, "nothing to write");
    for _ in 0..3 {
        clock.advance(10);
        assert!(service.verify_api_key(caller, &secret).await.expect("store").is_ok());
    }
    assert_eq!(service.pending_api_key_uses(), 1, "one pending use per key, however many uses");
    assert_eq!(last_used(&fixture, &id).await, None, "verification wrote nothing");
    assert_eq!(service.flush_api_key_uses().await.expect("flush"), 1);
    assert_eq!((last_used(&fixture, &id).await, service.pending_api_key_uses()), (Some(at(30)), 0));
    assert_eq!(service.flush_api_key_uses().await.expect("flush"), 0, "written once");

    // Another replica wrote a later use meanwhile: an earlier one from
    // here does not move it back.
    service.store().record_api_key_uses(&[(id.clone(), at(100))]).await.expect("the other replica writes");
    clock.advance(10);
    assert!(service.verify_api_key(caller, &secret).await.expect("store").is_ok());
    assert_eq!(service.flush_api_key_uses().await.expect("flush"), 0);
    assert_eq!(last_used(&fixture, &id).await, Some(at(100)));

    // A refusal (a scope the key lacks, a disabled key) is no use.
    clock.advance(100);
    let refused = service.verify_api_key_with_scopes(caller, &secret, &["orders:read"]).await.expect("store");
    assert_eq!(refused.map(|_| ()), Err(Refusal::Denied(Denial::InsufficientScope)));
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    staging.disable_api_key(&id).await.expect("disabled");
    let refused = service.verify_api_key(caller, &secret).await.expect("store");
    assert_eq!(refused.map(|_| ()), Err(Refusal::Denied(Denial::KeyDisabled)));
    assert_eq!(service.pending_api_key_uses(), 0);
}

/// A flush the database refuses keeps its uses pending, newer uses seen
/// meanwhile win, and the next flush writes them.
#[tokio::test]
async fn a_failed_flush_keeps_the_uses_pending() {
    let (fixture, secret, id) = recording().await;
    let Fixture { service, clock, caller, _directory: db } = &fixture;
    clock.advance(10);
    assert!(service.verify_api_key(caller, &secret).await.expect("store").is_ok());
    // The database refuses every write of last_used_at for a while.
    let refuse = "CREATE TRIGGER refuse_uses BEFORE UPDATE OF last_used_at ON api_keys \
                  BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";
    db.execute(refuse, &[]).await.expect("trigger");
    assert!(service.flush_api_key_uses().await.is_err(), "the flush reports the failure");
    assert_eq!(service.pending_api_key_uses(), 1, "and keeps the use");
    clock.advance(10);
    assert!(service.verify_api_key(caller, &secret).await.expect("store").is_ok());
    assert!(service.flush_api_key_uses().await.is_err());
    assert_eq!(service.pending_api_key_uses(), 1);
    db.execute("DROP TRIGGER refuse_uses", &[]).await.expect("drop trigger");
    assert_eq!(service.flush_api_key_uses().await.expect("flush"), 1);
    assert_eq!((last_used(&fixture, &id).await, service.pending_api_key_uses()), (Some(at(20)), 0));
}

/// Without recording (`--last-used-interval-seconds 0`) nothing is kept.
#[tokio::test]
async fn recording_off_keeps_nothing() {
    let Fixture { service, caller, _directory, .. } = fixture().await;
    let staging = service.in_workspace(&caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(NewApiKey::named(Name::parse("quiet").expect("name"))).await.expect("key");
    assert!(service.verify_api_key(&caller, issued.secret.expose()).await.expect("store").is_ok());
    assert_eq!(service.pending_api_key_uses(), 0);
    assert_eq!(service.flush_api_key_uses().await.expect("flush"), 0);
    assert_eq!(staging.get_api_key(&issued.key.id).await.expect("key").last_used_at, None);
}

/// The background flusher writes recorded uses every interval.
#[tokio::test]
async fn the_flusher_writes_every_interval() {
    let (fixture, secret, id) = recording().await;
    let service = Arc::new(fixture.service);
    let flusher = service.spawn_usage_flusher(std::time::Duration::from_millis(50));
    fixture.clock.advance(10);
    assert!(service.verify_api_key(&fixture.caller, &secret).await.expect("store").is_ok());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let staging = service.in_workspace(&fixture.caller, "staging").await.expect("workspace");
    while staging.get_api_key(&id).await.expect("key").last_used_at != Some(at(10)) {
        assert!(std::time::Instant::now() < deadline, "the flusher never wrote the use");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(service.pending_api_key_uses(), 0);
    // Stopping waits for the task to end.
    flusher.stop().await;
}

/// A flush cancelled while it writes (a timeout, a task aborted) loses
/// nothing and leaves the database writable: its uses are pending again,
/// and the next flush (the one graceful shutdown makes) succeeds. Many
/// rounds, as the write may be cancelled at different points.
#[tokio::test]
async fn a_cancelled_flush_loses_nothing() {
    let (fixture, secret, id) = recording().await;
    let Fixture { service, clock, caller, .. } = &fixture;
    for round in 1..=20 {
        clock.advance(1);
        assert!(service.verify_api_key(caller, &secret).await.expect("store").is_ok());
        // Polled once (the uses are taken and the write begins), then dropped.
        let mut flush = Box::pin(service.flush_api_key_uses());
        let first_poll =
            std::future::poll_fn(|context| std::task::Poll::Ready(std::future::Future::poll(flush.as_mut(), context)));
        assert!(first_poll.await.is_pending(), "round {round}: written within one poll, nothing to cancel");
        drop(flush);
        assert_eq!(service.pending_api_key_uses(), 1, "round {round}: the cancelled flush's use is pending again");
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), service.flush_api_key_uses()).await;
        next.expect("the next flush is not blocked").expect("the next flush succeeds");
        assert_eq!(last_used(&fixture, &id).await, Some(at(round)), "round {round}");
    }
}

fn manage_token_for(workspaces: &[&str]) -> NewServiceToken {
    let slugs = workspaces.iter().map(|slug| WorkspaceSlug::parse(slug).expect("slug")).collect();
    NewServiceToken {
        name: Name::parse("gateway").expect("name"),
        role: Role::Manage,
        workspaces: TokenWorkspaces::only(slugs).expect("limit"),
        expires_at: None,
    }
}

#[tokio::test]
async fn a_workspace_limited_token_reaches_only_its_workspaces() {
    let Fixture { service, caller, _directory, .. } = fixture().await;
    let issued = service.issue_service_token(&caller, manage_token_for(&["staging"])).await.expect("issued");
    assert!(!format!("{issued:?}").contains(issued.token.expose()), "the token is not in Debug");
    let limited = service.authenticate(issued.token.expose()).await.expect("lookup").expect("valid");

    // Its workspace is reachable, the other one forbidden, a missing one not found.
    assert!(service.in_workspace(&limited, "staging").await.is_ok());
    let forbidden = service.in_workspace(&limited, "production").await.map(|_| ());
    assert!(matches!(forbidden, Err(ServiceError::PermissionDenied(_))), "{forbidden:?}");
    let missing = service.in_workspace(&limited, "nowhere").await.map(|_| ());
    assert!(matches!(missing, Err(ServiceError::WorkspaceNotFound)), "{missing:?}");
    let listed = service.list_workspaces(&limited, Default::default()).await.expect("list");
    assert_eq!(listed.items.iter().map(|workspace| workspace.slug.as_str()).collect::<Vec<_>>(), ["staging"]);
    assert_eq!(listed.total, 1);

    // A key of the other workspace does not verify for it.
    let production = service.in_workspace(&caller, "production").await.expect("workspace");
    let key = production.create_api_key(NewApiKey::named(Name::parse("b").expect("name"))).await.expect("key");
    let refused = service.verify_api_key(&limited, key.secret.expose()).await.expect("store");
    assert_eq!(refused.map(|_| ()).map_err(Refusal::reason), Err("unknown_key"));
    assert!(service.verify_api_key(&caller, key.secret.expose()).await.expect("store").is_ok());

    // Organisation keys span every workspace: not for a limited token.
    let organisation = caller.scope().organisation_id().as_str().to_owned();
    let refused = service.list_organisation_keys(&limited, &organisation).await.map(|_| ());
    assert!(matches!(refused, Err(ServiceError::PermissionDenied(_))), "{refused:?}");
    // Nor do their JWTs verify for it: such a key is, for this token, no key.
    let issued =
        service.create_organisation_key(&caller, &organisation, Name::parse("k").expect("name")).await.expect("key");
    let claims = json!({"iss": format!("https://versori.com/sk/{}", issued.key.id), "sub": "u", "exp": T0 + 600});
    let jwt = mint::sign(&claims, None, &issued.pair.private_key_pem(), Algorithm::Rs256).expect("signs");
    assert!(service.verify_jwt(&caller, &jwt).await.expect("store").is_ok());
    let refused = service.verify_jwt(&limited, &jwt).await.expect("store");
    assert_eq!(refused.map(|_| ()).map_err(Refusal::reason), Err("unknown_key"));

    // It cannot hand on more than it has.
    let wider = service.issue_service_token(&limited, manage_token_for(&["staging", "production"])).await;
    assert!(wider.is_err(), "a limited token made a wider one");
    // A limit must name workspaces that exist.
    let unknown = service.issue_service_token(&caller, manage_token_for(&["nowhere"])).await.map(|_| ());
    assert!(matches!(unknown, Err(ServiceError::Invalid(_))), "{unknown:?}");
}

#[tokio::test]
async fn tokens_stop_at_expiry_and_revocation_and_record_their_use() {
    let config = ServiceConfig { rsa_pool_capacity: 0, record_api_key_uses: true, ..ServiceConfig::default() };
    let Fixture { service, clock, caller, _directory } = fixture_with(config, 11).await;
    let mut new = NewServiceToken::admin(Name::parse("temporary").expect("name"));
    new.expires_at = Some(clock.now() + time::Duration::seconds(60));
    let issued = service.issue_service_token(&caller, new).await.expect("issued");
    let token = issued.token.expose().to_owned();
    assert!(service.authenticate(&token).await.expect("lookup").is_some());
    service.flush_uses().await.expect("flushed");
    let listed = service.list_service_tokens(&caller, Default::default()).await.expect("list");
    let record = listed.items.iter().find(|record| record.id == issued.record.id).expect("listed");
    assert_eq!(record.last_used_at, Some(keys_core::timestamp(clock.now())));
    clock.advance(60);
    assert!(service.authenticate(&token).await.expect("lookup").is_none(), "expired");

    // Revoked: refused at once.
    let other = service.issue_service_token(&caller, NewServiceToken::admin(Name::parse("b").expect("name"))).await;
    let other = other.expect("issued");
    assert!(service.authenticate(other.token.expose()).await.expect("lookup").is_some());
    service.revoke_service_token(&caller, other.record.id.as_str()).await.expect("revoked");
    assert!(service.authenticate(other.token.expose()).await.expect("lookup").is_none(), "revoked");
    // The caller's own token is the last live admin one now.
    let last = service.revoke_service_token(&caller, caller.token().expect("a token").id.as_str()).await.map(|_| ());
    assert!(
        matches!(last, Err(ServiceError::Store(keys_store::StoreError::Refused(keys_core::CoreError::LastAdminToken)))),
        "{last:?}"
    );
}

// ------------------------------------------------------------------- JWKS

fn jwks_kids(published: &keys_service::jwks::PublishedDocument) -> Vec<String> {
    let set: keys_crypto::JwkSet = serde_json::from_slice(&published.document.json).expect("a JWK Set");
    set.keys.iter().filter_map(|jwk| jwk.kid.clone()).collect()
}

/// Through the store as `keysd serve` opens it (behind the verification
/// cache), on a clock the test moves: the document is shared while the
/// keys that verify stay the same, and changes on the next request when
/// a key is created, rolled, deleted or leaves its grace.
#[tokio::test]
async fn the_published_jwks_document_changes_exactly_when_the_keys_that_verify_change() {
    let directory = TestDb::sqlite();
    let store = directory.cached_store(keys_store::CacheConfig::default()).await;
    let clock = Arc::new(TestClock::at(1_800_000_000));
    let config = ServiceConfig { rsa_pool_capacity: 0, ..ServiceConfig::default() };
    let service =
        Service::with_sources(store, config, Arc::clone(&clock) as Arc<dyn Clock>, Arc::new(SeededEntropy::new(3)));
    let token = service.bootstrap_if_empty().await.expect("bootstrap").expect("empty").token;
    let caller = service.authenticate(token.expose()).await.expect("lookup").expect("valid");
    let staging = service.in_workspace(&caller, "staging").await.expect("workspace");
    let uid = staging.workspace().uid.clone();
    let published = async || service.workspace_jwks_document(&uid).await.expect("store").expect("workspace");

    let empty = published().await;
    assert!(jwks_kids(&empty).is_empty());
    let first = staging.create_signing_key().await.expect("created").key.uid.clone();
    let one = published().await;
    assert_eq!(jwks_kids(&one), [first.as_str()]);
    let again = published().await;
    assert!(Arc::ptr_eq(&one.document, &again.document), "made once, then shared");
    assert_eq!(one.document.json.as_ptr(), again.document.json.as_ptr());

    let grace = GracePeriod::from_seconds(30).expect("grace");
    let second = staging.roll_signing_key(&first, Some(grace)).await.expect("rolled").key.uid.clone();
    let both = published().await;
    let mut listed = jwks_kids(&both);
    listed.sort_unstable();
    let mut expected = [second.as_str(), first.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected);
    assert!(both.max_age_seconds <= 30, "never past the end of a grace: {}", both.max_age_seconds);
    assert_ne!(both.document.fingerprint, one.document.fingerprint);

    clock.advance(31);
    let after_grace = published().await;
    assert_eq!(jwks_kids(&after_grace), [second.as_str()]);
    assert_eq!(after_grace.max_age_seconds, keys_core::verify::JWKS_MAX_AGE_SECONDS);

    let organisation = caller.scope().organisation_id().to_string();
    let organisation_id = caller.scope().organisation_id().clone();
    let of_organisation =
        async || service.organisation_jwks_document(&organisation_id).await.expect("store").expect("organisation");
    let name = Name::parse("k").expect("name");
    let key = service.create_organisation_key(&caller, &organisation, name).await.expect("created").key.id.clone();
    let listed = of_organisation().await;
    assert_eq!(jwks_kids(&listed), [key.as_str()]);
    assert!(Arc::ptr_eq(&listed.document, &of_organisation().await.document));
    service.delete_organisation_key(&caller, &organisation, &key).await.expect("deleted");
    assert!(jwks_kids(&of_organisation().await).is_empty());
}

/// An embedding service's caller (no service token): the use cases check
/// its role and its workspaces themselves, as they do a token's, and its
/// changes are audited under its own name.
#[tokio::test]
async fn an_embedded_caller_gets_exactly_what_its_role_and_workspaces_permit() {
    let Fixture { service, caller, _directory, .. } = fixture().await;
    let organisation = caller.scope().organisation_id().clone();
    let embedded = |role, workspaces, name: &str| {
        Caller::embedded(organisation.clone(), role, workspaces, Name::parse(name).expect("name")).expect("caller")
    };
    let denied = |result: Result<(), ServiceError>| matches!(result, Err(ServiceError::PermissionDenied(_)));

    // `verify` verifies, and may manage nothing: every management use case
    // refuses it, before it looks anything up.
    let verifier = embedded(Role::Verify, TokenWorkspaces::all(), "billing");
    assert!(verifier.token().is_none(), "no token stands behind it");
    let key = service
        .in_workspace(&caller, "staging")
        .await
        .expect("workspace")
        .create_api_key(NewApiKey::named(Name::parse("backend").expect("name")))
        .await
        .expect("created");
    assert!(service.verify_api_key(&verifier, key.secret.expose()).await.expect("store").is_ok());
    let id = organisation.as_str();
    let name = || Name::parse("x").expect("name");
    let new_workspace = || keys_core::NewWorkspace { name: name(), slug: None, description: None, mode: None };
    assert!(denied(service.in_workspace(&verifier, "staging").await.map(|_| ())));
    assert!(denied(service.in_workspace(&verifier, "nowhere").await.map(|_| ())), "before the lookup");
    assert!(denied(service.workspace(&verifier, "staging").await.map(|_| ())));
    assert!(denied(service.list_workspaces(&verifier, Default::default()).await.map(|_| ())));
    assert!(denied(service.create_workspace(&verifier, new_workspace()).await.map(|_| ())));
    assert!(denied(service.list_organisation_keys(&verifier, id).await.map(|_| ())));
    assert!(denied(service.create_organisation_key(&verifier, id, name()).await.map(|_| ())));
    assert!(denied(service.issue_service_token(&verifier, manage_token_for(&["staging"])).await.map(|_| ())));
    assert!(denied(service.list_service_tokens(&verifier, Default::default()).await.map(|_| ())));
    let token_id = caller.token().expect("a token").id.as_str();
    assert!(denied(service.revoke_service_token(&verifier, token_id).await.map(|_| ())));
    let audit = keys_service::audit::AuditEventsRequest { limit: 10, ..Default::default() };
    assert!(denied(service.audit_events(&verifier, audit.clone()).await.map(|_| ())));

    // `manage` limited to `staging`: its keys there, nothing elsewhere, no
    // organisation keys (they span every workspace), no workspaces or tokens.
    let staging = vec![WorkspaceSlug::parse("staging").expect("slug")];
    let manager = embedded(Role::Manage, TokenWorkspaces::only(staging).expect("limit"), "provisioning");
    let in_staging = service.in_workspace(&manager, "staging").await.expect("its workspace");
    in_staging.create_signing_key().await.expect("manages its keys");
    assert!(denied(service.in_workspace(&manager, "production").await.map(|_| ())), "another workspace");
    assert!(denied(service.list_organisation_keys(&manager, id).await.map(|_| ())));
    assert!(denied(service.create_workspace(&manager, new_workspace()).await.map(|_| ())));
    let listed = service.list_workspaces(&manager, Default::default()).await.expect("list");
    assert_eq!(listed.items.iter().map(|workspace| workspace.slug.as_str()).collect::<Vec<_>>(), ["staging"]);

    // An admin cannot be limited, as no admin token can.
    let limited_admin = Caller::embedded(
        organisation.clone(),
        Role::Admin,
        manage_token_for(&["staging"]).workspaces,
        Name::parse("root").expect("name"),
    );
    assert_eq!(limited_admin.map(|_| ()), Err(keys_core::CoreError::AdminTokenLimited));

    // `admin` does everything, and the audit trail names it: its actor, no
    // token, no request.
    let admin = embedded(Role::Admin, TokenWorkspaces::all(), "provisioning-admin");
    let workspace = service.create_workspace(&admin, new_workspace()).await.expect("created");
    let issued = service.create_organisation_key(&admin, id, name()).await.expect("organisation key");
    let token = service.issue_service_token(&admin, manage_token_for(&["staging"])).await.expect("token");
    assert_eq!(token.record.created_by.as_ref().map(|actor| actor.name()), Some("provisioning-admin"));
    let page = service.audit_events(&admin, audit).await.expect("audit");
    let by_admin: Vec<_> = page
        .events
        .iter()
        .filter(|recorded| recorded.event.actor.as_ref().map(|actor| actor.name()) == Some("provisioning-admin"))
        .map(|recorded| (recorded.event.action.as_str(), recorded.event.target_id.as_str()))
        .collect();
    assert_eq!(
        by_admin,
        [
            ("service_token.generated", token.record.id.as_str()),
            ("organisation_key.generated", issued.key.id.as_str()),
            ("workspace.created", workspace.uid.as_str()),
        ]
    );
    for recorded in page.events.iter().take(3) {
        let actor = recorded.event.actor.as_ref().expect("an actor");
        assert_eq!(actor.email(), format!("org_{organisation}@embedded.keysd.local"));
        assert_eq!((&recorded.event.token_id, &recorded.event.request_id), (&None, &None));
    }
}
