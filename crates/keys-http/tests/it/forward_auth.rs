//! `/v1/auth/forward` without a socket: the answers a gateway acts on, for
//! every credential shape and for what hostile clients send.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::{App, AppConfig};
use keys_testkit::TestDb;
use serde_json::json;

struct Gateway {
    app: App,
    token: String,
    /// Every reason an answer carried, to be checked against the reasons
    /// `/openapi.json` lists.
    reasons: std::sync::Mutex<std::collections::BTreeSet<String>>,
    _db: TestDb,
}

/// What a gateway reads from an answer.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    reason: Option<String>,
    headers: http::HeaderMap,
}

impl Gateway {
    async fn new() -> Self {
        let db = TestDb::sqlite();
        let app = App::new(db.store().await, AppConfig::default());
        let token = app.service().bootstrap_if_empty().await.expect("bootstrap").expect("empty").token;
        Self { app, token: token.expose().to_owned(), reasons: Default::default(), _db: db }
    }

    async fn manage(&self, method: Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("ServiceToken {}", self.token));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
        let response = self.app.handle(request.body(Full::new(body)).expect("request")).await;
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    }

    async fn forward(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.app.handle(request.body(Full::new(Bytes::from_static(b"ignored"))).expect("request")).await;
        let headers = response.headers().clone();
        let reason = headers.get("x-keysd-reason").and_then(|value| value.to_str().ok()).map(str::to_owned);
        if let Some(reason) = &reason {
            self.reasons.lock().expect("lock").insert(reason.clone());
        }
        if response.status() != StatusCode::OK {
            assert_generic_challenge(&headers, reason.as_deref());
        }
        Answer { status: response.status(), reason, headers }
    }

    /// A service token made through the API by the bootstrap admin token.
    async fn service_token(&self, body: serde_json::Value) -> String {
        let created = self.manage(Method::POST, "/v1/service_token/", Some(body)).await;
        created["token"].as_str().expect("token").to_owned()
    }
}

impl Drop for Gateway {
    // Every reason forward auth sent is one `/openapi.json` documents.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let documented = keys_http::openapi::reasons();
        for reason in self.reasons.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            assert!(documented.contains(&reason.as_str()), "forward auth sent `{reason}`, which /openapi.json omits");
        }
    }
}

/// The `WWW-Authenticate` a gateway hands on to the client says only that
/// the token is invalid (or lacks a scope, or is missing): never the reason,
/// which is the gateway's (`X-Keysd-Reason`). A client holding a leaked key
/// must not learn that it is disabled, deleted or unknown.
fn assert_generic_challenge(headers: &http::HeaderMap, reason: Option<&str>) {
    let challenge = headers[header::WWW_AUTHENTICATE].to_str().expect("ascii");
    let expected = match reason {
        Some("credential_missing") => "Bearer realm=\"keysd\"",
        Some("insufficient_scope") => "Bearer realm=\"keysd\", error=\"insufficient_scope\"",
        _ => "Bearer realm=\"keysd\", error=\"invalid_token\"",
    };
    assert_eq!(challenge, expected, "the client's challenge for {reason:?}");
    assert!(!challenge.contains("error_description"), "{challenge}");
}

