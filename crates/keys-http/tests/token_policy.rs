//! The operator's policy for Versori-style JWTs over `/v1/verify/jwt/`,
//! without a socket: `exp` required, a maximum lifetime, accepted
//! audiences; and the default, which demands none of them.

use http::{Method, StatusCode};
use keys_core::verify::OrganisationTokenPolicy;
use keys_crypto::jwt::Algorithm;
use keys_http::AppConfig;
use serde_json::{json, Value};

#[path = "support/bootstrapped.rs"]
mod bootstrapped;

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

#[tokio::test]
async fn the_operator_policy_decides_what_a_versori_token_must_carry() {
    let policy = OrganisationTokenPolicy {
        require_exp: true,
        max_lifetime_seconds: Some(3600),
        audiences: vec!["https://api.example.com".to_owned()],
    };
    let strict =
        bootstrapped::bootstrapped_app_with(AppConfig { organisation_token_policy: policy, ..AppConfig::default() })
            .await;
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
