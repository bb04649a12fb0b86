//! docs/API.md, Shared HTTP behaviour, without a socket: what every response shares
//! (`X-Content-Type-Options: nosniff`), 400s that speak of the request and
//! never of serde, `60.0` taken as `60`, and names that cannot hide
//! invisible format characters.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::routes::ROUTES;
use keys_http::App;
use serde_json::{json, Value};

use crate::support::bootstrapped;
use crate::support::paths;

struct Client {
    app: App,
    token: String,
    _db: keys_testkit::TestDb,
}

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Value,
}

impl Client {
    async fn new() -> Self {
        let bootstrapped::Bootstrapped { app, token, db, .. } = bootstrapped::bootstrapped_app().await;
        Self { app, token, _db: db }
    }

    /// A request with the service token; `body` is sent as is, as JSON.
    async fn send(&self, method: Method, path: &str, body: Option<&str>) -> Reply {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("ServiceToken {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
            .expect("request");
        let response = self.app.handle(request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    async fn signing_key_uid(&self) -> String {
        let created = self.send(Method::POST, "/v1/staging/ws_signing_key/", None).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body["uid"].as_str().expect("uid").to_owned()
    }
}

#[tokio::test]
async fn every_response_says_nosniff() {
    let client = Client::new().await;
    let uid = client.signing_key_uid().await;
    let mut answers = Vec::new();
    for route in ROUTES {
        let path = paths::concrete(route.pattern());
        for method in [Method::GET, Method::HEAD, Method::POST, Method::DELETE] {
            let reply = client.send(method.clone(), &path, Some("{")).await;
            answers.push((format!("{method} {path}"), reply.status, reply.headers));
        }
    }
    for path in ["/v1/workspace/", "/v1/staging/ws_signing_key/", "/health", "/metrics", "/openapi.json", "/nowhere"] {
        let reply = client.send(Method::GET, path, None).await;
        answers.push((format!("GET {path}"), reply.status, reply.headers));
    }
    let roll = client.send(Method::POST, &format!("/v1/staging/ws_signing_key/{uid}/roll/"), None).await;
    answers.push(("roll".to_owned(), roll.status, roll.headers));
    let statuses: std::collections::BTreeSet<u16> = answers.iter().map(|(_, status, _)| status.as_u16()).collect();
    assert!(statuses.is_superset(&[200, 201, 400, 404, 405].into()), "a wide range of answers: {statuses:?}");
    for (what, status, headers) in answers {
        assert_eq!(
            headers.get("x-content-type-options").map(|value| value.as_bytes()),
            Some(&b"nosniff"[..]),
            "{what} → {status}"
        );
    }
}

/// A 400 that speaks of the request: its message and detail name no Rust
/// type, no parser position and no serde phrasing.
fn assert_speaks_of_the_request(reply: &Reply, expected: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    let message = reply.body["message"].as_str().expect("message");
    let detail = reply.body["detail"].to_string();
    for implementation in
        ["line ", "column", "struct", "u64", "invalid type", "expected", "`", "RollSigningKey", "RollApiKey", "Create"]
    {
        assert!(!message.contains(implementation), "{implementation:?} in {message}");
        assert!(!detail.contains(implementation), "{implementation:?} in {detail}");
    }
    assert!(message.contains(expected), "{expected:?} in {message}");
}

#[tokio::test]
async fn a_whole_number_written_with_a_fraction_is_that_number() {
    let client = Client::new().await;
    let uid = client.signing_key_uid().await;
    let rolled = client
        .send(
            Method::POST,
            &format!("/v1/staging/ws_signing_key/{uid}/roll/"),
            Some(r#"{"grace_period_seconds": 60.0}"#),
        )
        .await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{}", rolled.body);
    let new_uid = rolled.body["uid"].as_str().expect("uid");
    let roll_path = format!("/v1/staging/ws_signing_key/{new_uid}/roll/");
    let fraction = client.send(Method::POST, &roll_path, Some(r#"{"grace_period_seconds": 60.5}"#)).await;
    assert_speaks_of_the_request(&fraction, "grace_period_seconds must be a whole number");
    let list = client.send(Method::GET, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(list.body["results"][1]["status"], "rolled", "the 60.0 roll happened: {}", list.body);
}

#[tokio::test]
async fn bad_bodies_are_told_in_the_words_of_the_request() {
    let client = Client::new().await;
    let uid = client.signing_key_uid().await;
    let roll = format!("/v1/staging/ws_signing_key/{uid}/roll/");
    let cases: [(&str, &str, &str); 10] = [
        (
            roll.as_str(),
            r#"{"grace_period_seconds": "soon"}"#,
            "grace_period_seconds must be a whole number of seconds",
        ),
        (roll.as_str(), r#"{"grace_period_seconds": -5}"#, "grace_period_seconds must be a whole number of seconds"),
        (roll.as_str(), r#"{"grace_period_seconds": 1e400}"#, "not valid JSON"),
        (roll.as_str(), "5", "request body must be a JSON object"),
        (roll.as_str(), r#"{"grace_period_seconds": 60,"#, "request body is not valid JSON"),
        (roll.as_str(), r#"{"grace": 60}"#, "unknown field grace; the fields are grace_period_seconds"),
        ("/v1/workspace/", r#"{"name": ["a"]}"#, "name must be a string"),
        ("/v1/workspace/", r#"{"name": "a", "mode": 1}"#, "mode must be a string"),
        ("/v1/staging/ws_api_key/", r#"{"name": "k", "scopes": "keys:read"}"#, "scopes must be an array"),
        ("/v1/staging/ws_public_key/", r#"{"description": "d"}"#, "name is required"),
    ];
    for (path, body, expected) in cases {
        let reply = client.send(Method::POST, path, Some(body)).await;
        assert_speaks_of_the_request(&reply, expected);
    }
    let patch = client.send(Method::POST, "/v1/staging/ws_public_key/", Some(r#"{"name": "web"}"#)).await;
    let id = patch.body["id"].as_str().expect("id");
    let reply = client
        .send(Method::PATCH, &format!("/v1/staging/ws_public_key/{id}/"), Some(r#"{"allowed_domains": ["a.com", 7]}"#))
        .await;
    assert_speaks_of_the_request(&reply, "allowed_domains[1] must be a string");
}

#[tokio::test]
async fn names_and_descriptions_with_invisible_format_characters_are_refused() {
    let client = Client::new().await;
    for body in [
        json!({"name": "invoices\u{202E}fdp.exe"}),
        json!({"name": "pay\u{200B}roll"}),
        json!({"name": "web", "description": "looks \u{2066}fine"}),
    ] {
        let reply = client.send(Method::POST, "/v1/staging/ws_public_key/", Some(&body.to_string())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            reply.body["message"].as_str().expect("message").contains("invisible format characters"),
            "{}",
            reply.body
        );
    }
    let workspace = client.send(Method::POST, "/v1/workspace/", Some(r#"{"name": "ops\u202e"}"#)).await;
    assert_eq!(workspace.status, StatusCode::BAD_REQUEST, "{}", workspace.body);
}

#[tokio::test]
async fn names_that_look_blank_break_lines_or_stack_marks_are_refused() {
    let client = Client::new().await;
    let zalgo = format!("z{}", "\u{0301}".repeat(250));
    let cases = [
        (json!({"name": "\u{3164}"}), "invisible format characters"),
        (json!({"name": "admin\u{115F}"}), "invisible format characters"),
        (json!({"name": "web", "description": "one\u{2028}two"}), "invisible format characters"),
        (json!({"name": "key1\u{FE0F}"}), "invisible format characters"),
        (json!({"name": zalgo}), "name stacks more than 4 combining marks in a row"),
    ];
    for (body, expected) in cases {
        let reply = client.send(Method::POST, "/v1/staging/ws_public_key/", Some(&body.to_string())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.body["message"].as_str().expect("message").contains(expected), "{}", reply.body);
    }
    let list = client.send(Method::GET, "/v1/staging/ws_public_key/", None).await;
    assert_eq!(list.body["meta"]["count"], 0, "nothing was created: {}", list.body);
    let emoji = client.send(Method::POST, "/v1/staging/ws_public_key/", Some(r#"{"name": "\u2764\ufe0f web"}"#)).await;
    assert_eq!(emoji.status, StatusCode::CREATED, "{}", emoji.body);
}