#[tokio::test]
async fn every_credential_shape_and_every_refusal() {
    let gateway = Gateway::new().await;
    let token = gateway.token.clone();
    let service = ("x-keysd-service-token", token.as_str());
    let key = gateway.manage(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "backend"}))).await;
    let secret = key["api_key"].as_str().expect("secret").to_owned();
    let bearer = format!("Bearer {secret}");

    // Valid, in each shape and method, also below the route (Envoy's prefix).
    for method in [Method::GET, Method::POST, Method::DELETE, Method::HEAD] {
        let answer = gateway.forward(method.clone(), "/v1/auth/forward", &[service, ("authorization", &bearer)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{method}");
        assert_eq!(answer.headers["x-keysd-workspace"], "staging");
        assert_eq!(answer.headers["x-keysd-key-id"], key["id"].as_str().expect("id"));
        assert_eq!(answer.headers["cache-control"], "no-store");
    }
    assert_eq!(
        gateway.forward(Method::GET, "/v1/auth/forward/orders/42", &[service, ("x-api-key", &secret)]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &secret)]).await.status,
        StatusCode::OK
    );

    // Every identity header is on every 200, empty where it does not apply,
    // so gateways that copy keysd's headers overwrite a client's forgeries.
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &bearer)]).await;
    for name in ["x-keysd-entity-id", "x-keysd-subject", "x-keysd-external-id", "x-keysd-scopes"] {
        assert_eq!(answer.headers[name], "", "{name}");
    }
    // Any method a gateway keeps, and a declared body length it forwards,
    // are no reason to refuse: the body is never read.
    let propfind = Method::from_bytes(b"PROPFIND").expect("method");
    assert_eq!(
        gateway.forward(propfind, "/v1/auth/forward", &[service, ("x-api-key", &secret)]).await.status,
        StatusCode::OK
    );
    let declared = [service, ("x-api-key", secret.as_str()), ("content-length", "70000")];
    assert_eq!(gateway.forward(Method::POST, "/v1/auth/forward", &declared).await.status, StatusCode::OK);

    // The gateway's own token.
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![("x-keysd-service-token", "kst_nope"), ("authorization", bearer.as_str())],
    ] {
        let answer = gateway.forward(Method::GET, "/v1/auth/forward", &headers).await;
        assert_eq!(
            (answer.status, answer.reason.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("service_token_invalid"))
        );
        assert!(answer.headers.contains_key(header::WWW_AUTHENTICATE));
    }
    // A service token as the client's credential is no credential.
    let as_client = format!("ServiceToken {token}");
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &as_client)]).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("malformed")));

    // Missing, repeated, conflicting, oversized and garbage credentials: a
    // clean 401 with its reason, never another status.
    // No credential at all: a challenge without an error code (RFC 6750).
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service]).await;
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"keysd\"");
    let huge = format!("Bearer SS.{}", "a".repeat(20_000));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![service], "credential_missing"),
        (vec![service, ("authorization", &bearer), ("authorization", &bearer)], "malformed"),
        (vec![service, ("authorization", &bearer), ("x-api-key", &secret)], "malformed"),
        (vec![service, ("authorization", &huge)], "malformed"),
        (vec![service, ("authorization", "Basic dXNlcjpwYXNz")], "malformed"),
        (vec![service, ("authorization", "Bearer SS.notakey")], "malformed"),
        (vec![service, ("authorization", "JWT not.a.jwt")], "malformed"),
        (vec![service, ("authorization", "SS.PUBK.garbage")], "malformed"),
        (vec![service, service, ("authorization", &bearer)], "service_token_invalid"),
    ];
    for (headers, reason) in cases {
        let answer = gateway.forward(Method::GET, "/v1/auth/forward", &headers).await;
        assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some(reason)), "{headers:?}");
    }

    // Scopes the gateway requires: a key with none lacks them (403).
    let scoped = [service, ("authorization", bearer.as_str()), ("x-keysd-required-scopes", "orders:read")];
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &scoped).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"keysd\", error=\"insufficient_scope\"");

    // A verified identity that cannot travel as a header value is refused,
    // never granted without it.
    let organisation = gateway.app.service().find_organisation("default").await.expect("lookup").expect("default").id;
    let created = gateway
        .manage(
            Method::POST,
            &format!("/api/organisations/v1/organisations/{organisation}/keys"),
            Some(json!({"name": "k"})),
        )
        .await;
    let private_key = created["privateKey"].as_str().expect("private key");
    let issuer = format!("https://versori.com/sk/{}", created["id"].as_str().expect("id"));
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
    let sign = |sub: &str| {
        let claims = json!({"iss": issuer, "sub": sub, "exp": exp});
        keys_crypto::mint::sign(&claims, None, private_key, keys_crypto::Algorithm::Rs256).expect("signs")
    };
    let good = format!("JWT {}", sign("user-7"));
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &good)]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-keysd-subject"], "user-7");
    let injected = format!("JWT {}", sign("user-7\r\nX-Keysd-Organisation: other"));
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &injected)]).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("malformed")));

    // Revocation is seen at once by the same process.
    let id = key["id"].as_str().expect("id");
    gateway.manage(Method::DELETE, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &bearer)]).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("key_deleted")));
}

