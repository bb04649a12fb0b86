//! The console's files as the server answers them, without a socket: each
//! with its media type and the strict headers (CSP `default-src 'self'`,
//! `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, nosniff,
//! `Cache-Control: no-cache`), HEAD like GET, and a 404 for any other name.
//! The browser test (`tests/console/console.test.mjs`, run by
//! `cargo xtask console`) drives the page itself.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::{App, AppConfig};
use keys_testkit::TestDb;

async fn app() -> (App, TestDb) {
    let db = TestDb::sqlite();
    let store = db.store().await;
    (App::new(store, AppConfig::default()), db)
}

async fn send(app: &App, method: Method, path: &str) -> (http::response::Parts, Bytes) {
    let request = Request::builder().method(method).uri(path).body(Full::new(Bytes::new())).expect("request");
    let (parts, body) = app.handle(request).await.into_parts();
    (parts, body.collect().await.expect("body").to_bytes())
}

#[tokio::test]
async fn each_console_file_is_served_with_its_type_and_the_strict_headers() {
    let (app, _db) = app().await;
    for (path, media_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console", "text/html; charset=utf-8"),
        ("/console/index.html", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let (get, body) = send(&app, Method::GET, path).await;
        assert_eq!(get.status, StatusCode::OK, "{path}");
        assert_eq!(get.headers[header::CONTENT_TYPE], media_type, "{path}");
        let policy = get.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
        assert!(policy.starts_with("default-src 'self';"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("http"), "{path}: {policy}");
        assert_eq!(get.headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(get.headers[header::REFERRER_POLICY], "no-referrer", "{path}");
        assert_eq!(get.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(get.headers[header::CACHE_CONTROL], "no-cache", "{path}");
        assert!(!body.is_empty(), "{path}");
        let (head, head_body) = send(&app, Method::HEAD, path).await;
        assert_eq!(head.status, StatusCode::OK, "HEAD {path}");
        assert!(head_body.is_empty(), "HEAD {path}");
        assert_eq!(head.headers[header::CONTENT_LENGTH], body.len().to_string().as_str(), "HEAD {path}");
        assert_eq!(head.headers[header::CONTENT_SECURITY_POLICY], policy, "HEAD {path}");
    }
}

#[tokio::test]
async fn an_unknown_console_asset_is_a_404() {
    let (app, _db) = app().await;
    for path in ["/console/nothing.js", "/console/..%2fCargo.toml", "/console/index.htm", "/console/a/b"] {
        let (response, body) = send(&app, Method::GET, path).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        assert_eq!(body["type"], "NotFound", "{path}: {body}");
    }
}
