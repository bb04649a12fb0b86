//! The route table as the server answers it, without a socket: every route
//! answers exactly its methods (405 with `Allow` otherwise), HEAD wherever
//! GET (same status and headers, no body), and the error shape of its
//! dialect.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::error::Dialect;
use keys_http::routes::ROUTES;
use keys_http::{App, AppConfig};
use keys_testkit::TestDb;

async fn app() -> (App, TestDb) {
    let db = TestDb::sqlite();
    let store = db.store().await;
    (App::new(store, AppConfig::default()), db)
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

/// Every response that hands out a secret or a private key says
/// `Cache-Control: no-store` (docs/GUARANTEES.md, Secrets); others do not need to.
#[tokio::test]
async fn responses_with_secrets_are_never_cached() {
    let (app, _dir) = app().await;
    let bootstrapped = app.service().bootstrap_if_empty().await.expect("bootstrap").expect("an empty database");
    let token = format!("ServiceToken {}", bootstrapped.token.expose());
    let organisation = bootstrapped.organisation.id.to_string();
    let call = |method: Method, path: String, body: Option<serde_json::Value>| {
        let app = app.clone();
        let token = token.clone();
        async move {
            let mut request = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, token);
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
            let (parts, body) = app.handle(request.body(Full::new(body)).expect("request")).await.into_parts();
            let json: serde_json::Value = serde_json::from_slice(&body.collect().await.expect("body").to_bytes())
                .unwrap_or(serde_json::Value::Null);
            let cache_control =
                parts.headers.get(header::CACHE_CONTROL).map(|value| value.to_str().unwrap_or("").to_owned());
            (parts.status, cache_control, json)
        }
    };
    let no_store = Some("no-store".to_owned());
    let name = Some(serde_json::json!({"name": "k"}));

    let (status, cache, key) = call(Method::POST, "/v1/staging/ws_api_key/".into(), name.clone()).await;
    assert_eq!((status, cache), (StatusCode::CREATED, no_store.clone()), "{key}");
    let (status, cache, _) = call(Method::GET, "/v1/staging/ws_api_key/".into(), None).await;
    assert_eq!((status, cache), (StatusCode::OK, None));

    let (status, cache, public) = call(Method::POST, "/v1/staging/ws_public_key/".into(), name.clone()).await;
    assert_eq!((status, cache), (StatusCode::CREATED, no_store.clone()));
    let rotate = format!("/v1/staging/ws_public_key/{}/rotate/", public["id"].as_str().expect("id"));
    let (status, cache, _) = call(Method::PATCH, rotate, None).await;
    assert_eq!((status, cache), (StatusCode::ACCEPTED, no_store.clone()));

    let (status, cache, signing) = call(Method::POST, "/v1/staging/ws_signing_key/".into(), None).await;
    assert_eq!((status, cache), (StatusCode::CREATED, no_store.clone()));
    let roll = format!("/v1/staging/ws_signing_key/{}/roll/", signing["uid"].as_str().expect("uid"));
    let (status, cache, _) = call(Method::POST, roll, None).await;
    assert_eq!((status, cache), (StatusCode::CREATED, no_store.clone()));

    let keys = format!("/api/organisations/v1/organisations/{organisation}/keys");
    let (status, cache, _) = call(Method::POST, keys, name).await;
    assert_eq!((status, cache), (StatusCode::CREATED, no_store));
    // A refused create hands out nothing and needs no directive.
    let (status, cache, _) = call(Method::POST, "/v1/staging/ws_signing_key/".into(), None).await;
    assert_eq!((status, cache), (StatusCode::BAD_REQUEST, None));
}
