//! `--rate-limit` without a socket: the client address is what the accept
//! loop puts in each request (`ClientAddr`). Verification calls and failed
//! authentications spend a client's budget; once spent, its verification
//! and authenticated requests are 429 in the dialect's error shape, with
//! `Retry-After`, before any lookup. Off by default.

use std::net::IpAddr;
use std::num::NonZeroU32;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::rate_limit::ClientAddr;
use keys_http::AppConfig;
use serde_json::{json, Value};

use crate::support::bootstrapped;

/// A request from `client` with `token`: status, `Retry-After` and body.
async fn from(
    keysd: &bootstrapped::Bootstrapped,
    client: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("ServiceToken {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    request.extensions_mut().insert(ClientAddr(client.parse::<IpAddr>().expect("ip")));
    let response = keysd.app.handle(request).await;
    let status = response.status();
    let retry_after =
        response.headers().get(header::RETRY_AFTER).map(|value| value.to_str().expect("ascii").to_owned());
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, retry_after, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const VERIFY: &str = "/v1/verify/api_key/";
const FORGED: &str = "kst_forged";

#[tokio::test]
async fn verification_calls_spend_the_budget_of_their_client_only() {
    let config = AppConfig { rate_limit_per_minute: NonZeroU32::new(3), ..AppConfig::default() };
    let keysd = bootstrapped::bootstrapped_app_with(config).await;
    let token = keysd.token.clone();
    let garbage = json!({"api_key": "SS.nothing"});
    for _ in 0..3 {
        let (status, _, body) = from(&keysd, "192.0.2.1", &token, Method::POST, VERIFY, garbage.clone()).await;
        assert_eq!((status, body["valid"].clone()), (StatusCode::OK, json!(false)));
    }
    let (status, retry_after, body) = from(&keysd, "192.0.2.1", &token, Method::POST, VERIFY, garbage.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let seconds: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=20).contains(&seconds), "a token comes back every 20 s: {seconds}");
    assert_eq!(body["type"], "Throttled");
    assert_eq!(body["code"], 429);
    assert!(body["message"].as_str().expect("message").contains("throttled"), "{body}");
    // Another client is not affected, and neither are public routes.
    let (status, _, _) = from(&keysd, "192.0.2.2", &token, Method::POST, VERIFY, garbage.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = from(&keysd, "192.0.2.1", &token, Method::GET, "/health", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn failed_authentications_spend_the_budget_and_then_every_authenticated_route_is_refused() {
    let config = AppConfig { rate_limit_per_minute: NonZeroU32::new(2), ..AppConfig::default() };
    let keysd = bootstrapped::bootstrapped_app_with(config).await;
    let good = keysd.token.clone();
    let workspaces = "/v1/workspace/";
    // Successful calls spend nothing.
    for _ in 0..5 {
        assert_eq!(from(&keysd, "198.51.100.7", &good, Method::GET, workspaces, Value::Null).await.0, StatusCode::OK);
    }
    for _ in 0..2 {
        let (status, _, _) = from(&keysd, "198.51.100.7", FORGED, Method::GET, workspaces, Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = from(&keysd, "198.51.100.7", &good, Method::GET, workspaces, Value::Null).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "even a good token, from that client");
    // The Versori dialect's shape.
    let keys = format!("/api/organisations/v1/organisations/{}/keys", keysd.organisation);
    let (status, _, body) = from(&keysd, "198.51.100.7", FORGED, Method::GET, &keys, Value::Null).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "too_many_requests", "{body}");
    // Elsewhere, the good token still works.
    assert_eq!(from(&keysd, "198.51.100.8", &good, Method::GET, workspaces, Value::Null).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_the_flag_nothing_is_limited() {
    let keysd = bootstrapped::bootstrapped_app().await;
    for _ in 0..50 {
        let (status, _, _) = from(&keysd, "192.0.2.1", FORGED, Method::GET, "/v1/workspace/", Value::Null).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}
