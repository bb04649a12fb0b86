//! Every JSON request body, through the whole application (`App::handle`
//! over an in-memory SQLite store, authenticated): the first byte picks the
//! route, the rest is the body. Never a 5xx, and a 400 speaks of the
//! request, never of the parser (SPEC section 10).
#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use keys_http::{App, AppConfig};
use libfuzzer_sys::fuzz_target;

struct Target {
    runtime: tokio::runtime::Runtime,
    app: App,
    token: String,
    routes: Vec<(Method, String)>,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (app, token) = runtime.block_on(async {
        let store = keys_store::open("sqlite::memory:").await.expect("store");
        let app = App::new(store, AppConfig::default());
        let bootstrapped = app.service().bootstrap_if_empty().await.expect("bootstrap").expect("empty");
        (app, bootstrapped.token.expose().to_owned())
    });
    // Ids that do not exist: the body is parsed before the key is looked up,
    // and nothing slow (RSA generation) runs for a body that parses.
    let routes = [
        (Method::POST, "/v1/workspace/".to_owned()),
        (Method::POST, "/v1/staging/ws_api_key/".to_owned()),
        (Method::PATCH, "/v1/staging/ws_api_key/ws_apik_01JZZZZZZZZZZZZZZZZZZZZZZZ/".to_owned()),
        (Method::POST, "/v1/staging/ws_api_key/ws_apik_01JZZZZZZZZZZZZZZZZZZZZZZZ/roll/".to_owned()),
        (Method::POST, "/v1/staging/ws_public_key/".to_owned()),
        (Method::PATCH, "/v1/staging/ws_public_key/ws_pubk_01JZZZZZZZZZZZZZZZZZZZZZZZ/".to_owned()),
        (Method::POST, "/v1/staging/ws_signing_key/signing_key_01JZZZZZZZZZZZZZZZZZZZZZZZ/roll/".to_owned()),
        (Method::POST, "/v1/service_token/".to_owned()),
        (Method::POST, "/v1/verify/api_key/".to_owned()),
        (Method::POST, "/v1/verify/public_key/".to_owned()),
        (Method::POST, "/v1/verify/jwt/".to_owned()),
        (Method::POST, "/api/organisations/v1/organisations/01JZZZZZZZZZZZZZZZZZZZZZZZ/keys".to_owned()),
    ]
    .to_vec();
    Target { runtime, app, token, routes }
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let target = &*TARGET;
    let (method, path) = &target.routes[usize::from(pick) % target.routes.len()];
    let request = Request::builder()
        .method(method.clone())
        .uri(path.as_str())
        .header(header::AUTHORIZATION, format!("ServiceToken {}", target.token))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let (status, answer) = target.runtime.block_on(async {
        let response = target.app.handle(request).await;
        let status = response.status();
        (status, response.into_body().collect().await.expect("body").to_bytes())
    });
    assert!(!status.is_server_error(), "{method} {path} answered {status}: {answer:?}");
    if status == 400 {
        let text = String::from_utf8_lossy(&answer);
        for internal in [" at line ", "column ", "invalid type", "struct "] {
            assert!(!text.contains(internal), "{method} {path}: {text}");
        }
    }
});
