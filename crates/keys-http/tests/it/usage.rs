//! Usage over HTTP (docs/API.md, Usage; SPEC 13), without a socket and on
//! both stores: after verifications through `/v1/verify/…/` and forward
//! authentication and one flush, `GET /v1/{workspace}/usage/` answers the
//! workspace's totals, one key's counts or an owner's keys' counts
//! exactly, in pages a cursor walks; bad queries are 400s in the SuprSend
//! shape; a verify token and a manage token limited to another workspace
//! are 403s, and another organisation sees only its own workspace;
//! `/metrics` counts every verification by kind and outcome; every answer
//! is what `/openapi.json` documents.
//!
//! The clock is the system's: counts may fall either side of a bucket
//! boundary, so they are compared summed per key and outcome, and each
//! row's `at` is checked to start a bucket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_core::Mode;
use keys_crypto::ApiKeySecret;
use keys_http::{App, AppConfig};
use keys_store::Store;
use keys_testkit::{Tenant, TestDb};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::openapi_check;

const USAGE: &str = "/v1/staging/usage/";

struct Harness {
    app: App,
    /// Every response, checked against `/openapi.json` when the test ends.
    responses: openapi_check::Recorder,
    store: Arc<dyn Store>,
    token: String,
    _db: TestDb,
}

struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

/// The application on `db` behind the verification cache, counting usage
/// (an interval far longer than a test: only the test's flushes write),
/// bootstrapped with `default` (`staging`, `production`) and its admin
/// token.
async fn harness(db: TestDb) -> Harness {
    let store = db.cached_store(keys_store::CacheConfig::default()).await;
    let config = AppConfig { usage_interval: Some(Duration::from_secs(3600)), ..AppConfig::default() };
    let app = App::new(Arc::clone(&store), config);
    let workspaces = [("staging", Some(Mode::Sandbox)), ("production", Some(Mode::Production))];
    let tenant = Tenant::new("default", &workspaces, "test", OffsetDateTime::now_utc(), &mut OsRng);
    let (_, token) = tenant.bootstrap(&*store).await;
    Harness { app, responses: openapi_check::Recorder::default(), store, token, _db: db }
}

