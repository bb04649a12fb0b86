//! Handler tests without a socket: `App::handle` with requests built here,
//! against a real SQLite store in a temporary directory, behind the
//! verification cache as `keysd serve` runs it (so every test that changes
//! a key and then verifies also checks that the change is seen at once).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_core::{Mode, OrganisationId, Quotas};
use keys_crypto::jwt::Algorithm;
use keys_crypto::mint;
use keys_crypto::ServiceToken;
use keys_http::{App, AppConfig};
use keys_service::ServiceConfig;
use keys_service::{Clock, OsEntropy};
use keys_store::Store;
use keys_testkit::{Tenant, TestClock, TestDb};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::openapi_check;

struct Harness {
    app: App,
    /// Every response, checked against `/openapi.json` when the test ends.
    responses: openapi_check::Recorder,
    store: Arc<dyn Store>,
    token: String,
    organisation: OrganisationId,
    db: TestDb,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn harness() -> Harness {
    harness_with(AppConfig::default()).await
}

/// The harness with a service on `clock` (every other source as `keysd
/// serve` has it).
async fn harness_at(clock: Arc<TestClock>) -> Harness {
    let db = TestDb::sqlite();
    let store = db.cached_store(keys_store::CacheConfig::default()).await;
    let config = AppConfig::default();
    let service =
        keys_service::Service::with_sources(Arc::clone(&store), config.service.clone(), clock, Arc::new(OsEntropy));
    harness_with_service(db, store, Arc::new(service), config).await
}

async fn harness_with(config: AppConfig) -> Harness {
    let db = TestDb::sqlite();
    let store = db.cached_store(keys_store::CacheConfig::default()).await;
    harness_on(db, store, config).await
}

/// The harness on a store that holds every create to `quotas`, as `keysd
/// serve --max-…` opens it.
async fn capped_harness(quotas: Quotas) -> Harness {
    let db = TestDb::sqlite();
    let capped = db.sqlite_store().await.with_quotas(quotas);
    let store: Arc<dyn Store> = Arc::new(keys_store::CachedStore::new(capped, keys_store::CacheConfig::default()));
    harness_on(db, store, AppConfig::default()).await
}

async fn harness_on(db: TestDb, store: Arc<dyn Store>, config: AppConfig) -> Harness {
    let app = App::new(Arc::clone(&store), config);
    harness_of_at(db, store, app, OffsetDateTime::now_utc()).await
}

async fn harness_with_service(
    db: TestDb,
    store: Arc<dyn Store>,
    service: Arc<keys_service::Service>,
    config: AppConfig,
) -> Harness {
    let now = service.now();
    harness_of_at(db, store, App::with_service(service, config), now).await
}

async fn harness_of_at(db: TestDb, store: Arc<dyn Store>, app: App, now: OffsetDateTime) -> Harness {
    let workspaces = [("staging", Some(Mode::Sandbox)), ("production", Some(Mode::Production))];
    let tenant = Tenant::new("default", &workspaces, "test", now, &mut OsRng);
    let (organisation, token) = tenant.bootstrap(&*store).await;
    let responses = openapi_check::Recorder::default();
    Harness { app, responses, store, token, organisation, db }
}

impl Harness {
    /// A second organisation with its own token, created like `keysd org
    /// create` + `keysd token create` do.
    async fn other_organisation(&self, name: &str) -> (OrganisationId, String) {
        let tenant = Tenant::new(name, &[("staging", None)], "other", OffsetDateTime::now_utc(), &mut OsRng);
        tenant.create_in(&*self.store).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
        let response = self.app.handle(request).await;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        self.responses.record(openapi_check::Observation {
            method,
            path,
            status: status.as_u16(),
            content_type,
            body: text.clone(),
        });
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    /// An authenticated request with an optional JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(&self.token, method, path, body).await
    }

    async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut builder =
            Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("ServiceToken {token}"));
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        self.send(builder.body(Full::new(body)).expect("request")).await
    }

    /// An authenticated request with a raw body and content type.
    async fn raw(&self, method: Method, path: &str, content_type: Option<&str>, body: &str) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("ServiceToken {}", self.token));
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        self.send(builder.body(Full::new(Bytes::from(body.to_owned()))).expect("request")).await
    }

    async fn public(&self, method: Method, path: &str) -> Reply {
        self.send(Request::builder().method(method).uri(path).body(Full::new(Bytes::new())).expect("request")).await
    }
}

fn validation(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.body["code"], 400);
    assert_eq!(reply.body["error_code"], "error");
    assert_eq!(reply.body["type"], "ValidationError");
    let detail = reply.body["detail"].as_array().expect("detail array");
    assert!(detail.iter().any(|item| item.as_str().is_some_and(|item| item.contains(message))), "{}", reply.text);
    assert_eq!(reply.body["message"], serde_json::to_string(detail).expect("json"));
}

fn not_found(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"code": 404, "error_code": "not_found", "type": "NotFound", "message": message, "detail": message})
    );
}

fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// The sorted member names of a key record: its `own` (space-separated)
/// and the creation and deletion members every key record has.
fn record_members(own: &'static str) -> Vec<&'static str> {
    let mut members: Vec<&str> =
        own.split_whitespace().chain(["created_at", "created_by", "deleted_at", "deleted_by"]).collect();
    members.sort_unstable();
    members
}

fn is_timestamp(value: &Value) -> bool {
    let Some(text) = value.as_str() else { return false };
    // 2026-04-21T12:35:24.117631Z
    text.len() == 27
        && text.ends_with('Z')
        && text.as_bytes()[19] == b'.'
        && text[20..26].bytes().all(|b| b.is_ascii_digit())
}

fn now_seconds() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

// ------------------------------------------------------------------ operations

#[tokio::test]
async fn health_ready_metrics_openapi() {
    let harness = harness().await;
    let health = harness.public(Method::GET, "/health").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, json!({"status": "ok"}));
    assert!(health.headers.contains_key("x-request-id"));
    let ready = harness.public(Method::GET, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    let openapi = harness.public(Method::GET, "/openapi.json").await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert_eq!(openapi.body["openapi"], "3.1.0");
    let metrics = harness.public(Method::GET, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics.headers[header::CONTENT_TYPE].to_str().expect("ascii").starts_with("text/plain"));
    assert!(metrics.text.contains("keysd_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 1"));
    assert!(metrics.text.contains("keysd_http_request_duration_seconds_bucket{route=\"/ready\""));
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let harness = harness().await;
    let request = Request::builder()
        .uri("/health")
        .header("x-request-id", "abc-123")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(harness.send(request).await.headers["x-request-id"], "abc-123");
    let request = Request::builder()
        .uri("/health")
        .header("x-request-id", "bad id!")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let generated = harness.send(request).await.headers["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(generated.len(), 26);
}

#[tokio::test]
async fn unknown_path_and_wrong_method() {
    let harness = harness().await;
    let missing = harness.call(Method::GET, "/v2/nothing/", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["type"], "NotFound");
    let wrong = harness.call(Method::PUT, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers[header::ALLOW], "GET, POST");
    assert_eq!(wrong.body["error_code"], "method_not_allowed");
    assert_eq!(wrong.body["type"], "MethodNotAllowed");
    assert_eq!(wrong.body["message"], wrong.body["detail"]);
    let wrong = harness.public(Method::POST, "/health").await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.headers[header::ALLOW], "GET");
    let wrong = harness.call(Method::GET, "/api/organisations/v1/keys/x", None).await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    assert_eq!(wrong.body["code"], "not_found");
    let wrong = harness.call(Method::PATCH, "/api/organisations/v1/keys/x", None).await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.body["code"], "method_not_allowed");
}

#[tokio::test]
async fn internal_errors_reveal_nothing() {
    use sqlx::Connection;
    let harness = harness().await;
    // Break the database under the running store: a table disappears.
    let mut connection = sqlx::SqliteConnection::connect(harness.db.url()).await.expect("connect");
    sqlx::query("DROP TABLE api_keys").execute(&mut connection).await.expect("drop");
    connection.close().await.expect("close");
    let broken = harness.call(Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        broken.body,
        json!({"code": 500, "error_code": "internal_server_error", "type": "InternalServerError",
               "message": "Internal server error.", "detail": "Internal server error."})
    );
    assert!(!broken.text.contains("api_keys") && !broken.text.contains("table"));
    let verify = harness
        .call(
            Method::POST,
            "/v1/verify/api_key/",
            Some(json!({"api_key": keys_crypto::ApiKeySecret::generate(&mut OsRng).expose()})),
        )
        .await;
    assert_eq!(verify.status, StatusCode::INTERNAL_SERVER_ERROR);
}

// ------------------------------------------------------------------------ auth

#[tokio::test]
async fn authentication_failures_are_the_seed_401() {
    let harness = harness().await;
    let expected = json!({
        "code": 401, "error_code": "authentication_failed", "type": "AuthenticationFailed",
        "message": "Invalid service token.", "detail": "Invalid service token."
    });
    let missing = harness.public(Method::GET, "/v1/workspace/").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(missing.body, expected);
    // Well-formed but unknown, malformed, and the wrong scheme.
    let unknown = ServiceToken::generate(&mut OsRng);
    for header_value in [
        format!("ServiceToken {}", unknown.expose()),
        "ServiceToken kst_nonsense".to_owned(),
        format!("Bearer {}", harness.token),
        format!("Basic {}", harness.token),
        harness.token.clone(),
    ] {
        let request = Request::builder()
            .uri("/v1/workspace/")
            .header(header::AUTHORIZATION, header_value)
            .body(Full::new(Bytes::new()))
            .expect("request");
        let reply = harness.send(request).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.body, expected);
    }
    // Dialect 2 accepts Bearer, and answers 401 in its own shape.
    let path = format!("/api/organisations/v1/organisations/{}/keys", harness.organisation);
    let bearer = Request::builder()
        .uri(&path)
        .header(header::AUTHORIZATION, format!("Bearer {}", harness.token))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(harness.send(bearer).await.status, StatusCode::OK);
    let refused = harness.public(Method::GET, &path).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body["code"], "unauthenticated");
    assert!(refused.body["message"].is_string());
    assert!(refused.body.get("cause").is_some());
}

// ------------------------------------------------------------------ workspaces

