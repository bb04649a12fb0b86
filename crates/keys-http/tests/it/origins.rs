//! `allowed_domains` over HTTP (docs/API.md, Public keys), without a socket: broad
//! wildcards refused when they are set, patterns answered in canonical
//! form, and the origins a hostile page can send refused by verification.

use http::{Method, StatusCode};
use serde_json::json;

use crate::support::bootstrapped;

#[tokio::test]
async fn broad_wildcards_are_refused_and_hostile_origins_do_not_verify() {
    let keysd = bootstrapped::bootstrapped_app().await;
    let (status, key) = keysd.call(Method::POST, "/v1/staging/ws_public_key/", json!({"name": "web"})).await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let patch = format!("/v1/staging/ws_public_key/{}/", key["id"].as_str().expect("id"));
    for broad in ["*.com", "*.co.uk", "*.github.io"] {
        let (status, body) = keysd.call(Method::PATCH, &patch, json!({"allowed_domains": [broad]})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{broad}: {body}");
        assert!(body["message"].as_str().expect("message").contains("too broad"), "{body}");
    }
    let domains = json!({"allowed_domains": ["*.Example.com", "https://app.example.org:443", "http://localhost:3000"]});
    let (status, patched) = keysd.call(Method::PATCH, &patch, domains).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{patched}");
    assert_eq!(
        patched["allowed_domains"],
        json!(["*.example.com", "https://app.example.org", "http://localhost:3000"])
    );

    let secret = key["api_key"].as_str().expect("api_key");
    let verify = |origin: &'static str| {
        let body = json!({"api_key": secret, "origin": origin});
        let keysd = &keysd;
        async move { keysd.call(Method::POST, "/v1/verify/public_key/", body).await.1 }
    };
    for hostile in [
        "https://evil.com\\@a.example.com",
        "https://evil.com\\.example.com",
        "https://evil.com%2f.example.com",
        "javascript://a.example.com",
        "https://example.com",
        "http://app.example.org",
        "https://app.example.org:8443",
        "https://localhost:3000",
    ] {
        assert_eq!(verify(hostile).await, json!({"valid": false, "reason": "origin_not_allowed"}), "{hostile}");
    }
    for fine in ["https://a.example.com", "a.example.com", "https://app.example.org", "http://localhost:3000"] {
        assert_eq!(verify(fine).await["valid"], true, "{fine}");
    }
}