/// An API key's whole life as a gateway sees it: the owner and the scopes
/// in the identity headers, `X-Keysd-Required-Scopes` honoured (`:*`
/// wildcards included), a disabled key refused and an enabled one granted
/// again, a roll without grace stopping the old key at once.
#[tokio::test]
async fn api_key_scopes_owner_and_lifecycle_reach_the_gateway() {
    let gateway = Gateway::new().await;
    let token = gateway.token.clone();
    let service = ("x-keysd-service-token", token.as_str());
    let body = json!({"name": "backend", "scopes": ["keys:*", "audit:read"], "external_id": "customer-42"});
    let key = gateway.manage(Method::POST, "/v1/staging/ws_api_key/", Some(body)).await;
    let (secret, id) =
        (key["api_key"].as_str().expect("secret").to_owned(), key["id"].as_str().expect("id").to_owned());
    let bearer = format!("Bearer {secret}");
    let with = |required| presenting(service, &bearer, required);

    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-keysd-scopes"], "keys:*,audit:read");
    assert_eq!(answer.headers["x-keysd-external-id"], "customer-42");
    assert_eq!(answer.headers["x-keysd-key-id"], id.as_str());
    for granted in ["keys:read", "keys:admin:write, audit:read", " audit:read ,keys:read", "", " , "] {
        let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(Some(granted))).await;
        assert_eq!(answer.status, StatusCode::OK, "{granted:?}: {:?}", answer.reason);
    }
    for lacking in ["audit:write", "keys", "keys:read,billing:read", "audit:*"] {
        let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(Some(lacking))).await;
        assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::FORBIDDEN, Some("insufficient_scope")));
    }
    // More required scopes than a key can hold is no request a gateway makes.
    let many = (0..65).map(|index| format!("s:{index}")).collect::<Vec<_>>().join(",");
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(Some(&many))).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("malformed")));

    let path = format!("/v1/staging/ws_api_key/{id}");
    assert_eq!(gateway.manage(Method::PATCH, &format!("{path}/disable/"), None).await["status"], "disabled");
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(None)).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("key_disabled")));
    // The gateway learns the key is disabled; the challenge the client gets
    // does not say so.
    assert_eq!(answer.headers[header::WWW_AUTHENTICATE], "Bearer realm=\"keysd\", error=\"invalid_token\"");
    assert_eq!(gateway.manage(Method::PATCH, &format!("{path}/enable/"), None).await["status"], "active");
    assert_eq!(gateway.forward(Method::GET, "/v1/auth/forward", &with(None)).await.status, StatusCode::OK);

    // An owner outside ASCII still travels (as UTF-8), never a refusal.
    let owner = json!({"external_id": "Müller GmbH"});
    assert_eq!(gateway.manage(Method::PATCH, &format!("{path}/"), Some(owner)).await["external_id"], "Müller GmbH");
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(None)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.reason);
    assert_eq!(answer.headers["x-keysd-external-id"].as_bytes(), "Müller GmbH".as_bytes());

    let rolled = gateway.manage(Method::POST, &format!("{path}/roll/"), None).await;
    let new_bearer = format!("Bearer {}", rolled["api_key"].as_str().expect("new secret"));
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &with(None)).await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("key_expired")));
    let answer = gateway.forward(Method::GET, "/v1/auth/forward", &[service, ("authorization", &new_bearer)]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["x-keysd-scopes"], "keys:*,audit:read", "the new key inherits the scopes");
}

/// The gateway's own token: any role that permits verification passes
/// (`verify` is what a gateway needs; `manage` and `admin` still work), and
/// a `verify` token limited to one workspace does not reach organisation
/// keys, whose JWTs are for it unknown.
#[tokio::test]
async fn the_gateway_token_needs_verify_and_a_limited_one_reaches_no_organisation_key() {
    let gateway = Gateway::new().await;
    let key = gateway.manage(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "backend"}))).await;
    let bearer = format!("Bearer {}", key["api_key"].as_str().expect("secret"));
    let verify = gateway.service_token(json!({"name": "nginx", "role": "verify"})).await;
    let manage = gateway.service_token(json!({"name": "ops", "role": "manage"})).await;
    let limited = gateway.service_token(json!({"name": "edge", "role": "verify", "workspaces": ["staging"]})).await;
    for token in [&verify, &manage, &gateway.token, &limited] {
        let answer = gateway
            .forward(Method::GET, "/v1/auth/forward", &[("x-keysd-service-token", token), ("authorization", &bearer)])
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.reason);
    }

    // An organisation-key JWT: the unlimited verify token verifies it, the
    // one limited to a workspace does not reach the key.
    let organisation = gateway.app.service().find_organisation("default").await.expect("lookup").expect("default").id;
    let path = format!("/api/organisations/v1/organisations/{organisation}/keys");
    let created = gateway.manage(Method::POST, &path, Some(json!({"name": "k"}))).await;
    let claims = json!({
        "iss": format!("https://versori.com/sk/{}", created["id"].as_str().expect("id")),
        "sub": "user-7",
        "exp": time::OffsetDateTime::now_utc().unix_timestamp() + 600,
    });
    let private_key = created["privateKey"].as_str().expect("private key");
    let jwt = keys_crypto::mint::sign(&claims, None, private_key, keys_crypto::Algorithm::Rs256).expect("signs");
    let jwt = format!("JWT {jwt}");
    let answer = gateway
        .forward(Method::GET, "/v1/auth/forward", &[("x-keysd-service-token", &verify), ("authorization", &jwt)])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.reason);
    let answer = gateway
        .forward(Method::GET, "/v1/auth/forward", &[("x-keysd-service-token", &limited), ("authorization", &jwt)])
        .await;
    assert_eq!((answer.status, answer.reason.as_deref()), (StatusCode::UNAUTHORIZED, Some("unknown_key")));
}

/// The headers of a request presenting `bearer`, through the gateway whose
/// token header is `service`, requiring `required` scopes if any.
fn presenting<'a>(service: (&'a str, &'a str), bearer: &'a str, required: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![service, ("authorization", bearer)];
    headers.extend(required.map(|required| ("x-keysd-required-scopes", required)));
    headers
}