#[tokio::test]
async fn workspaces_list_and_create() {
    let harness = harness().await;
    let list = harness.call(Method::GET, "/v1/workspace/", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["meta"], json!({"count": 2, "limit": 10, "offset": 0}));
    let slugs: Vec<&str> =
        list.body["results"].as_array().expect("results").iter().filter_map(|w| w["slug"].as_str()).collect();
    assert!(slugs.contains(&"staging") && slugs.contains(&"production"));

    let created = harness
        .call(
            Method::POST,
            "/v1/workspace",
            Some(json!({"name": "Demo Space", "description": "d", "mode": "production"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["slug"], "demo-space");
    assert_eq!(created.body["mode"], "production");
    assert!(created.body["uid"].as_str().expect("uid").starts_with("wksp_"));
    assert!(is_timestamp(&created.body["created_at"]));
    assert_eq!(created.body["created_by"]["name"], "System User");
    assert_eq!(created.body["created_by"]["email"], format!("org_{}@systemuser.keysd.local", harness.organisation));

    let duplicate =
        harness.call(Method::POST, "/v1/workspace/", Some(json!({"name": "x", "slug": "demo-space"}))).await;
    validation(&duplicate, "workspace slug 'demo-space' already exists");
    let reserved = harness.call(Method::POST, "/v1/workspace/", Some(json!({"name": "x", "slug": "verify"}))).await;
    validation(&reserved, "reserved");
    let bad_slug = harness.call(Method::POST, "/v1/workspace/", Some(json!({"name": "x", "slug": "Bad Slug"}))).await;
    validation(&bad_slug, "slug must match");
    let bad_mode = harness.call(Method::POST, "/v1/workspace/", Some(json!({"name": "x", "mode": "test"}))).await;
    validation(&bad_mode, "mode must be");
    let paged = harness.call(Method::GET, "/v1/workspace/?limit=1&offset=1", None).await;
    assert_eq!(paged.body["meta"], json!({"count": 3, "limit": 1, "offset": 1}));
    assert_eq!(paged.body["results"].as_array().expect("results").len(), 1);
}

#[tokio::test]
async fn bad_bodies_are_rejected() {
    let harness = harness().await;
    let path = "/v1/staging/ws_api_key/";
    validation(&harness.raw(Method::POST, path, Some("application/json"), "{not json").await, "not valid JSON");
    validation(&harness.raw(Method::POST, path, Some("application/json"), "").await, "JSON object");
    validation(
        &harness.raw(Method::POST, path, Some("application/json"), "[1,2]").await,
        "request body must be a JSON object",
    );
    validation(&harness.call(Method::POST, path, Some(json!({"name": 5}))).await, "name must be a string");
    validation(&harness.call(Method::POST, path, Some(json!({"name": "a", "colour": "red"}))).await, "unknown field");
    validation(&harness.call(Method::POST, path, Some(json!({"description": "no name"}))).await, "name is required");
    validation(&harness.call(Method::POST, path, Some(json!({"name": "   "}))).await, "name may not be blank");
    validation(&harness.call(Method::POST, path, Some(json!({"name": "n".repeat(256)}))).await, "longer than 255");
    validation(&harness.call(Method::POST, path, Some(json!({"name": "a\u{0007}b"}))).await, "control characters");

    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let reply = harness.raw(Method::POST, path, content_type, r#"{"name":"x"}"#).await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert_eq!(reply.body["type"], "UnsupportedMediaType");
        assert_eq!(reply.body["code"], 415);
    }
    let charset = harness.raw(Method::POST, path, Some("application/json; charset=utf-8"), r#"{"name":"x"}"#).await;
    assert_eq!(charset.status, StatusCode::CREATED);

    // Over 64 KiB: refused while reading (no Content-Length), and by the
    // declared Content-Length before reading.
    let big = format!(r#"{{"name":"x","description":"{}"}}"#, "a".repeat(70 * 1024));
    let declared = harness.raw(Method::POST, path, Some("application/json"), &big).await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.body["type"], "PayloadTooLarge");
    assert_eq!(declared.body["error_code"], "payload_too_large");
    let declared = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("ServiceToken {}", harness.token))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, big.len().to_string())
        .body(Full::new(Bytes::from(big.clone())))
        .expect("request");
    let declared = harness.send(declared).await;
    assert_eq!(declared.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(declared.body["code"], 413);
    // A lying Content-Length does not get past the limit either.
    let lying = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::AUTHORIZATION, format!("ServiceToken {}", harness.token))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "10")
        .body(Full::new(Bytes::from(big)))
        .expect("request");
    assert_eq!(harness.send(lying).await.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn list_parameters_are_validated_not_clamped() {
    let harness = harness().await;
    for query in ["limit=0", "limit=101", "limit=abc", "offset=-1", "offset=abc", "include_deleted=maybe"] {
        let reply = harness.call(Method::GET, &format!("/v1/staging/ws_api_key/?{query}"), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
    validation(&harness.call(Method::GET, "/v1/staging/ws_api_key/?limit=0", None).await, "limit must be");
    validation(&harness.call(Method::GET, "/v1/staging/ws_public_key/?limit=101", None).await, "limit must be");
    validation(&harness.call(Method::GET, "/v1/staging/ws_signing_key/?limit=abc", None).await, "limit must be");
    validation(&harness.call(Method::GET, "/v1/workspace/?offset=x", None).await, "offset must be");
    let ok = harness.call(Method::GET, "/v1/staging/ws_api_key/?limit=100&offset=0", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["meta"], json!({"count": 0, "limit": 100, "offset": 0}));
}

#[tokio::test]
async fn a_name_twice_in_a_body_or_a_query_is_a_400_that_changes_nothing() {
    let harness = harness().await;
    let keys = "/v1/staging/ws_api_key/";
    let json_type = Some("application/json");
    for (body, path) in [
        (r#"{"name":"a","name":"b"}"#, "name"),
        // The same name however it is escaped.
        (r#"{"name":"a","n\u0061me":"b"}"#, "name"),
        (r#"{"name":"a","meta":{"owner":"x","owner":"y"}}"#, "meta.owner"),
        (r#"{"name":"a","meta":{"list":[{"k":1},{"k":1, "k" : 2}]}}"#, "meta.list[1].k"),
        (r#"{"name":"a","meta":{"odd key":{"":1,"":2}}}"#, r#"meta."odd key"."""#),
    ] {
        let reply = harness.raw(Method::POST, keys, json_type, body).await;
        validation(&reply, &format!("{path} appears twice in one object"));
        assert!(!reply.text.contains("line") && !reply.text.contains("column"), "{}", reply.text);
    }
    assert_eq!(harness.call(Method::GET, keys, None).await.body["meta"]["count"], 0, "nothing was created");
    // Equal names in different objects are not duplicates.
    let siblings = r#"{"name":"a","meta":{"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]}}"#;
    assert_eq!(harness.raw(Method::POST, keys, json_type, siblings).await.status, StatusCode::CREATED);

    // Verification bodies too, and the other dialect in its own shape.
    let verify =
        harness.raw(Method::POST, "/v1/verify/api_key/", json_type, r#"{"api_key":"SS.a","api_key":"SS.b"}"#).await;
    validation(&verify, "api_key appears twice in one object");
    let organisation_keys = format!("/api/organisations/v1/organisations/{}/keys", harness.organisation);
    let versori = harness.raw(Method::POST, &organisation_keys, json_type, r#"{"name":"a","name":"b"}"#).await;
    assert_eq!(versori.status, StatusCode::BAD_REQUEST, "{}", versori.text);
    assert_eq!(versori.body["code"], "invalid_request");
    assert_eq!(versori.body["cause"], "name appears twice in one object");

    // A query parameter given twice, however it is spelled, on every kind of
    // list (both dialects and the audit trail).
    for path in [
        "/v1/staging/ws_api_key/?limit=1&limit=100",
        "/v1/staging/ws_api_key/?limit=1&l%69mit=100",
        "/v1/workspace/?offset=0&offset=0",
        "/v1/audit_event/?limit=1&limit=2",
        "/v1/audit_event/?action=api_key.generated&action=workspace.created",
    ] {
        validation(&harness.call(Method::GET, path, None).await, "is given more than once");
    }
    let repeated = harness.call(Method::GET, &format!("{organisation_keys}?limit=1&limit=2"), None).await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST, "{}", repeated.text);
    assert_eq!(repeated.body["cause"], r#"query parameter "limit" is given more than once"#);
    assert_eq!(
        harness.call(Method::GET, "/v1/staging/ws_api_key/?limit=1&offset=0", None).await.status,
        StatusCode::OK
    );
}

// -------------------------------------------------------------------- api keys

#[tokio::test]
async fn api_key_lifecycle_and_verification() {
    let harness = harness().await;
    let created = harness
        .call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "backend-prod", "description": "Primary"})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        keys_of(&created.body),
        record_members(
            "allowed_domains api_key credits description disabled_at disabled_by expires_at external_id id \
             is_deleted last_used_at masked_api_key meta name ratelimits rolled_at rolled_by scopes status updated_at \
             updated_by"
        )
    );
    let secret = created.body["api_key"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("SS.") && secret.len() == 46);
    assert_eq!(created.body["masked_api_key"], format!("{}*****", &secret[..10]));
    assert_eq!(created.body["allowed_domains"], json!([]));
    assert_eq!(created.body["is_deleted"], false);
    assert!(is_timestamp(&created.body["created_at"]));
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("ws_apik_"));

    let list = harness.call(Method::GET, "/v1/staging/ws_api_key", None).await;
    assert_eq!(list.body["meta"]["count"], 1);
    assert!(list.body["results"][0].get("api_key").is_none());
    assert!(!list.text.contains(&secret));

    let harness = &harness;
    let verify = |key: String| async move {
        harness.call(Method::POST, "/v1/verify/api_key/", Some(json!({"api_key": key}))).await
    };
    let valid = verify(secret.clone()).await;
    assert_eq!(
        valid.body,
        json!({
            "valid": true, "workspace": "staging", "key_id": id, "name": "backend-prod",
            "external_id": null, "scopes": [], "meta": null, "expires_at": null, "credits": null, "ratelimits": []
        })
    );

    let deleted = harness.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.text.is_empty());
    not_found(
        &harness.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{id}"), None).await,
        &format!("api key '{id}' not found"),
    );
    not_found(&harness.call(Method::DELETE, "/v1/staging/ws_api_key/nope/", None).await, "api key 'nope' not found");
    let after = verify(secret.clone()).await;
    assert_eq!(after.body, json!({"valid": false, "reason": "key_deleted"}));

    let hidden = harness.call(Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(hidden.body["meta"]["count"], 0);
    let shown = harness.call(Method::GET, "/v1/staging/ws_api_key/?include_deleted=true", None).await;
    assert_eq!(shown.body["meta"]["count"], 1);
    assert_eq!(shown.body["results"][0]["is_deleted"], true);
    assert!(is_timestamp(&shown.body["results"][0]["deleted_at"]));
    assert_eq!(shown.body["results"][0]["deleted_by"]["name"], "System User");

    // Garbage verifies as invalid, never as an error; a missing field is 400.
    assert_eq!(verify("SS.garbage".to_owned()).await.body, json!({"valid": false, "reason": "malformed"}));
    let numeric = harness.call(Method::POST, "/v1/verify/api_key/", Some(json!({"api_key": 12}))).await;
    assert_eq!(numeric.body, json!({"valid": false, "reason": "malformed"}));
    let unknown = keys_crypto::ApiKeySecret::generate(&mut OsRng);
    assert_eq!(verify(unknown.expose().to_owned()).await.body, json!({"valid": false, "reason": "unknown_key"}));
    validation(&harness.call(Method::POST, "/v1/verify/api_key/", Some(json!({}))).await, "api_key is required");
    validation(&harness.raw(Method::POST, "/v1/verify/api_key/", Some("application/json"), "nope").await, "JSON");
    validation(&harness.call(Method::POST, "/v1/verify/api_key/", Some(json!(["x"]))).await, "JSON object");

    let metrics = harness.public(Method::GET, "/metrics").await;
    assert!(metrics.text.contains("keysd_verifications_total{kind=\"api_key\",outcome=\"valid\"} 1"));
    assert!(metrics.text.contains("keysd_verifications_total{kind=\"api_key\",outcome=\"key_deleted\"} 1"));
}

#[tokio::test]
async fn unknown_workspace_is_the_seed_404() {
    let harness = harness().await;
    not_found(&harness.call(Method::GET, "/v1/demo/ws_api_key/", None).await, "workspace 'demo' not found");
    not_found(&harness.call(Method::POST, "/v1/demo/ws_signing_key/", None).await, "workspace 'demo' not found");
    not_found(
        &harness.call(Method::GET, "/v1/Not_A_Slug/ws_public_key", None).await,
        "workspace 'Not_A_Slug' not found",
    );
}

/// The whole profile a create may give: a day's expiry, scopes, an owner
/// and meta.
fn full_key(name: &str) -> Value {
    json!({
        "name": name, "description": "the billing backend", "expires_at": in_seconds(86_400),
        "scopes": ["keys:*", "audit:read"], "external_id": "customer-42", "meta": {"plan": "pro", "seats": 3}
    })
}

/// An RFC 3339 instant `seconds` from now.
fn in_seconds(seconds: i64) -> String {
    let at = OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    at.format(&time::format_description::well_known::Rfc3339).expect("formats")
}

fn instant(value: &Value) -> OffsetDateTime {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("RFC 3339")
}

/// A key record without what changes with every write.
fn profile_of(record: &Value) -> Value {
    let fields = ["name", "description", "expires_at", "scopes", "external_id", "meta"];
    fields.iter().map(|field| ((*field).to_owned(), record[*field].clone())).collect::<serde_json::Map<_, _>>().into()
}

impl Harness {
    /// Creates the key `body` describes in `staging`: (its record, its secret).
    async fn api_key(&self, body: Value) -> (Value, String) {
        let created = self.call(Method::POST, "/v1/staging/ws_api_key/", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.headers[header::CACHE_CONTROL], "no-store");
        let secret = created.body["api_key"].as_str().expect("secret").to_owned();
        (created.body, secret)
    }

    /// `POST /v1/verify/api_key/` with `body`; the answer is always a 200.
    async fn verify_api_key(&self, body: Value) -> Value {
        let reply = self.call(Method::POST, "/v1/verify/api_key/", Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body
    }

    /// The answer's `reason`, or `valid` when it verified.
    async fn verdict(&self, secret: &str) -> String {
        let body = self.verify_api_key(json!({"api_key": secret})).await;
        if body["valid"] == true {
            return "valid".to_owned();
        }
        body["reason"].as_str().expect("reason").to_owned()
    }

    async fn get_api_key(&self, id: &str) -> Reply {
        self.call(Method::GET, &format!("/v1/staging/ws_api_key/{id}/"), None).await
    }
}

/// GET one key: the record as created, never the secret; a malformed id,
/// an unknown one, one of another workspace or another organisation is
/// the seed's 404.
#[tokio::test]
async fn api_key_get_one() {
    let harness = harness().await;
    let (created, secret) = harness.api_key(full_key("backend")).await;
    let id = created["id"].as_str().expect("id");
    let got = harness.get_api_key(id).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    let mut expected = created.clone();
    expected.as_object_mut().expect("object").remove("api_key");
    assert_eq!(got.body, expected);
    assert!(!got.text.contains(&secret));
    assert_eq!(got.body["status"], "active");
    assert_eq!(got.body["meta"], json!({"plan": "pro", "seats": 3}));
    assert!(is_timestamp(&got.body["expires_at"]) && is_timestamp(&got.body["updated_at"]));
    assert_eq!(harness.call(Method::GET, &format!("/v1/staging/ws_api_key/{id}"), None).await.body, expected);

    let production = harness.call(Method::POST, "/v1/production/ws_api_key/", Some(json!({"name": "prod"}))).await;
    let elsewhere = production.body["id"].as_str().expect("id").to_owned();
    let unknown = "ws_apik_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for missing in ["nope", unknown, &elsewhere] {
        not_found(&harness.get_api_key(missing).await, &format!("api key '{missing}' not found"));
    }
    let (_, other_token) = harness.other_organisation("globex").await;
    let theirs = harness.call_as(&other_token, Method::GET, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
    not_found(&theirs, &format!("api key '{id}' not found"));
    // Deleted keys are still found, marked so.
    harness.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
    let deleted = harness.get_api_key(id).await;
    assert_eq!((deleted.status, &deleted.body["is_deleted"]), (StatusCode::OK, &json!(true)));
}

/// PATCH each field (202, the key as it now is, verification answers
/// with it at once), `null` clears the nullable ones and empties `scopes`;
/// `name` may not be null.
#[tokio::test]
async fn api_key_patch_each_field_and_null_clears() {
    let harness = harness().await;
    let (created, secret) = harness.api_key(full_key("backend")).await;
    let path = format!("/v1/staging/ws_api_key/{}/", created["id"].as_str().expect("id"));
    let expires_at = in_seconds(7 * 86_400);
    let patches = [
        json!({"name": "renamed"}),
        json!({"description": "new words"}),
        json!({"expires_at": expires_at}),
        json!({"scopes": ["orders:write"]}),
        json!({"external_id": "customer-7"}),
        json!({"meta": {"plan": "team", "nested": {"a": [1, 2]}}}),
        json!({}),
        json!({"description": null, "expires_at": null, "scopes": null, "external_id": null, "meta": null}),
    ];
    let mut expected = profile_of(&created);
    for patch in patches {
        let patched = harness.call(Method::PATCH, &path, Some(patch.clone())).await;
        assert_eq!(patched.status, StatusCode::ACCEPTED, "{patch}: {}", patched.text);
        for (field, value) in patch.as_object().expect("object") {
            expected[field] = if field == "scopes" && value.is_null() { json!([]) } else { value.clone() };
        }
        if let Some(at) = patch.get("expires_at").filter(|at| !at.is_null()) {
            // Read back in keysd's own form: cut to microseconds, UTC.
            let at = instant(at);
            let cut = at.replace_nanosecond(at.nanosecond() / 1000 * 1000).expect("in range");
            assert_eq!(instant(&patched.body["expires_at"]), cut, "{patch}");
            expected["expires_at"] = patched.body["expires_at"].clone();
        }
        assert_eq!(profile_of(&patched.body), expected, "{patch}");
        assert!(instant(&patched.body["updated_at"]) >= instant(&created["updated_at"]));
        assert_eq!(patched.body["status"], "active");
        assert_eq!(harness.call(Method::GET, &path, None).await.body, patched.body, "{patch}");
        let verified = harness.verify_api_key(json!({"api_key": secret})).await;
        let seen = json!({
            "name": verified["name"], "expires_at": verified["expires_at"], "scopes": verified["scopes"],
            "external_id": verified["external_id"], "meta": verified["meta"], "description": expected["description"]
        });
        assert_eq!(seen, expected, "{patch}: verification answers with the patched key");
    }
    assert_eq!(
        profile_of(&harness.call(Method::GET, &path, None).await.body),
        json!({
            "name": "renamed", "description": null, "expires_at": null, "scopes": [], "external_id": null, "meta": null
        })
    );
    let before = harness.call(Method::GET, &path, None).await.body;
    validation(&harness.call(Method::PATCH, &path, Some(json!({"name": null}))).await, "name may not be null");
    validation(&harness.call(Method::PATCH, &path, Some(json!({"status": "active"}))).await, "unknown field");
    assert_eq!(harness.call(Method::GET, &path, None).await.body, before, "a refused patch changes nothing");
    not_found(
        &harness.call(Method::PATCH, "/v1/staging/ws_api_key/nope/", Some(json!({"name": "x"}))).await,
        "api key 'nope' not found",
    );
}

/// Disable and enable: 202 with the key, an empty body with or without a
/// content type (and `{}`); a disabled key verifies as `key_disabled` at
/// once, an enabled one again; the wrong way round is a 400.
#[tokio::test]
async fn api_key_disable_and_enable() {
    let harness = harness().await;
    let (created, secret) = harness.api_key(full_key("backend")).await;
    let path = format!("/v1/staging/ws_api_key/{}", created["id"].as_str().expect("id"));
    let (disable, enable) = (format!("{path}/disable/"), format!("{path}/enable/"));
    let bodies: [(Option<&str>, &str); 3] =
        [(None, ""), (Some("application/json"), ""), (Some("application/json"), "{}")];
    for (content_type, body) in bodies {
        let disabled = harness.raw(Method::PATCH, &disable, content_type, body).await;
        assert_eq!(disabled.status, StatusCode::ACCEPTED, "{content_type:?} {body:?}: {}", disabled.text);
        assert_eq!(disabled.body["status"], "disabled");
        assert!(is_timestamp(&disabled.body["disabled_at"]));
        assert_eq!(disabled.body["disabled_by"]["name"], "System User");
        assert_eq!(disabled.body["updated_at"], disabled.body["disabled_at"]);
        assert_eq!(profile_of(&disabled.body), profile_of(&created));
        assert_eq!(harness.verdict(&secret).await, "key_disabled");
        let again = harness.raw(Method::PATCH, &disable, content_type, body).await;
        validation(&again, "only an active API key can be disabled");
        assert_eq!(harness.call(Method::GET, &path, None).await.body, disabled.body, "a refusal changes nothing");

        let enabled = harness.raw(Method::PATCH, &enable, content_type, body).await;
        assert_eq!(enabled.status, StatusCode::ACCEPTED, "{content_type:?} {body:?}: {}", enabled.text);
        assert_eq!(enabled.body["status"], "active");
        assert_eq!((&enabled.body["disabled_at"], &enabled.body["disabled_by"]), (&Value::Null, &Value::Null));
        assert_eq!(harness.verdict(&secret).await, "valid");
        validation(
            &harness.raw(Method::PATCH, &enable, content_type, body).await,
            "only a disabled API key can be enabled",
        );
        assert_eq!(harness.call(Method::GET, &path, None).await.body, enabled.body, "a refusal changes nothing");
    }
    validation(&harness.call(Method::PATCH, &disable, Some(json!({"reason": "leaked"}))).await, "unknown field");
    assert_eq!(harness.call(Method::GET, &path, None).await.body["status"], "active");
    not_found(
        &harness.call(Method::PATCH, "/v1/staging/ws_api_key/nope/disable/", None).await,
        "api key 'nope' not found",
    );
}

/// Roll: 201 with the new key and its secret (`no-store`), which inherits
/// the profile; the old key is `rolled`, verifies until the end of its
/// grace, and a roll without grace stops it at once; rolling a rolled or
/// disabled key is a 400 that changes nothing.
#[tokio::test]
async fn api_key_roll_with_and_without_grace() {
    let harness = harness().await;
    let (created, secret) = harness.api_key(full_key("backend")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let roll = |id: &str| format!("/v1/staging/ws_api_key/{id}/roll/");

    let before = OffsetDateTime::now_utc();
    let rolled = harness.call(Method::POST, &roll(&id), Some(json!({"grace_period_seconds": 3600}))).await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{}", rolled.text);
    assert_eq!(rolled.headers[header::CACHE_CONTROL], "no-store");
    let new_secret = rolled.body["api_key"].as_str().expect("the new secret").to_owned();
    let new_id = rolled.body["id"].as_str().expect("id").to_owned();
    assert!(new_secret.starts_with("SS.") && new_secret != secret && new_id != id);
    assert_eq!(rolled.body["masked_api_key"], format!("{}*****", &new_secret[..10]));
    assert_eq!(profile_of(&rolled.body), profile_of(&created), "the new key inherits the profile");
    assert_eq!(rolled.body["status"], "active");

    let old = harness.get_api_key(&id).await.body;
    assert_eq!(old["status"], "rolled");
    assert!(is_timestamp(&old["rolled_at"]));
    assert_eq!(old["rolled_by"]["name"], "System User");
    let end = instant(&old["expires_at"]);
    let rolled_at = instant(&old["rolled_at"]);
    assert!(rolled_at >= before - time::Duration::seconds(1));
    assert_eq!(end, rolled_at + time::Duration::hours(1), "min(now + grace, a day ahead) is now + grace");
    // Both verify inside the grace; the old answers with its new expiry.
    let verified = harness.verify_api_key(json!({"api_key": secret})).await;
    assert_eq!(
        (&verified["valid"], &verified["key_id"], &verified["expires_at"]),
        (&json!(true), &json!(id), &old["expires_at"])
    );
    let verified = harness.verify_api_key(json!({"api_key": new_secret})).await;
    assert_eq!((&verified["valid"], &verified["key_id"]), (&json!(true), &json!(new_id)));
    let listed = harness.call(Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(listed.body["meta"]["count"], 2);

    // A rolled key cannot roll again, be disabled or enabled.
    validation(&harness.call(Method::POST, &roll(&id), None).await, "only an active API key can be rolled");
    let disable = format!("/v1/staging/ws_api_key/{id}/disable/");
    validation(&harness.call(Method::PATCH, &disable, None).await, "only an active API key can be disabled");
    let enable = format!("/v1/staging/ws_api_key/{id}/enable/");
    validation(&harness.call(Method::PATCH, &enable, None).await, "only a disabled API key can be enabled");
    // Its expiry may come sooner, never later.
    let later = Some(json!({"expires_at": in_seconds(7200)}));
    validation(&harness.call(Method::PATCH, &format!("/v1/staging/ws_api_key/{id}/"), later).await, "brought forward");
    assert_eq!(harness.get_api_key(&id).await.body, old, "refusals change nothing");

    // Without grace (an empty body, with or without a content type), the
    // key it replaces stops at once.
    let newest = harness.raw(Method::POST, &roll(&new_id), None, "").await;
    assert_eq!(newest.status, StatusCode::CREATED, "{}", newest.text);
    let newest_secret = newest.body["api_key"].as_str().expect("secret").to_owned();
    assert_eq!(harness.verdict(&new_secret).await, "key_expired");
    assert_eq!(harness.verdict(&newest_secret).await, "valid");
    let replaced = harness.get_api_key(&new_id).await.body;
    assert_eq!((&replaced["status"], &replaced["expires_at"]), (&json!("rolled"), &replaced["rolled_at"]));
    let newest_id = newest.body["id"].as_str().expect("id").to_owned();
    let last = harness.raw(Method::POST, &roll(&newest_id), Some("application/json"), "").await;
    assert_eq!(last.status, StatusCode::CREATED, "{}", last.text);
    assert_eq!(harness.verdict(&newest_secret).await, "key_expired");

    // A disabled key cannot be rolled; nothing changes.
    let (disabled, _) = harness.api_key(json!({"name": "parked"})).await;
    let disabled_id = disabled["id"].as_str().expect("id");
    harness.call(Method::PATCH, &format!("/v1/staging/ws_api_key/{disabled_id}/disable/"), None).await;
    let parked = harness.get_api_key(disabled_id).await.body;
    let count = harness.call(Method::GET, "/v1/staging/ws_api_key/", None).await.body["meta"]["count"].clone();
    validation(&harness.call(Method::POST, &roll(disabled_id), None).await, "only an active API key can be rolled");
    assert_eq!(harness.get_api_key(disabled_id).await.body, parked);
    assert_eq!(harness.call(Method::GET, "/v1/staging/ws_api_key/", None).await.body["meta"]["count"], count);
    not_found(&harness.call(Method::POST, &roll("nope"), None).await, "api key 'nope' not found");
}

/// A roll's grace: any whole number of seconds from 0 to 2,592,000 (60.0
/// is 60); anything else is a 400 that says so and rolls nothing.
#[tokio::test]
async fn api_key_roll_grace_bounds() {
    let harness = harness().await;
    let (created, secret) = harness.api_key(json!({"name": "backend"})).await;
    let id = created["id"].as_str().expect("id");
    let roll = format!("/v1/staging/ws_api_key/{id}/roll/");
    let message = "grace_period_seconds must be";
    for grace in [json!(-1), json!(2_592_001), json!(99_999_999_999_u64), json!(1.5), json!("60"), json!(true)] {
        let refused = harness.call(Method::POST, &roll, Some(json!({"grace_period_seconds": grace}))).await;
        validation(&refused, message);
        assert!(!refused.text.contains("line 1") && !refused.text.contains("u64"), "{grace}: {}", refused.text);
    }
    validation(&harness.call(Method::POST, &roll, Some(json!({"grace": 60}))).await, "unknown field");
    assert_eq!(harness.get_api_key(id).await.body["status"], "active", "nothing was rolled");
    assert_eq!(harness.verdict(&secret).await, "valid");

    for (grace, seconds) in [(json!(2_592_000), 2_592_000), (json!(60.0), 60), (json!(0), 0), (Value::Null, 0)] {
        let (created, _) = harness.api_key(json!({"name": "graced"})).await;
        let id = created["id"].as_str().expect("id");
        let (roll, body) = (format!("/v1/staging/ws_api_key/{id}/roll/"), json!({"grace_period_seconds": grace}));
        let rolled = harness.call(Method::POST, &roll, Some(body)).await;
        assert_eq!(rolled.status, StatusCode::CREATED, "{grace}: {}", rolled.text);
        let old = harness.get_api_key(id).await.body;
        let grace_given = instant(&old["expires_at"]) - instant(&old["rolled_at"]);
        assert_eq!(grace_given, time::Duration::seconds(seconds), "{grace}");
    }
}

/// Verification with `required_scopes`: a `:*` scope covers what starts
/// with its prefix, a missing one is `insufficient_scope`, a
/// `required_scopes` that is not a list of strings is `malformed`; a valid
/// answer carries the owner, the scopes, the meta and the expiry.
#[tokio::test]
async fn api_key_verification_with_required_scopes() {
    let harness = harness().await;
    let (created, secret) = harness.api_key(full_key("backend")).await;
    let verify = |required: Value| harness.verify_api_key(json!({"api_key": secret, "required_scopes": required}));
    let valid = verify(json!(["keys:read"])).await;
    assert_eq!(
        valid,
        json!({
            "valid": true, "workspace": "staging", "key_id": created["id"], "name": "backend",
            "external_id": "customer-42", "scopes": ["keys:*", "audit:read"], "meta": {"plan": "pro", "seats": 3},
            "expires_at": created["expires_at"], "credits": null, "ratelimits": []
        })
    );
    let granted =
        [json!([]), Value::Null, json!(["keys:admin:write", "audit:read"]), json!(["keys:*"]), json!(["keys:"])];
    for required in granted {
        assert_eq!(verify(required.clone()).await["valid"], true, "{required}");
    }
    let insufficient =
        [json!(["audit:write"]), json!(["keys"]), json!(["keys:read", "billing:read"]), json!(["audit:*"])];
    for required in insufficient {
        assert_eq!(
            verify(required.clone()).await,
            json!({"valid": false, "reason": "insufficient_scope"}),
            "{required}"
        );
    }
    for required in [json!("keys:read"), json!([1]), json!(["keys:read", null]), json!({"keys": "read"}), json!(true)] {
        assert_eq!(verify(required.clone()).await, json!({"valid": false, "reason": "malformed"}), "{required}");
    }
    // A key without scopes grants none.
    let (_, bare) = harness.api_key(json!({"name": "bare"})).await;
    let refused = harness.verify_api_key(json!({"api_key": bare, "required_scopes": ["keys:read"]})).await;
    assert_eq!(refused, json!({"valid": false, "reason": "insufficient_scope"}));
    assert_eq!(harness.verify_api_key(json!({"api_key": bare, "required_scopes": []})).await["valid"], true);

    let metrics = harness.public(Method::GET, "/metrics").await;
    assert!(metrics.text.contains("keysd_verifications_total{kind=\"api_key\",outcome=\"insufficient_scope\"} 5"));
}

/// A key created with an `expires_at` a moment ahead verifies until then
/// and is `key_expired` from then on, on the service's clock (a
/// `TestClock` the test moves: no waiting).
#[tokio::test]
async fn api_key_expires_at_its_expiry() {
    let clock = Arc::new(TestClock::at(OffsetDateTime::now_utc().unix_timestamp()));
    let harness = harness_at(Arc::clone(&clock)).await;
    let expires_at = (clock.now() + time::Duration::seconds(2)).format(&Rfc3339).expect("formats");
    let (created, secret) = harness.api_key(json!({"name": "brief", "expires_at": expires_at})).await;
    assert_eq!(harness.verdict(&secret).await, "valid");
    clock.advance(1);
    assert_eq!(harness.verdict(&secret).await, "valid", "a second before its expiry");
    clock.advance(1);
    assert_eq!(harness.verdict(&secret).await, "key_expired", "at its expiry");
    // An expired key may still be looked at, patched and deleted, not rolled.
    let path = format!("/v1/staging/ws_api_key/{}/", created["id"].as_str().expect("id"));
    validation(&harness.call(Method::POST, &format!("{path}roll/"), None).await, "expired");
    let renamed = harness.call(Method::PATCH, &path, Some(json!({"name": "still here"}))).await;
    assert_eq!(renamed.status, StatusCode::ACCEPTED);
    // A new expiry revives it.
    let revived = harness.call(Method::PATCH, &path, Some(json!({"expires_at": in_seconds(3600)}))).await;
    assert_eq!(revived.status, StatusCode::ACCEPTED, "{}", revived.text);
    assert_eq!(harness.verdict(&secret).await, "valid");
}

/// Every bad input of the issue is a 400 whose message speaks of the
/// request, on create and on patch, and changes nothing.
#[tokio::test]
async fn api_key_bad_input_is_a_400_about_the_request() {
    let harness = harness().await;
    let (created, _) = harness.api_key(full_key("backend")).await;
    let path = format!("/v1/staging/ws_api_key/{}/", created["id"].as_str().expect("id"));
    let scopes = |count: usize| Value::from((0..count).map(|index| format!("scope:{index}")).collect::<Vec<_>>());
    let large_meta = json!({"meta": {"padding": "x".repeat(4096)}});
    let cases = [
        (json!({"expires_at": in_seconds(-60)}), "expires_at must be in the future"),
        (json!({"expires_at": "tomorrow"}), "expires_at must be an RFC 3339 timestamp"),
        (json!({"expires_at": 1_900_000_000}), "expires_at must be a string"),
        (json!({"scopes": ["Keys:Read"]}), "invalid scope 'Keys:Read'"),
        (json!({"scopes": [":read"]}), "invalid scope ':read'"),
        (json!({"scopes": ["keys:*:write"]}), "invalid scope 'keys:*:write'"),
        (json!({"scopes": ["a".repeat(65)]}), "invalid scope"),
        (json!({"scopes": [""]}), "invalid scope ''"),
        (json!({"scopes": scopes(65)}), "too many scopes (at most 64)"),
        (json!({"scopes": "keys:read"}), "scopes must be an array"),
        (json!({"meta": [1, 2]}), "meta must be a JSON object"),
        (json!({"meta": "text"}), "meta must be a JSON object"),
        (json!({"meta": 5}), "meta must be a JSON object"),
        (large_meta, "meta must serialise to at most 4096 bytes"),
        (json!({"external_id": ""}), "external_id may not be blank"),
        (json!({"external_id": "x".repeat(256)}), "external_id is longer than 255"),
        (json!({"owner": "me"}), "unknown field"),
    ];
    let before = harness.call(Method::GET, &path, None).await.body;
    for (body, message) in cases {
        let mut create = body.clone();
        create["name"] = json!("refused");
        let refused = harness.call(Method::POST, "/v1/staging/ws_api_key/", Some(create)).await;
        validation(&refused, message);
        let refused_patch = harness.call(Method::PATCH, &path, Some(body.clone())).await;
        validation(&refused_patch, message);
        for reply in [&refused, &refused_patch] {
            assert!(!reply.text.contains("line 1") && !reply.text.contains("CoreError"), "{body}: {}", reply.text);
        }
    }
    assert_eq!(harness.call(Method::GET, &path, None).await.body, before, "no refusal changed the key");
    let listed = harness.call(Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(listed.body["meta"]["count"], 1, "no refused create made a key");
    // The limits themselves are accepted.
    let largest = json!({"padding": "x".repeat(4096 - 14)});
    let at_limits = json!({"name": "full", "scopes": scopes(64), "meta": largest, "external_id": "x".repeat(255)});
    harness.api_key(at_limits).await;
}

// ----------------------------------------------------------------- public keys

#[tokio::test]
async fn public_key_lifecycle_domains_and_rotation() {
    let harness = harness().await;
    let first = harness.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": "web-app"}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let own = "allowed_domains api_key description id is_default is_deleted is_secure_mode_enabled name rotated_at \
               rotated_by updated_at updated_by";
    assert_eq!(keys_of(&first.body), record_members(own));
    assert_eq!(first.body["is_default"], true);
    assert_eq!(first.body["allowed_domains"], Value::Null);
    assert_eq!(first.body["updated_by"], Value::Null);
    let first_id = first.body["id"].as_str().expect("id").to_owned();
    let value = first.body["api_key"].as_str().expect("value").to_owned();
    assert!(value.starts_with("SS.PUBK.") && value.len() == 51);
    let second = harness.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": "mobile"}))).await;
    assert_eq!(second.body["is_default"], false);
    let second_id = second.body["id"].as_str().expect("id").to_owned();

    let verify = |body: Value| harness.call(Method::POST, "/v1/verify/public_key/", Some(body));
    let any_origin = verify(json!({"api_key": value})).await;
    assert_eq!(any_origin.body, json!({"valid": true, "workspace": "staging", "public_key_id": first_id}));

    let patched = harness
        .call(
            Method::PATCH,
            &format!("/v1/staging/ws_public_key/{first_id}/"),
            Some(json!({"allowed_domains": ["app.example.com", "*.example.org"], "description": "browser"})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.text);
    assert_eq!(patched.body["allowed_domains"], json!(["app.example.com", "*.example.org"]));
    assert_eq!(patched.body["description"], "browser");
    assert_eq!(patched.body["updated_by"]["name"], "System User");
    let reason = |reply: &Reply| reply.body["reason"].clone();
    assert_eq!(verify(json!({"api_key": value, "origin": "https://app.example.com"})).await.body["valid"], true);
    assert_eq!(verify(json!({"api_key": value, "origin": "https://a.b.example.org:8443"})).await.body["valid"], true);
    assert_eq!(reason(&verify(json!({"api_key": value, "origin": "https://example.org"})).await), "origin_not_allowed");
    assert_eq!(reason(&verify(json!({"api_key": value, "origin": "evil.com"})).await), "origin_not_allowed");
    assert_eq!(reason(&verify(json!({"api_key": value})).await), "origin_required");
    assert_eq!(reason(&verify(json!({"api_key": value, "origin": 5})).await), "malformed");
    validation(&verify(json!({"origin": "x"})).await, "api_key is required");

    let bad_domain = harness
        .call(
            Method::PATCH,
            &format!("/v1/staging/ws_public_key/{first_id}/"),
            Some(json!({"allowed_domains": ["not a host"]})),
        )
        .await;
    validation(&bad_domain, "invalid domain");
    validation(
        &harness
            .call(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}/"), Some(json!({"name": null})))
            .await,
        "name may not be null",
    );
    validation(
        &harness.call(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}/"), Some(json!({"nope": 1}))).await,
        "unknown field",
    );
    let cleared = harness
        .call(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}"), Some(json!({"allowed_domains": null})))
        .await;
    assert_eq!(cleared.body["allowed_domains"], Value::Null);

    // Rotate: same record, new value; the old one stops at once.
    let rotated = harness.call(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}/rotate/"), None).await;
    assert_eq!(rotated.status, StatusCode::ACCEPTED, "{}", rotated.text);
    assert_eq!(rotated.body["id"], first_id.as_str());
    let new_value = rotated.body["api_key"].as_str().expect("value").to_owned();
    assert_ne!(new_value, value);
    assert!(is_timestamp(&rotated.body["rotated_at"]));
    assert_eq!(reason(&verify(json!({"api_key": value})).await), "unknown_key");
    assert_eq!(verify(json!({"api_key": new_value})).await.body["valid"], true);
    // Rotate takes an empty body with or without a content type, or `{}`.
    let with_type = harness
        .raw(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}/rotate/"), Some("application/json"), "")
        .await;
    assert_eq!(with_type.status, StatusCode::ACCEPTED);
    let with_object =
        harness.call(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}/rotate/"), Some(json!({}))).await;
    assert_eq!(with_object.status, StatusCode::ACCEPTED);

    // The default cannot go while another key is live.
    let refused = harness.call(Method::DELETE, &format!("/v1/staging/ws_public_key/{first_id}/"), None).await;
    validation(&refused, "default public key");
    assert_eq!(
        harness.call(Method::DELETE, &format!("/v1/staging/ws_public_key/{second_id}/"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        harness.call(Method::DELETE, &format!("/v1/staging/ws_public_key/{first_id}/"), None).await.status,
        StatusCode::NO_CONTENT
    );
    not_found(
        &harness.call(Method::DELETE, &format!("/v1/staging/ws_public_key/{first_id}/"), None).await,
        &format!("public key '{first_id}' not found"),
    );
    not_found(
        &harness.call(Method::PATCH, &format!("/v1/staging/ws_public_key/{first_id}/rotate/"), None).await,
        &format!("public key '{first_id}' not found"),
    );
    let current = rotated.body["api_key"].as_str().expect("value");
    let _ = current;
    let listed = harness.call(Method::GET, "/v1/staging/ws_public_key/?include_deleted=true", None).await;
    assert_eq!(listed.body["meta"]["count"], 2);
}

// ---------------------------------------------------------------- signing keys

#[tokio::test]
async fn signing_key_create_roll_delete_and_jwks() {
    let harness = harness().await;
    let created = harness.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(
        keys_of(&created.body),
        record_members(
            "allowed_domains expiry_at id private_key_base64 private_key_pem rolled_at rolled_by status uid"
        )
    );
    assert_eq!(created.body["status"], "active");
    let pem = created.body["private_key_pem"].as_str().expect("pem");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let uid = created.body["uid"].as_str().expect("uid").to_owned();
    assert!(uid.starts_with("signing_key_"));

    // The seed's exact refusal, with or without a content type.
    let expected = json!({
        "code": 400, "error_code": "error", "type": "ValidationError",
        "message": "[\"only 1 active signing key is allowed\"]",
        "detail": ["only 1 active signing key is allowed"]
    });
    let second = harness.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(second.body, expected);
    let second = harness.raw(Method::POST, "/v1/staging/ws_signing_key", Some("application/json"), "").await;
    assert_eq!(second.body, expected);
    validation(
        &harness.call(Method::POST, "/v1/staging/ws_signing_key/", Some(json!({"x": 1}))).await,
        "unknown field",
    );

    let list = harness.call(Method::GET, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(list.body["meta"]["count"], 1);
    assert!(list.body["results"][0].get("private_key_pem").is_none());
    assert!(!list.text.contains("PRIVATE KEY"));

    let workspaces = harness.call(Method::GET, "/v1/workspace/", None).await;
    let workspace_uid = workspaces.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|workspace| workspace["slug"] == "staging")
        .and_then(|workspace| workspace["uid"].as_str())
        .expect("staging")
        .to_owned();
    let jwks_path = format!("/v1/workspace/{workspace_uid}/jwks.json");
    let kids = |reply: &Reply| -> Vec<String> {
        reply.body["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|key| key["kid"].as_str().expect("kid").to_owned())
            .collect()
    };
    let jwks = harness.public(Method::GET, &jwks_path).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert_eq!(kids(&jwks), vec![uid.clone()]);
    assert_eq!(jwks.body["keys"][0]["alg"], "ES256");
    assert_eq!(jwks.body["keys"][0]["kty"], "EC");

    validation(
        &harness
            .call(
                Method::POST,
                &format!("/v1/staging/ws_signing_key/{uid}/roll/"),
                Some(json!({"grace_period_seconds": -1})),
            )
            .await,
        "grace_period_seconds must be a whole number of seconds between 0 and 2592000",
    );
    validation(
        &harness
            .call(
                Method::POST,
                &format!("/v1/staging/ws_signing_key/{uid}/roll/"),
                Some(json!({"grace_period_seconds": 99_999_999})),
            )
            .await,
        "grace_period_seconds must be a whole number of seconds between 0 and 2592000",
    );
    let rolled = harness
        .call(
            Method::POST,
            &format!("/v1/staging/ws_signing_key/{uid}/roll/"),
            Some(json!({"grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{}", rolled.text);
    let new_uid = rolled.body["uid"].as_str().expect("uid").to_owned();
    assert_ne!(new_uid, uid);
    assert_eq!(rolled.body["status"], "active");
    assert!(rolled.body["private_key_pem"].as_str().expect("pem").starts_with("-----BEGIN PRIVATE KEY-----"));
    let jwks = kids(&harness.public(Method::GET, &jwks_path).await);
    assert!(jwks.contains(&uid) && jwks.contains(&new_uid), "{jwks:?}");
    // Rolling the rolled key is refused; rolling without grace stops it at once.
    validation(
        &harness.call(Method::POST, &format!("/v1/staging/ws_signing_key/{uid}/roll/"), None).await,
        "only an active",
    );
    let list = harness.call(Method::GET, "/v1/staging/ws_signing_key/", None).await;
    let old =
        list.body["results"].as_array().expect("results").iter().find(|key| key["uid"] == uid.as_str()).expect("old");
    assert_eq!(old["status"], "rolled");
    assert!(is_timestamp(&old["rolled_at"]) && is_timestamp(&old["expiry_at"]));

    let newest = harness.raw(Method::POST, &format!("/v1/staging/ws_signing_key/{new_uid}/roll"), None, "").await;
    assert_eq!(newest.status, StatusCode::CREATED);
    let newest_uid = newest.body["uid"].as_str().expect("uid").to_owned();
    let jwks = kids(&harness.public(Method::GET, &jwks_path).await);
    assert!(jwks.contains(&uid) && jwks.contains(&newest_uid) && !jwks.contains(&new_uid), "{jwks:?}");

    assert_eq!(
        harness.call(Method::DELETE, &format!("/v1/staging/ws_signing_key/{uid}/"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(kids(&harness.public(Method::GET, &jwks_path).await), vec![newest_uid.clone()]);
    not_found(
        &harness.call(Method::DELETE, &format!("/v1/staging/ws_signing_key/{uid}/"), None).await,
        &format!("signing key '{uid}' not found"),
    );
    not_found(
        &harness.call(Method::POST, "/v1/staging/ws_signing_key/signing_key_nope/roll/", None).await,
        "signing key 'signing_key_nope' not found",
    );
    assert_eq!(harness.public(Method::GET, "/v1/workspace/wksp_nope/jwks.json").await.status, StatusCode::NOT_FOUND);
    assert_eq!(harness.public(Method::GET, &format!("{jwks_path}/")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn secure_mode_user_tokens() {
    let harness = harness().await;
    let public = harness.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": "web"}))).await;
    let key_id = public.body["id"].as_str().expect("id").to_owned();
    let value = public.body["api_key"].as_str().expect("value").to_owned();
    let secure = harness
        .call(
            Method::PATCH,
            &format!("/v1/staging/ws_public_key/{key_id}/"),
            Some(json!({"is_secure_mode_enabled": true})),
        )
        .await;
    assert_eq!(secure.body["is_secure_mode_enabled"], true);
    let signing = harness.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    let kid = signing.body["uid"].as_str().expect("uid").to_owned();
    let pem = signing.body["private_key_pem"].as_str().expect("pem").to_owned();
    let sign = |claims: Value, kid: &str| mint::sign(&claims, Some(kid), &pem, Algorithm::Es256).expect("signs");
    let good = |tenant: Option<&str>| {
        let mut claims = json!({"entity_type": "subscriber", "entity_id": "user-42", "exp": now_seconds() + 600});
        if let Some(tenant) = tenant {
            claims["scope"] = json!({"tenant_id": tenant});
        }
        claims
    };
    let verify = |body: Value| harness.call(Method::POST, "/v1/verify/public_key/", Some(body));

    let valid = verify(json!({"api_key": value, "user_token": sign(good(None), &kid)})).await;
    assert_eq!(
        valid.body,
        json!({"valid": true, "workspace": "staging", "public_key_id": key_id, "entity_id": "user-42"})
    );
    let tenant =
        verify(json!({"api_key": value, "user_token": sign(good(Some("acme")), &kid), "tenant_id": "acme"})).await;
    assert_eq!(tenant.body["valid"], true);
    let reason = |reply: Reply| reply.body["reason"].as_str().expect("reason").to_owned();
    assert_eq!(reason(verify(json!({"api_key": value})).await), "user_token_required");
    assert_eq!(reason(verify(json!({"api_key": value, "user_token": "garbage"})).await), "user_token_invalid");
    assert_eq!(
        reason(verify(json!({"api_key": value, "user_token": sign(good(Some("acme")), &kid)})).await),
        "tenant_mismatch"
    );
    let mut expired = good(None);
    expired["exp"] = json!(now_seconds() - 3600);
    assert_eq!(
        reason(verify(json!({"api_key": value, "user_token": sign(expired, &kid)})).await),
        "user_token_expired"
    );
    let mut no_exp = good(None);
    no_exp.as_object_mut().expect("object").remove("exp");
    assert_eq!(
        reason(verify(json!({"api_key": value, "user_token": sign(no_exp, &kid)})).await),
        "user_token_exp_missing"
    );
    let mut wrong_type = good(None);
    wrong_type["entity_type"] = json!("user");
    assert_eq!(
        reason(verify(json!({"api_key": value, "user_token": sign(wrong_type, &kid)})).await),
        "entity_type_not_subscriber"
    );
    // Signed by a key that is not the one its kid names.
    let stranger = keys_crypto::EcKeyPair::generate(&mut OsRng);
    let forged = mint::sign(&good(None), Some(&kid), &stranger.private_key_pem(), Algorithm::Es256).expect("signs");
    assert_eq!(reason(verify(json!({"api_key": value, "user_token": forged})).await), "user_token_invalid");
    // A kid of another workspace's key is no key for this one.
    let production = harness.call(Method::POST, "/v1/production/ws_signing_key/", None).await;
    let production_kid = production.body["uid"].as_str().expect("uid").to_owned();
    let production_pem = production.body["private_key_pem"].as_str().expect("pem").to_owned();
    let cross = mint::sign(&good(None), Some(&production_kid), &production_pem, Algorithm::Es256).expect("signs");
    assert_eq!(reason(verify(json!({"api_key": value, "user_token": cross})).await), "unknown_key");

    // Roll without grace: the old key's tokens stop at once.
    let token = sign(good(None), &kid);
    let rolled = harness.call(Method::POST, &format!("/v1/staging/ws_signing_key/{kid}/roll/"), None).await;
    assert_eq!(rolled.status, StatusCode::CREATED);
    assert_eq!(reason(verify(json!({"api_key": value, "user_token": token})).await), "key_expired");
    let new_kid = rolled.body["uid"].as_str().expect("uid").to_owned();
    let new_pem = rolled.body["private_key_pem"].as_str().expect("pem").to_owned();
    let token = mint::sign(&good(None), Some(&new_kid), &new_pem, Algorithm::Es256).expect("signs");
    assert_eq!(verify(json!({"api_key": value, "user_token": token.clone()})).await.body["valid"], true);
    harness.call(Method::DELETE, &format!("/v1/staging/ws_signing_key/{new_kid}/"), None).await;
    assert_eq!(reason(verify(json!({"api_key": value, "user_token": token})).await), "key_deleted");
}

// -------------------------------------------------------- organisation keys

/// A public GET with extra headers.
async fn public_with(harness: &Harness, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    harness.send(builder.body(Full::new(Bytes::new())).expect("request")).await
}

#[tokio::test]
async fn the_organisation_jwks_is_revalidated_and_changes_exactly_with_its_keys() {
    let harness = harness().await;
    let base = format!("/api/organisations/v1/organisations/{}", harness.organisation);
    let jwks = format!("{base}/jwks.json");
    let etag_of = |reply: &Reply| reply.headers[header::ETAG].to_str().expect("etag").to_owned();

    let empty = harness.public(Method::GET, &jwks).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body, json!({"keys": []}));
    assert_eq!(empty.headers[header::CACHE_CONTROL], "public, max-age=60");
    assert_eq!(empty.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let created = harness.call(Method::POST, &format!("{base}/keys"), Some(json!({"name": "k"}))).await;
    let key_id = created.body["id"].as_str().expect("id").to_owned();

    // The next request lists the new key, under a new strong ETag.
    let listed = harness.public(Method::GET, &jwks).await;
    assert_eq!(listed.body["keys"][0]["kid"], key_id.as_str());
    let etag = etag_of(&listed);
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    assert_ne!(etag, etag_of(&empty));
    // Unchanged keys: the same document and validator, and a 304 without a
    // body for a client that holds it (weakly compared, in a list, or `*`).
    let again = harness.public(Method::GET, &jwks).await;
    assert_eq!((etag_of(&again), &again.text), (etag.clone(), &listed.text));
    for held in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}"), "*".to_owned()] {
        let revalidated = public_with(&harness, Method::GET, &jwks, &[("if-none-match", &held)]).await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{held}");
        assert!(revalidated.text.is_empty());
        assert_eq!(etag_of(&revalidated), etag);
        assert_eq!(revalidated.headers[header::CACHE_CONTROL], "public, max-age=60");
    }
    let head = public_with(&harness, Method::HEAD, &jwks, &[]).await;
    assert_eq!((head.status, etag_of(&head)), (StatusCode::OK, etag.clone()));

    // A deleted key leaves the document at once: the old validator no
    // longer matches.
    let deleted = harness.call(Method::DELETE, &format!("{base}/keys/{key_id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let after = public_with(&harness, Method::GET, &jwks, &[("if-none-match", &etag)]).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.body, json!({"keys": []}));
    assert_eq!(etag_of(&after), etag_of(&empty));
}

#[tokio::test]
async fn organisation_keys_and_jwt_verification() {
    let harness = harness().await;
    let organisation = harness.organisation.to_string();
    let base = format!("/api/organisations/v1/organisations/{organisation}");
    let created =
        harness.call(Method::POST, &format!("{base}/keys"), Some(json!({"name": "Organisation Key 1"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(keys_of(&created.body), vec!["createdAt", "id", "name", "privateKey", "publicKey"]);
    let key_id = created.body["id"].as_str().expect("id").to_owned();
    let private_pem = created.body["privateKey"].as_str().expect("private").to_owned();
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(created.body["publicKey"].as_str().expect("public").starts_with("-----BEGIN PUBLIC KEY-----"));
    assert!(is_timestamp(&created.body["createdAt"]));

    let list = harness.call(Method::GET, &format!("{base}/keys/"), None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["keys"].as_array().expect("keys").len(), 1);
    assert_eq!(keys_of(&list.body["keys"][0]), vec!["createdAt", "id", "name", "publicKey"]);

    let public = harness.public(Method::GET, &format!("/api/organisations/v1/keys/{key_id}")).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.body, list.body["keys"][0]);
    let jwks = harness.public(Method::GET, &format!("{base}/jwks.json")).await;
    assert_eq!(jwks.body["keys"][0]["kid"], key_id.as_str());
    assert_eq!(jwks.body["keys"][0]["alg"], "RS256");

    let claims =
        json!({"iss": format!("https://versori.com/sk/{key_id}"), "sub": "user-7", "exp": now_seconds() + 600});
    let token = mint::sign(&claims, None, &private_pem, Algorithm::Rs256).expect("signs");
    let verify = |token: String| harness.call(Method::POST, "/v1/verify/jwt/", Some(json!({"token": token})));
    let valid = verify(token.clone()).await;
    assert_eq!(valid.body["valid"], true, "{}", valid.text);
    assert_eq!(valid.body["organisation_id"], organisation.as_str());
    assert_eq!(valid.body["key_id"], key_id.as_str());
    assert_eq!(valid.body["sub"], "user-7");
    assert_eq!(valid.body["claims"]["sub"], "user-7");

    let reason = |reply: Reply| reply.body["reason"].as_str().expect("reason").to_owned();
    let mut no_sub = claims.clone();
    no_sub.as_object_mut().expect("object").remove("sub");
    assert_eq!(
        reason(verify(mint::sign(&no_sub, None, &private_pem, Algorithm::Rs256).expect("signs")).await),
        "subject_missing"
    );
    let mut expired = claims.clone();
    expired["exp"] = json!(now_seconds() - 3600);
    assert_eq!(
        reason(verify(mint::sign(&expired, None, &private_pem, Algorithm::Rs256).expect("signs")).await),
        "token_expired"
    );
    let mut bad_issuer = claims.clone();
    bad_issuer["iss"] = json!("https://versori.com/keys");
    assert_eq!(
        reason(verify(mint::sign(&bad_issuer, None, &private_pem, Algorithm::Rs256).expect("signs")).await),
        "issuer_not_accepted"
    );
    assert_eq!(reason(verify("garbage".to_owned()).await), "malformed");
    // An unsigned token naming the key.
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let payload = token.split('.').nth(1).expect("payload");
    assert_eq!(reason(verify(format!("{header}.{payload}.")).await), "algorithm_mismatch");
    // Another key's signature under this key's issuer.
    let other = harness.call(Method::POST, &format!("{base}/keys"), Some(json!({"name": "Key 2"}))).await;
    let other_pem = other.body["privateKey"].as_str().expect("private").to_owned();
    assert_eq!(
        reason(verify(mint::sign(&claims, None, &other_pem, Algorithm::Rs256).expect("signs")).await),
        "signature_invalid"
    );

    // Dialect-2 errors.
    let missing_name = harness.call(Method::POST, &format!("{base}/keys"), Some(json!({}))).await;
    assert_eq!(missing_name.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_name.body["code"], "invalid_request");
    assert_eq!(missing_name.body["cause"], "name is required");
    let unsupported = harness.raw(Method::POST, &format!("{base}/keys"), Some("text/plain"), "{}").await;
    assert_eq!(unsupported.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(unsupported.body["code"], "unsupported_media_type");

    let deleted = harness.call(Method::DELETE, &format!("{base}/keys/{key_id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(reason(verify(token).await), "key_deleted");
    let again = harness.call(Method::DELETE, &format!("{base}/keys/{key_id}"), None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body["code"], "not_found");
    assert_eq!(
        harness.public(Method::GET, &format!("/api/organisations/v1/keys/{key_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    let jwks = harness.public(Method::GET, &format!("{base}/jwks.json")).await;
    assert!(!jwks.text.contains(&key_id));
    assert_eq!(
        harness.call(Method::GET, &format!("{base}/keys"), None).await.body["keys"].as_array().expect("keys").len(),
        1
    );
}

#[tokio::test]
async fn pinned_issuer_bases() {
    let service =
        ServiceConfig { issuer_bases: vec!["https://issuer.example.com/".to_owned()], ..ServiceConfig::default() };
    let harness = harness_with(AppConfig { service, ..AppConfig::default() }).await;
    let base = format!("/api/organisations/v1/organisations/{}", harness.organisation);
    let created = harness.call(Method::POST, &format!("{base}/keys"), Some(json!({"name": "k"}))).await;
    let key_id = created.body["id"].as_str().expect("id").to_owned();
    let pem = created.body["privateKey"].as_str().expect("pem").to_owned();
    let token_for = |issuer: &str| {
        let claims = json!({"iss": format!("{issuer}/sk/{key_id}"), "sub": "s", "exp": now_seconds() + 60});
        mint::sign(&claims, None, &pem, Algorithm::Rs256).expect("signs")
    };
    let pinned = harness
        .call(Method::POST, "/v1/verify/jwt/", Some(json!({"token": token_for("https://issuer.example.com")})))
        .await;
    assert_eq!(pinned.body["valid"], true, "{}", pinned.text);
    let other =
        harness.call(Method::POST, "/v1/verify/jwt/", Some(json!({"token": token_for("https://versori.com")}))).await;
    assert_eq!(other.body, json!({"valid": false, "reason": "issuer_not_accepted"}));
}

// ----------------------------------------------------------- tenant isolation

#[tokio::test]
async fn organisations_are_isolated() {
    let harness = harness().await;
    let (other_org, other_token) = harness.other_organisation("acme").await;
    // Both have a `staging` workspace; each sees only its own.
    let api_key = harness.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "mine"}))).await;
    let api_key_id = api_key.body["id"].as_str().expect("id").to_owned();
    let secret = api_key.body["api_key"].as_str().expect("secret").to_owned();
    let theirs = harness.call_as(&other_token, Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(theirs.body["meta"]["count"], 0);
    let workspaces = harness.call_as(&other_token, Method::GET, "/v1/workspace/", None).await;
    assert_eq!(workspaces.body["meta"]["count"], 1);
    not_found(
        &harness.call_as(&other_token, Method::GET, "/v1/production/ws_api_key/", None).await,
        "workspace 'production' not found",
    );
    not_found(
        &harness.call_as(&other_token, Method::DELETE, &format!("/v1/staging/ws_api_key/{api_key_id}/"), None).await,
        &format!("api key '{api_key_id}' not found"),
    );
    let verified =
        harness.call_as(&other_token, Method::POST, "/v1/verify/api_key/", Some(json!({"api_key": secret}))).await;
    assert_eq!(verified.body, json!({"valid": false, "reason": "unknown_key"}));
    let public = harness.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": "web"}))).await;
    let value = public.body["api_key"].as_str().expect("value").to_owned();
    let verified =
        harness.call_as(&other_token, Method::POST, "/v1/verify/public_key/", Some(json!({"api_key": value}))).await;
    assert_eq!(verified.body, json!({"valid": false, "reason": "unknown_key"}));

    // Dialect 2: the path's organisation must be the caller's.
    let mine = format!("/api/organisations/v1/organisations/{}/keys", harness.organisation);
    let refused = harness.call_as(&other_token, Method::GET, &mine, None).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(refused.body["code"], "not_found");
    let created = harness.call(Method::POST, &mine, Some(json!({"name": "k"}))).await;
    let key_id = created.body["id"].as_str().expect("id").to_owned();
    let pem = created.body["privateKey"].as_str().expect("pem").to_owned();
    let theirs = format!("/api/organisations/v1/organisations/{other_org}/keys/{key_id}");
    assert_eq!(harness.call_as(&other_token, Method::DELETE, &theirs, None).await.status, StatusCode::NOT_FOUND);
    let claims = json!({"iss": format!("https://versori.com/sk/{key_id}"), "sub": "s", "exp": now_seconds() + 60});
    let token = mint::sign(&claims, None, &pem, Algorithm::Rs256).expect("signs");
    let verified =
        harness.call_as(&other_token, Method::POST, "/v1/verify/jwt/", Some(json!({"token": token.clone()}))).await;
    assert_eq!(verified.body, json!({"valid": false, "reason": "unknown_key"}));
    assert_eq!(harness.call(Method::POST, "/v1/verify/jwt/", Some(json!({"token": token}))).await.body["valid"], true);
}

// -------------------------------------------------------------- service tokens

impl Harness {
    /// A token made through the API by the bootstrap admin token.
    async fn token_as(&self, body: Value) -> (Reply, String) {
        let reply = self.call(Method::POST, "/v1/service_token/", Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        let token = reply.body["token"].as_str().expect("token").to_owned();
        (reply, token)
    }
}

fn permission_denied(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.body["code"], 403);
    assert_eq!(reply.body["error_code"], "permission_denied");
    assert_eq!(reply.body["type"], "PermissionDenied");
    assert!(reply.body["message"].as_str().is_some_and(|message| !message.is_empty()), "{}", reply.text);
    assert_eq!(reply.body["detail"], reply.body["message"]);
}

/// The harness on a fresh database of `kind`, behind the cache.
async fn harness_from(db: TestDb) -> Harness {
    let store = db.cached_store(keys_store::CacheConfig::default()).await;
    harness_on(db, store, AppConfig::default()).await
}

keys_testkit::on_both_backends! {
    service_tokens_are_created_once_listed_masked_and_revoked => service_tokens_are_created_once_listed_masked_and_revoked_sqlite, service_tokens_are_created_once_listed_masked_and_revoked_postgres;
}

async fn service_tokens_are_created_once_listed_masked_and_revoked(db: TestDb) {
    let harness = harness_from(db).await;
    let expires_at = in_seconds(3600);
    let (created, token) = harness
        .token_as(json!({"name": "ci", "role": "manage", "workspaces": ["staging"], "expires_at": expires_at}))
        .await;
    assert_eq!(created.headers[header::CACHE_CONTROL], "no-store");
    assert!(token.starts_with("kst_") && token.len() == 47, "{token}");
    let record = &created.body;
    assert_eq!(
        keys_of(record),
        [
            "created_at",
            "created_by",
            "expires_at",
            "id",
            "last_used_at",
            "masked_token",
            "name",
            "revoked_at",
            "revoked_by",
            "role",
            "token",
            "workspaces"
        ]
    );
    assert!(record["id"].as_str().is_some_and(|id| id.starts_with("st_")));
    assert_eq!(record["masked_token"], format!("{}*****", &token[..10]));
    assert_eq!((&record["role"], &record["workspaces"]), (&json!("manage"), &json!(["staging"])));
    assert_eq!(instant(&record["expires_at"]).unix_timestamp(), instant(&json!(expires_at)).unix_timestamp());
    assert!(is_timestamp(&record["created_at"]));
    assert_eq!(record["created_by"]["name"], "System User");
    assert_eq!((&record["revoked_at"], &record["last_used_at"]), (&Value::Null, &Value::Null));
    let id = record["id"].as_str().expect("id").to_owned();

    // Lists never carry a token, only its mask; the bootstrap token is
    // listed too, as admin.
    let listed = harness.call(Method::GET, "/v1/service_token/", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["meta"]["count"], 2);
    assert!(!listed.text.contains(&token) && !listed.text.contains(&harness.token), "a token in a list");
    let results = listed.body["results"].as_array().expect("results");
    assert_eq!(results[0]["id"], id.as_str());
    assert!(results[0].get("token").is_none());
    assert_eq!((&results[1]["role"], &results[1]["workspaces"]), (&json!("admin"), &Value::Null));

    // The manage token reaches its workspace and no further.
    let own = harness.call_as(&token, Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    let listed = harness.call_as(&token, Method::GET, "/v1/workspace/", None).await;
    assert_eq!(listed.body["meta"]["count"], 1, "{}", listed.text);
    assert_eq!(listed.body["results"][0]["slug"], "staging");
    permission_denied(&harness.call_as(&token, Method::GET, "/v1/production/ws_api_key/", None).await);
    not_found(
        &harness.call_as(&token, Method::GET, "/v1/nowhere/ws_api_key/", None).await,
        "workspace 'nowhere' not found",
    );
    permission_denied(&harness.call_as(&token, Method::POST, "/v1/workspace/", Some(json!({"name": "x"}))).await);
    permission_denied(&harness.call_as(&token, Method::GET, "/v1/service_token/", None).await);
    let versori = format!("/api/organisations/v1/organisations/{}/keys", harness.organisation);
    let refused = harness.call_as(&token, Method::GET, &versori, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_eq!(refused.body["code"], "forbidden");
    assert!(refused.body["message"].is_string() && refused.body.get("cause").is_some());

    // Revoked: refused at once; revoking again is a 404.
    let path = format!("/v1/service_token/{id}/");
    let revoked = harness.call(Method::DELETE, &path, None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text);
    let after = harness.call_as(&token, Method::GET, "/v1/staging/ws_api_key/", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    not_found(&harness.call(Method::DELETE, &path, None).await, &format!("service token '{id}' not found"));
    not_found(
        &harness.call(Method::DELETE, "/v1/service_token/st_nope/", None).await,
        "service token 'st_nope' not found",
    );
    let all = harness.call(Method::GET, "/v1/service_token/?include_deleted=true", None).await;
    assert_eq!(all.body["meta"]["count"], 2);
    assert_eq!(all.body["results"][0]["revoked_by"]["name"], "System User");

    // The last unexpired admin token stays.
    let own_id = all.body["results"][1]["id"].as_str().expect("id").to_owned();
    let last = harness.call(Method::DELETE, &format!("/v1/service_token/{own_id}/"), None).await;
    validation(&last, "the last unexpired admin token of an organisation cannot be revoked");
    assert_eq!(harness.call(Method::GET, "/v1/service_token/", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn service_token_bad_input_is_a_400_about_the_request() {
    let harness = harness().await;
    for (body, message) in [
        (json!({}), "name is required"),
        (json!({"name": "x", "role": "root"}), "role must be 'admin', 'manage' or 'verify'"),
        (json!({"name": "x", "workspaces": ["staging"]}), "an admin token reaches every workspace"),
        (json!({"name": "x", "role": "verify", "workspaces": []}), "workspaces must name at least one workspace"),
        (json!({"name": "x", "role": "verify", "workspaces": ["nowhere"]}), "workspace 'nowhere' does not exist"),
        (json!({"name": "x", "role": "verify", "workspaces": ["Bad Slug"]}), "workspaces: slug must match"),
        (json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}), "expires_at must be in the future"),
        (json!({"name": "x", "expires_at": "tomorrow"}), "expires_at must be an RFC 3339 timestamp"),
        (json!({"name": "x", "scopes": []}), "unknown field"),
        (json!({"name": "x", "role": 1}), "role"),
    ] {
        let reply = harness.call(Method::POST, "/v1/service_token/", Some(body.clone())).await;
        validation(&reply, message);
    }
    let listed = harness.call(Method::GET, "/v1/service_token/", None).await;
    assert_eq!(listed.body["meta"]["count"], 1, "nothing was made: {}", listed.text);

    // A manage or verify token cannot make tokens at all; an admin token
    // made by the API is as strong as its maker.
    let (_, verify) = harness.token_as(json!({"name": "gw", "role": "verify"})).await;
    let reply = harness.call_as(&verify, Method::POST, "/v1/service_token/", Some(json!({"name": "x"}))).await;
    permission_denied(&reply);
}

/// Every authenticated operation of the table, called with a token of each
/// role: a role the operation's permission does not admit is a 403 in the
/// dialect's shape, before anything else is looked at; every other role
/// gets past the check. The permission is read from the table itself, and
/// compared with the rules of docs/GUARANTEES.md, Service tokens, written out here.
async fn every_route_checks_the_role_its_table_entry_states(db: TestDb) {
    let harness = harness_from(db).await;
    use keys_core::{Permission, Role};
    use keys_http::routes::{Auth, ROUTES};

    let mut tokens = vec![(Role::Admin, harness.token.clone())];
    for role in [Role::Manage, Role::Verify] {
        let (_, token) = harness.token_as(json!({"name": role.as_str(), "role": role.as_str()})).await;
        tokens.push((role, token));
    }
    let mut checked = 0;
    for route in ROUTES {
        let path = route
            .pattern()
            .split('/')
            .map(|segment| match segment {
                "{workspace}" => "staging".to_owned(),
                "{organisation_id}" => harness.organisation.to_string(),
                parameter if parameter.starts_with('{') => "x".to_owned(),
                literal => literal.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        for operation in route.operations() {
            let Some(permission) = operation.permission() else {
                assert_ne!(operation.auth(), Auth::ServiceToken, "{} {}", operation.method(), route.pattern());
                continue;
            };
            // docs/GUARANTEES.md, Service tokens, independently of keys-core's table.
            let spec_least = if route.pattern().starts_with("/v1/verify/") || route.pattern() == "/v1/leak_report/" {
                Role::Verify
            } else if route.pattern().starts_with("/v1/service_token/")
                || route.pattern().starts_with("/v1/audit_event/")
                || route.pattern().starts_with("/v1/webhook_endpoint/")
                || (route.pattern() == "/v1/workspace/" && operation.method() == Method::POST)
                || (route.pattern() == "/v1/workspace/{workspace}/" && operation.method() == Method::PATCH)
            {
                Role::Admin
            } else {
                Role::Manage
            };
            assert_eq!(permission.least_role(), spec_least, "{} {}", operation.method(), route.pattern());
            for (role, token) in &tokens {
                let reply = harness.call_as(token, operation.method().clone(), &path, None).await;
                let what = format!("{} {} as {role}: {}", operation.method(), path, reply.text);
                if role.permits(permission) {
                    assert_ne!(reply.status, StatusCode::FORBIDDEN, "{what}");
                    assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
                } else {
                    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
                    match route.dialect() {
                        keys_http::error::Dialect::SuprSend => assert_eq!(reply.body["type"], "PermissionDenied"),
                        keys_http::error::Dialect::Versori => assert_eq!(reply.body["code"], "forbidden"),
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 60, "only {checked} calls: the walk missed the table");
    let _ = Permission::Verify;
}

#[tokio::test]
async fn quota_reached_is_a_400_in_each_dialect() {
    // The bootstrap made two workspaces: one more fits.
    let harness = capped_harness(Quotas::new(3, 1, 1).expect("quotas")).await;
    let create = |slug: &str| json!({"name": slug, "slug": slug});
    let third = harness.call(Method::POST, "/v1/workspace/", Some(create("third"))).await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
    let fourth = harness.call(Method::POST, "/v1/workspace/", Some(create("fourth"))).await;
    validation(&fourth, "the organisation has reached its limit of 3 workspaces");
    let listed = harness.call(Method::GET, "/v1/workspace/", None).await;
    assert_eq!(listed.body["meta"]["count"], 3);

    let key = harness.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "one"}))).await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    let second = harness.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "two"}))).await;
    validation(&second, "the workspace has reached its limit of 1 API keys");
    assert!(second.body.get("api_key").is_none());
    let elsewhere = harness.call(Method::POST, "/v1/production/ws_api_key/", Some(json!({"name": "two"}))).await;
    assert_eq!(elsewhere.status, StatusCode::CREATED, "the cap is per workspace: {}", elsewhere.text);
    let signing = harness.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(signing.status, StatusCode::CREATED, "each kind has its own cap: {}", signing.text);

    let keys = format!("/api/organisations/v1/organisations/{}/keys", harness.organisation);
    let first = harness.call(Method::POST, &keys, Some(json!({"name": "k1"}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let refused = harness.call(Method::POST, &keys, Some(json!({"name": "k2"}))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    assert_eq!(
        refused.body,
        json!({
            "code": "invalid_request",
            "message": "The request is invalid.",
            "cause": "the organisation has reached its limit of 1 signing keys: delete one it no longer needs first",
        })
    );
}

#[tokio::test]
async fn organisation_key_list_pages_with_a_cursor() {
    let harness = harness().await;
    let keys = format!("/api/organisations/v1/organisations/{}/keys", harness.organisation);
    let mut created = Vec::new();
    for name in ["k1", "k2", "k3"] {
        let reply = harness.call(Method::POST, &keys, Some(json!({"name": name}))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        created.push(reply.body["id"].as_str().expect("id").to_owned());
    }
    created.reverse();
    let ids = |reply: &Reply| -> Vec<String> {
        let keys = reply.body["keys"].as_array().expect("keys");
        keys.iter().map(|key| key["id"].as_str().expect("id").to_owned()).collect()
    };

    // A client that does not page gets every key (up to 100) and a null cursor.
    let whole = harness.call(Method::GET, &keys, None).await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.text);
    assert_eq!(ids(&whole), created);
    assert_eq!(keys_of(&whole.body), vec!["keys", "nextCursor"]);
    assert_eq!(whole.body["nextCursor"], Value::Null);

    let first = harness.call(Method::GET, &format!("{keys}?limit=2"), None).await;
    assert_eq!(ids(&first), created[..2]);
    let cursor = first.body["nextCursor"].as_str().expect("a next page").to_owned();
    let second = harness.call(Method::GET, &format!("{keys}?limit=2&cursor={cursor}"), None).await;
    assert_eq!(ids(&second), created[2..]);
    assert_eq!(second.body["nextCursor"], Value::Null);

    for bad in ["limit=0", "limit=1001", "limit=ten", "cursor=nope"] {
        let refused = harness.call(Method::GET, &format!("{keys}?{bad}"), None).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}: {}", refused.text);
        assert_eq!(refused.body["code"], "invalid_request", "{bad}");
    }
    let most = harness.call(Method::GET, &format!("{keys}?limit=1000"), None).await;
    assert_eq!(ids(&most), created);
}

// ------------------------------------------------------------------- audit

/// Every event of `path` (a `/v1/audit_event/` query), page after page.
async fn audit_pages(harness: &Harness, path: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut next = String::new();
    for _ in 0..100 {
        let separator = if path.contains('?') { '&' } else { '?' };
        let page = harness.call(Method::GET, &format!("{path}{separator}{next}"), None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        events.extend(page.body["results"].as_array().expect("results").iter().cloned());
        match page.body["meta"]["next_cursor"].as_str() {
            Some(cursor) => next = format!("cursor={cursor}"),
            None => return events,
        }
    }
    panic!("the cursor never ends");
}

#[tokio::test]
async fn audit_events_list_filter_and_page() {
    let harness = harness().await;
    let token_id = {
        let token = ServiceToken::parse(&harness.token).expect("token");
        harness.store.service_token_by_digest(&token.digest()).await.expect("lookup").expect("token").id.to_string()
    };
    let create = Request::builder()
        .method(Method::POST)
        .uri("/v1/staging/ws_api_key/")
        .header(header::AUTHORIZATION, format!("ServiceToken {}", harness.token))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "deploy:42.a_b-c")
        .body(Full::new(Bytes::from(json!({"name": "backend"}).to_string())))
        .expect("request");
    let created = harness.send(create).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.headers["x-request-id"], "deploy:42.a_b-c");
    let (secret, key_id) = (created.body["api_key"].as_str().expect("secret"), created.body["id"].clone());
    let public = harness.call(Method::POST, "/v1/production/ws_public_key/", Some(json!({"name": "web"}))).await;
    assert_eq!(public.status, StatusCode::CREATED);
    let deleted =
        harness.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{}/", key_id.as_str().expect("id")), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let deleted_request_id = deleted.headers["x-request-id"].to_str().expect("ascii").to_owned();

    let list = harness.call(Method::GET, "/v1/audit_event/", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    assert!(!list.text.contains(secret), "an event shows the secret");
    assert_eq!(list.body["meta"], json!({"limit": 50, "next_cursor": null}));
    let events = list.body["results"].as_array().expect("results");
    let actions: Vec<&str> = events.iter().map(|event| event["action"].as_str().expect("action")).collect();
    assert_eq!(
        actions,
        [
            "api_key.deleted",
            "public_api_key.generated",
            "api_key.generated",
            "service_token.generated",
            "workspace.created",
            "workspace.created",
            "organisation.created"
        ]
    );
    assert_eq!(keys_of(&events[0]), ["action", "actor", "at", "detail", "id", "request_id", "target", "workspace"]);
    assert_eq!(events[0]["request_id"], deleted_request_id.as_str());
    assert_eq!(events[0]["target"], json!({"type": "api_key", "id": key_id}));
    assert_eq!(events[0]["workspace"], "staging");
    assert_eq!(events[2]["request_id"], "deploy:42.a_b-c");
    assert_eq!(events[2]["actor"]["token_id"], token_id.as_str());
    assert_eq!(events[2]["actor"]["email"], format!("org_{}@systemuser.keysd.local", harness.organisation));
    assert!(is_timestamp(&events[2]["at"]));
    assert!(events[2]["id"].as_str().expect("id").starts_with("evt_"));
    assert_eq!(events[1]["workspace"], "production");
    // The bootstrap was the operator's: no token, no request.
    assert_eq!(events[6]["actor"], json!({"name": null, "email": null, "token_id": null}));
    assert_eq!((&events[6]["request_id"], &events[6]["workspace"]), (&Value::Null, &Value::Null));
    assert_eq!(events[6]["target"], json!({"type": "organisation", "id": harness.organisation.to_string()}));

    // Pages of 2 are the same list, each event once.
    let paged = audit_pages(&harness, "/v1/audit_event/?limit=2").await;
    assert_eq!(paged, events.to_vec());
    let first = harness.call(Method::GET, "/v1/audit_event/?limit=2", None).await;
    assert_eq!(first.body["meta"]["limit"], 2);
    assert!(first.body["meta"]["next_cursor"].is_string());

    // Filters.
    let ids = |events: &[Value]| events.iter().map(|event| event["action"].clone()).collect::<Vec<_>>();
    let staging = audit_pages(&harness, "/v1/audit_event/?workspace=staging").await;
    assert_eq!(ids(&staging), [json!("api_key.deleted"), json!("api_key.generated"), json!("workspace.created")]);
    let generated = audit_pages(&harness, "/v1/audit_event/?action=api_key.generated&limit=1").await;
    assert_eq!(ids(&generated), [json!("api_key.generated")]);
    let target = audit_pages(&harness, &format!("/v1/audit_event/?target_id={}", key_id.as_str().expect("id"))).await;
    assert_eq!(ids(&target), [json!("api_key.deleted"), json!("api_key.generated")]);
    let at = events[2]["at"].as_str().expect("at");
    let since = audit_pages(&harness, &format!("/v1/audit_event/?since={}", at.replace(':', "%3A"))).await;
    assert_eq!(since.len(), 3);
    let until = audit_pages(&harness, &format!("/v1/audit_event/?until={at}")).await;
    assert_eq!(until.len(), 4);

    // Another organisation sees its own trail only.
    let (_, other_token) = harness.other_organisation("globex").await;
    let theirs = harness.call_as(&other_token, Method::GET, "/v1/audit_event/", None).await;
    let theirs = theirs.body["results"].as_array().expect("results").clone();
    assert!(theirs.iter().all(|event| event["action"] != "api_key.generated"), "{theirs:?}");
    let unauthenticated = harness.public(Method::GET, "/v1/audit_event/").await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert!(unauthenticated.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn audit_event_queries_are_validated() {
    let harness = harness().await;
    for (query, message) in [
        ("limit=0", "limit must be a whole number between 1 and 100"),
        ("limit=101", "limit must be a whole number between 1 and 100"),
        ("limit=many", "limit must be a whole number between 1 and 100"),
        ("cursor=nope", "cursor is not one this server returned"),
        ("cursor=0000000000000000000000000000000", "cursor is not one this server returned"),
        ("action=api_key.create", "action 'api_key.create' is not an audit action"),
        ("since=yesterday", "since must be an RFC 3339 timestamp"),
        ("until=2026-02-30T00:00:00Z", "until must be an RFC 3339 timestamp"),
    ] {
        validation(&harness.call(Method::GET, &format!("/v1/audit_event/?{query}"), None).await, message);
    }
    // An empty window is an empty page, not an error; so is a well-formed
    // cursor this server never made.
    for query in ["since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "cursor=00000000000000000000000000000000"] {
        let empty = harness.call(Method::GET, &format!("/v1/audit_event/?{query}"), None).await;
        assert_eq!(empty.status, StatusCode::OK, "{query}: {}", empty.text);
        assert_eq!(empty.body["results"], json!([]), "{query}");
        assert_eq!(empty.body["meta"]["next_cursor"], Value::Null, "{query}");
    }
    let both = harness.call(Method::GET, "/v1/audit_event/?limit=0&cursor=x", None).await;
    assert_eq!(both.body["detail"].as_array().expect("detail").len(), 2, "{}", both.text);
    not_found(&harness.call(Method::GET, "/v1/audit_event/?workspace=nope", None).await, "workspace 'nope' not found");
    let (_, other_token) = harness.other_organisation("globex").await;
    let foreign = harness.call_as(&other_token, Method::GET, "/v1/audit_event/?workspace=production", None).await;
    not_found(&foreign, "workspace 'production' not found");
}

keys_testkit::on_both_backends! {
    every_route_checks_the_role_its_table_entry_states => every_route_checks_the_role_its_table_entry_states_sqlite, every_route_checks_the_role_its_table_entry_states_postgres;
}