impl Harness {
    async fn send(&self, token: Option<&str>, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("ServiceToken {token}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let response = self.app.handle(builder.body(Full::new(body)).expect("request")).await;
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let uri: http::Uri = path.parse().expect("uri");
        self.responses.record(openapi_check::Observation {
            method: method.to_string(),
            path: uri.path().to_owned(),
            status: status.as_u16(),
            content_type,
            body: text.clone(),
        });
        Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(Some(&self.token), method, path, body).await
    }

    async fn get_as(&self, token: &str, path: &str) -> Reply {
        self.send(Some(token), Method::GET, path, None).await
    }

    /// A token made through the API by the bootstrap token.
    async fn token(&self, body: Value) -> String {
        let reply = self.call(Method::POST, "/v1/service_token/", Some(body)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["token"].as_str().expect("token").to_owned()
    }

    /// A new API key of `staging`: (its id, its secret).
    async fn api_key(&self, body: Value) -> (String, String) {
        let created = self.call(Method::POST, "/v1/staging/ws_api_key/", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        (text(&created.body["id"]), text(&created.body["api_key"]))
    }

    /// `valid` or the reason of `/v1/verify/{kind}/` with `body`.
    async fn verdict(&self, kind: &str, body: Value) -> String {
        let reply = self.call(Method::POST, &format!("/v1/verify/{kind}/"), Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        if reply.body["valid"] == true {
            return "valid".to_owned();
        }
        text(&reply.body["reason"])
    }

    /// Verifies `times` times, each answering `expected`.
    async fn repeat(&self, times: usize, expected: &str, kind: &str, body: Value) {
        for time in 0..times {
            assert_eq!(self.verdict(kind, body.clone()).await, expected, "{body}: verification {time}");
        }
    }

    /// The status of `/v1/auth/forward` presenting `secret` as a gateway
    /// does (not recorded: its answers have no body to check).
    async fn forward(&self, secret: &str) -> StatusCode {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/v1/auth/forward")
            .header("x-keysd-service-token", &self.token)
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.app.handle(request).await.status()
    }

    /// Every row of `query` (`?` and all), walking the cursor with pages of
    /// `limit`; each page a 200 of the documented shape.
    async fn rows(&self, query: &str, limit: u32) -> Vec<Value> {
        let mut rows = Vec::new();
        let mut cursor = String::new();
        for _ in 0..1000 {
            let page = self.call(Method::GET, &format!("{USAGE}{query}&limit={limit}{cursor}"), None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            let members: Vec<&str> = page.body.as_object().expect("object").keys().map(String::as_str).collect();
            assert_eq!(members, ["granularity", "next_cursor", "results"], "{}", page.text);
            let results = page.body["results"].as_array().expect("results");
            assert!(results.len() <= limit as usize, "{}", page.text);
            rows.extend(results.iter().cloned());
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return rows,
            }
        }
        panic!("the cursor never ends");
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

/// Rows summed per (key id, outcome), the key `-` in the totals; checks
/// each row's shape and that its `at` starts a bucket of `width` seconds.
fn summed(rows: &[Value], width: i64) -> BTreeMap<(String, String), u64> {
    let mut sums = BTreeMap::new();
    for row in rows {
        let members: Vec<&str> = row.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(members, ["at", "count", "key_id", "outcome"], "{row}");
        let at = OffsetDateTime::parse(&text(&row["at"]), &Rfc3339).expect("RFC 3339");
        assert_eq!(at.unix_timestamp() % width, 0, "{row}: not the start of a bucket");
        assert_eq!(at.nanosecond(), 0, "{row}");
        let key = row["key_id"].as_str().unwrap_or("-").to_owned();
        let count = row["count"].as_u64().expect("count");
        assert!(count > 0, "{row}: a bucket without verifications has no row");
        *sums.entry((key, text(&row["outcome"]))).or_default() += count;
    }
    sums
}

/// Rows are newest bucket first, then by key id and outcome, each once.
fn assert_ordered(rows: &[Value]) {
    let position = |row: &Value| {
        let at = OffsetDateTime::parse(&text(&row["at"]), &Rfc3339).expect("RFC 3339");
        (std::cmp::Reverse(at), row["key_id"].as_str().unwrap_or("").to_owned(), text(&row["outcome"]))
    };
    for pair in rows.windows(2) {
        assert!(position(&pair[0]) < position(&pair[1]), "out of order or repeated: {} then {}", pair[0], pair[1]);
    }
}

fn sums(entries: &[(&str, &str, u64)]) -> BTreeMap<(String, String), u64> {
    entries.iter().map(|(key, outcome, count)| (((*key).to_owned(), (*outcome).to_owned()), *count)).collect()
}

/// The SuprSend dialect's 400, with `message` among its problems.
fn validation(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{message}: {}", reply.text);
    assert_eq!(reply.body["code"], 400, "{}", reply.text);
    assert_eq!(reply.body["error_code"], "error", "{}", reply.text);
    assert_eq!(reply.body["type"], "ValidationError", "{}", reply.text);
    let detail = reply.body["detail"].as_array().expect("detail array");
    assert!(
        detail.iter().any(|item| item.as_str().is_some_and(|item| item.contains(message))),
        "{message}: {}",
        reply.text
    );
    assert_eq!(reply.body["message"], serde_json::to_string(detail).expect("json"));
}

fn permission_denied(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.body["code"], 403, "{}", reply.text);
    assert_eq!(reply.body["error_code"], "permission_denied", "{}", reply.text);
    assert_eq!(reply.body["type"], "PermissionDenied", "{}", reply.text);
}

keys_testkit::on_both_backends! {
    usage_answers_totals_one_key_and_an_owner_exactly => usage_answers_totals_one_key_and_an_owner_exactly_sqlite, usage_answers_totals_one_key_and_an_owner_exactly_postgres;
    usage_refuses_bad_queries_and_other_callers => usage_refuses_bad_queries_and_other_callers_sqlite, usage_refuses_bad_queries_and_other_callers_postgres;
}

/// A known mix through the verify endpoints, one flush, then the usage of
/// the workspace, of one key and of an owner, exactly; `/metrics` counts
/// the same verifications, and those that found no key too.
async fn usage_answers_totals_one_key_and_an_owner_exactly(db: TestDb) {
    let harness = harness(db).await;
    let (first, first_secret) =
        harness.api_key(json!({"name": "first", "external_id": "customer-1", "scopes": ["orders:read"]})).await;
    let (second, second_secret) = harness.api_key(json!({"name": "second", "external_id": "customer-1"})).await;
    let (third, third_secret) = harness.api_key(json!({"name": "third", "external_id": "customer-2"})).await;
    let public = harness.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": "web"}))).await;
    assert_eq!(public.status, StatusCode::CREATED, "{}", public.text);
    let (public_id, public_value) = (text(&public.body["id"]), text(&public.body["api_key"]));
    let (production_key, production_secret) = {
        let created = harness.call(Method::POST, "/v1/production/ws_api_key/", Some(json!({"name": "p"}))).await;
        (text(&created.body["id"]), text(&created.body["api_key"]))
    };
    let unknown = ApiKeySecret::generate(&mut OsRng).expose().to_owned();

    let with = |secret: &str| json!({"api_key": secret});
    harness.repeat(7, "valid", "api_key", json!({"api_key": first_secret, "required_scopes": ["orders:read"]})).await;
    harness
        .repeat(2, "insufficient_scope", "api_key", json!({"api_key": first_secret, "required_scopes": ["x"]}))
        .await;
    harness.repeat(4, "valid", "api_key", with(&second_secret)).await;
    let disabled = harness.call(Method::PATCH, &format!("/v1/staging/ws_api_key/{second}/disable/"), None).await;
    assert_eq!(disabled.status, StatusCode::ACCEPTED, "{}", disabled.text);
    harness.repeat(3, "key_disabled", "api_key", with(&second_secret)).await;
    harness.repeat(1, "valid", "api_key", with(&third_secret)).await;
    // Forward authentication counts as the verify endpoint does.
    for _ in 0..3 {
        assert_eq!(harness.forward(&third_secret).await, StatusCode::OK);
    }
    assert_eq!(harness.forward(&second_secret).await, StatusCode::UNAUTHORIZED, "disabled");
    harness.repeat(2, "unknown_key", "api_key", with(&unknown)).await;
    harness.repeat(1, "malformed", "api_key", with("SS.garbage")).await;
    harness.repeat(5, "valid", "public_key", with(&public_value)).await;
    harness.repeat(6, "valid", "api_key", with(&production_secret)).await;

    // Nothing is written before the flush; the flush writes every count
    // of a key found: 9 + 8 + 4 + 5 + 6.
    let before = harness.call(Method::GET, &format!("{USAGE}?granularity=minute"), None).await;
    assert_eq!((before.status, &before.body["results"]), (StatusCode::OK, &json!([])), "{}", before.text);
    let service = harness.app.service();
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 32);
    assert_eq!(service.pending_usage_counts(), 0);

    // The workspace's totals, at each granularity, the default (hour) too.
    let totals =
        sums(&[("-", "insufficient_scope", 2), ("-", "key_disabled", 3 + 1), ("-", "valid", 7 + 4 + 1 + 3 + 5)]);
    for (granularity, width) in [("minute", 60), ("hour", 3_600), ("day", 86_400)] {
        let reply = harness.call(Method::GET, &format!("{USAGE}?granularity={granularity}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["granularity"], granularity);
        assert_eq!(reply.body["next_cursor"], Value::Null);
        let rows = reply.body["results"].as_array().expect("results");
        assert_ordered(rows);
        assert_eq!(summed(rows, width), totals, "{granularity}: {}", reply.text);
    }
    let default = harness.call(Method::GET, USAGE, None).await;
    assert_eq!(default.body["granularity"], "hour", "{}", default.text);
    assert_eq!(summed(default.body["results"].as_array().expect("results"), 3_600), totals);
    let production = harness.call(Method::GET, "/v1/production/usage/?granularity=day", None).await;
    assert_eq!(
        summed(production.body["results"].as_array().expect("results"), 86_400),
        sums(&[("-", "valid", 6)]),
        "{}",
        production.text
    );

    // One key; an owner's keys; an owner with none counted.
    let one = harness.rows(&format!("?granularity=minute&key_id={first}"), 100).await;
    assert_eq!(summed(&one, 60), sums(&[(&first, "insufficient_scope", 2), (&first, "valid", 7)]));
    let public_rows = harness.rows(&format!("?key_id={public_id}"), 100).await;
    assert_eq!(summed(&public_rows, 3_600), sums(&[(&public_id, "valid", 5)]));
    let foreign = harness.rows(&format!("?key_id={production_key}"), 100).await;
    assert_eq!(foreign, Vec::<Value>::new(), "production's key through staging");
    let owner = harness.rows("?granularity=day&external_id=customer-1", 100).await;
    assert_ordered(&owner);
    assert_eq!(
        summed(&owner, 86_400),
        sums(&[
            (&first, "insufficient_scope", 2),
            (&first, "valid", 7),
            (&second, "key_disabled", 3 + 1),
            (&second, "valid", 4)
        ])
    );
    let other_owner = harness.rows("?external_id=customer-2", 100).await;
    assert_eq!(summed(&other_owner, 3_600), sums(&[(&third, "valid", 1 + 3)]));
    assert_eq!(harness.rows("?external_id=nobody", 100).await, Vec::<Value>::new());

    // Pages of one row, through the cursor: the same rows, once each.
    let whole = harness.rows("?granularity=minute&external_id=customer-1", 10_000).await;
    let paged = harness.rows("?granularity=minute&external_id=customer-1", 1).await;
    assert_eq!(paged, whole);
    assert_ordered(&paged);
    let totals_paged = harness.rows("?granularity=minute", 1).await;
    assert_eq!(summed(&totals_paged, 60), totals);

    // A second flush has nothing to write, and the answers stay.
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 0);
    assert_eq!(harness.rows("?granularity=minute&external_id=customer-1", 10_000).await, whole);

    // /metrics counts every verification answered, by kind and outcome.
    let metrics = harness.send(None, Method::GET, "/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "keysd_verifications_total{kind=\"api_key\",outcome=\"valid\"} 21",
        "keysd_verifications_total{kind=\"api_key\",outcome=\"insufficient_scope\"} 2",
        "keysd_verifications_total{kind=\"api_key\",outcome=\"key_disabled\"} 4",
        "keysd_verifications_total{kind=\"api_key\",outcome=\"unknown_key\"} 2",
        "keysd_verifications_total{kind=\"api_key\",outcome=\"malformed\"} 1",
        "keysd_verifications_total{kind=\"public_key\",outcome=\"valid\"} 5",
    ] {
        assert!(metrics.text.lines().any(|seen| seen == line), "{line} not in:\n{}", metrics.text);
    }
    assert!(!metrics.text.contains(&first), "no key ids in /metrics");
}

/// Each bad value is a 400 naming it (SuprSend's shape), for any caller;
/// a verify token and a manage token limited to another workspace are
/// 403s; another organisation and an unknown workspace are 404s.
async fn usage_refuses_bad_queries_and_other_callers(db: TestDb) {
    let harness = harness(db).await;
    let (id, secret) = harness.api_key(json!({"name": "k"})).await;
    assert_eq!(harness.verdict("api_key", json!({"api_key": secret})).await, "valid");
    assert_eq!(harness.app.service().flush_usage_counts().await.expect("flush"), 1);

    // Hexadecimal, but of text that is not `seconds|key|outcome` ("no-bar").
    let not_a_position = "cursor=6e6f2d626172";
    let bad = [
        ("granularity=week", "granularity"),
        ("granularity=", "granularity"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("key_id=ws_apik_1&external_id=customer-1", "cannot be combined"),
        ("key_id=a%20b", "key_id"),
        ("since=2026-12-07T00:00:00Z&until=2026-12-06T00:00:00Z", "since must be before until"),
        ("since=2026-12-07T00:00:00Z&until=2026-12-07T00:00:00Z", "since must be before until"),
        ("since=yesterday", "since"),
        ("until=tomorrow", "until"),
        ("cursor=zz", "cursor"),
        ("cursor=abc", "cursor"),
        (not_a_position, "cursor"),
    ];
    for (query, message) in bad {
        validation(&harness.call(Method::GET, &format!("{USAGE}?{query}"), None).await, message);
    }
    // Several problems are told at once.
    let several = harness.call(Method::GET, &format!("{USAGE}?granularity=week&limit=0"), None).await;
    validation(&several, "granularity");
    validation(&several, "limit");

    // Who may ask: manage for the workspace.
    let verify = harness.token(json!({"name": "verifier", "role": "verify"})).await;
    permission_denied(&harness.get_as(&verify, USAGE).await);
    let limited = harness.token(json!({"name": "prod-only", "role": "manage", "workspaces": ["production"]})).await;
    permission_denied(&harness.get_as(&limited, USAGE).await);
    let allowed = harness.get_as(&limited, "/v1/production/usage/").await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text);
    let manage = harness.token(json!({"name": "manager", "role": "manage"})).await;
    let managed = harness.get_as(&manage, &format!("{USAGE}?key_id={id}&granularity=day")).await;
    assert_eq!(managed.status, StatusCode::OK, "{}", managed.text);
    assert_eq!(summed(managed.body["results"].as_array().expect("results"), 86_400), sums(&[(&id, "valid", 1)]));
    let unauthenticated = harness.send(None, Method::GET, USAGE, None).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED, "{}", unauthenticated.text);

    let other = Tenant::new("other", &[("staging", None)], "other", OffsetDateTime::now_utc(), &mut OsRng);
    let (_, outsider) = other.create_in(&*harness.store).await;
    let theirs = harness.get_as(&outsider, &format!("{USAGE}?key_id={id}")).await;
    assert_eq!(theirs.status, StatusCode::OK, "their own staging: {}", theirs.text);
    assert_eq!(theirs.body["results"], json!([]), "another organisation's staging holds none of ours");
    let missing = harness.call(Method::GET, "/v1/nope/usage/", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
}
