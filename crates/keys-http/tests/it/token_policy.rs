//! The operator's policy for Versori-style JWTs over `/v1/verify/jwt/`,
//! without a socket: `exp` required, a maximum lifetime, accepted
//! audiences; and the default, which demands none of them. The longest
//! lifetime of secure-mode user tokens over `/v1/verify/public_key/`, and
//! the signature checks `/metrics` counts.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_core::verify::{OrganisationTokenPolicy, TimePolicy};
use keys_crypto::jwt::Algorithm;
use keys_http::AppConfig;
use keys_service::ServiceConfig;
use serde_json::{json, Value};

use crate::support::bootstrapped;

/// An organisation key made over the API: its id and private key.
async fn organisation_key(keysd: &bootstrapped::Bootstrapped) -> (String, String) {
    let path = format!("/api/organisations/v1/organisations/{}/keys", keysd.organisation);
    let (status, key) = keysd.call(Method::POST, &path, json!({"name": "issuer"})).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    (key["id"].as_str().expect("id").to_owned(), key["privateKey"].as_str().expect("privateKey").to_owned())
}

async fn verify(keysd: &bootstrapped::Bootstrapped, token: &str) -> Value {
    let (status, answer) = keysd.call(Method::POST, "/v1/verify/jwt/", json!({"token": token})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

/// A bootstrapped application whose service has the policy `service`.
async fn serving(service: ServiceConfig) -> bootstrapped::Bootstrapped {
    bootstrapped::bootstrapped_app_with(AppConfig { service, ..AppConfig::default() }).await
}

#[tokio::test]
async fn the_operator_policy_decides_what_a_versori_token_must_carry() {
    let policy = OrganisationTokenPolicy {
        require_exp: true,
        max_lifetime_seconds: Some(3600),
        audiences: vec!["https://api.example.com".to_owned()],
    };
    let strict = serving(ServiceConfig { organisation_token_policy: policy, ..ServiceConfig::default() }).await;
    let lenient = bootstrapped::bootstrapped_app().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (keysd, is_strict) in [(&strict, true), (&lenient, false)] {
        let (key_id, private_key) = organisation_key(keysd).await;
        let token = |claims: Value| {
            let mut claims = claims;
            claims["iss"] = json!(format!("https://versori.com/sk/{key_id}"));
            claims["sub"] = json!("user-42");
            keys_crypto::mint::sign(&claims, None, &private_key, Algorithm::Rs256).expect("signs")
        };
        let audience = "https://api.example.com";
        let cases = [
            (json!({"iat": now, "aud": audience}), "token_exp_missing"),
            (json!({"iat": now, "exp": now + 7200, "aud": audience}), "token_lifetime_too_long"),
            (json!({"iat": now, "exp": now + 600}), "audience_not_accepted"),
            (json!({"iat": now, "exp": now + 600, "aud": ["other", "elsewhere"]}), "audience_not_accepted"),
        ];
        for (claims, reason) in cases {
            let answer = verify(keysd, &token(claims.clone())).await;
            if is_strict {
                assert_eq!(answer, json!({"valid": false, "reason": reason}), "{claims}");
            } else {
                assert_eq!(answer["valid"], true, "the default demands nothing more: {claims} {answer}");
            }
        }
        let good = verify(keysd, &token(json!({"iat": now, "exp": now + 600, "aud": ["other", audience]}))).await;
        assert_eq!(good["valid"], true, "{good}");
        assert_eq!(good["sub"], "user-42");
        // An iat far in the future is refused by the time policy, under both.
        let future =
            verify(keysd, &token(json!({"iat": now + 1_000_000, "exp": now + 1_000_600, "aud": audience}))).await;
        assert_eq!(future, json!({"valid": false, "reason": "token_not_yet_valid"}));
    }
}

/// A public key `web` in `staging` with secure mode on, and the private PEM
/// of the workspace's signing key.
async fn secure_public_key(keysd: &bootstrapped::Bootstrapped) -> (String, String) {
    let (status, public) = keysd.call(Method::POST, "/v1/staging/ws_public_key/", json!({"name": "web"})).await;
    assert_eq!(status, StatusCode::CREATED, "{public}");
    let path = format!("/v1/staging/ws_public_key/{}/", public["id"].as_str().expect("id"));
    let (status, secure) = keysd.call(Method::PATCH, &path, json!({"is_secure_mode_enabled": true})).await;
    assert!(status.is_success() && secure["is_secure_mode_enabled"] == true, "{status} {secure}");
    let (status, signing) = keysd.call(Method::POST, "/v1/staging/ws_signing_key/", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{signing}");
    let pem = signing["private_key_pem"].as_str().expect("pem").to_owned();
    (public["api_key"].as_str().expect("value").to_owned(), pem)
}

/// `keysd_signature_checks_total` as `/metrics` shows it.
async fn signature_checks(keysd: &bootstrapped::Bootstrapped) -> u64 {
    let request =
        Request::builder().method(Method::GET).uri("/metrics").body(Full::new(Bytes::new())).expect("request");
    let response = keysd.app.handle(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("text");
    assert!(text.contains("# TYPE keysd_signature_checks_total counter"), "{text}");
    let line = text.lines().find(|line| line.starts_with("keysd_signature_checks_total ")).expect("the counter");
    line.trim_start_matches("keysd_signature_checks_total ").parse().expect("a count")
}

/// "Secure mode requires `exp`" is not met by a token that never expires:
/// an `exp` of 2^64, 1e19 or year 9999 is `user_token_lifetime_too_long`,
/// a year's token is accepted by default, and the operator may shorten the
/// longest lifetime. Each verification is one signature check on
/// `/metrics`.
#[tokio::test]
async fn user_tokens_do_not_live_for_ever() {
    let hour = TimePolicy::default().with_user_token_max_lifetime(3_600);
    let strict = serving(ServiceConfig { time_policy: hour, ..ServiceConfig::default() }).await;
    let default = bootstrapped::bootstrapped_app().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (keysd, is_strict) in [(&strict, true), (&default, false)] {
        let (api_key, pem) = secure_public_key(keysd).await;
        let verify = |exp: Value, iat: Option<i64>| {
            let mut claims = json!({"entity_type": "subscriber", "entity_id": "user-42", "exp": exp});
            if let Some(iat) = iat {
                claims["iat"] = json!(iat);
            }
            let token = keys_crypto::mint::sign(&claims, None, &pem, Algorithm::Es256).expect("signs");
            let api_key = api_key.clone();
            async move {
                let body = json!({"api_key": api_key, "user_token": token});
                let (status, answer) = keysd.call(Method::POST, "/v1/verify/public_key/", body).await;
                assert_eq!(status, StatusCode::OK, "{answer}");
                answer["reason"].as_str().unwrap_or("valid").to_owned()
            }
        };
        let never = [json!(18_446_744_073_709_551_615_u64), json!(1e19), json!(253_402_300_799_i64)];
        for exp in never {
            for iat in [None, Some(now)] {
                let before = signature_checks(keysd).await;
                assert_eq!(verify(exp.clone(), iat).await, "user_token_lifetime_too_long", "exp {exp}");
                assert_eq!(signature_checks(keysd).await, before + 1, "one key, one check");
            }
        }
        // A year (as `expiresIn: '1y'` makes it, 365.25 days) and a day.
        let expected = if is_strict { "user_token_lifetime_too_long" } else { "valid" };
        assert_eq!(verify(json!(now + 31_557_600), Some(now)).await, expected);
        assert_eq!(verify(json!(now + 86_400), None).await, expected);
        assert_eq!(verify(json!(now + 3_000), Some(now)).await, "valid");
    }
}
