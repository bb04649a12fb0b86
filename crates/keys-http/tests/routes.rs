//! The route table as the server answers it, without a socket: every route
//! answers exactly its methods (405 with `Allow` otherwise), HEAD wherever
//! GET (same status and headers, no body), and the error shape of its
//! dialect.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::error::Dialect;
use keys_http::routes::ROUTES;
use keys_http::{App, AppConfig};

async fn app() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store = keys_store::open(&url).await.expect("store opens");
    (App::new(Arc::clone(&store), AppConfig { rsa_pool_capacity: 0, ..AppConfig::default() }), dir)
}

/// A concrete path of a template: every parameter is `x`.
fn concrete(pattern: &str) -> String {
    pattern.split('/').map(|segment| if segment.starts_with('{') { "x" } else { segment }).collect::<Vec<_>>().join("/")
}

async fn send(app: &App, method: Method, path: &str) -> (Response<()>, Bytes) {
    let request = Request::builder().method(method).uri(path).body(Full::new(Bytes::new())).expect("request");
    let (parts, body) = app.handle(request).await.into_parts();
    (Response::from_parts(parts, ()), body.collect().await.expect("body").to_bytes())
}

#[tokio::test]
async fn every_route_answers_exactly_its_methods() {
    let (app, _dir) = app().await;
    for route in ROUTES {
        let path = concrete(route.pattern());
        let declared: Vec<&Method> = route.methods().collect();
        let allow = declared.iter().map(|method| method.as_str()).collect::<Vec<_>>().join(", ");
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS] {
            let (response, body) = send(&app, method.clone(), &path).await;
            if declared.contains(&&method) {
                assert_ne!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                continue;
            }
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(response.headers()[header::ALLOW], allow.as_str(), "{method} {path}");
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON error");
            match route.dialect() {
                Dialect::SuprSend => assert_eq!(body["type"], "MethodNotAllowed", "{path}"),
                Dialect::Versori => assert_eq!(body["code"], "method_not_allowed", "{path}"),
            }
        }
    }
}

#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let (app, _dir) = app().await;
    for route in ROUTES {
        let path = concrete(route.pattern());
        let has_get = route.methods().any(|method| method == Method::GET);
        let (head, head_body) = send(&app, Method::HEAD, &path).await;
        if !has_get {
            assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
            continue;
        }
        let (get, get_body) = send(&app, Method::GET, &path).await;
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        if head.status().is_success() {
            assert!(head_body.is_empty(), "HEAD {path} has a body");
            assert_eq!(head.headers()[header::CONTENT_TYPE], get.headers()[header::CONTENT_TYPE], "{path}");
            let length: usize =
                head.headers()[header::CONTENT_LENGTH].to_str().expect("ascii").parse().expect("number");
            // The metrics text grows with every request; the others are equal.
            if route.pattern() != "/metrics" {
                assert_eq!(length, get_body.len(), "Content-Length of HEAD {path}");
            }
        }
    }
}

#[test]
fn each_route_speaks_the_dialect_of_its_path() {
    // Unmatched paths answer in the dialect of their prefix; a route must
    // not answer in another one than its neighbours' 404s.
    for route in ROUTES {
        assert_eq!(route.dialect(), Dialect::of_path(route.pattern()), "{}", route.pattern());
    }
}
