//! Webhooks end to end (docs/WEBHOOKS.md): the real `keysd` binary sends
//! its events to a receiver written in Python that checks every delivery
//! with the Standard Webhooks library (`webhook_receiver.py`, PyPI
//! `standardwebhooks`), independent of keysd's own signing code.
//!
//! - The journey, on both backends: what an endpoint subscribes to arrives
//!   within seconds, signed, `webhook-id` the audit event's id, never a
//!   secret in it; a rotated secret signs beside its successor; an
//!   endpoint limited to a workspace and a type gets exactly that.
//! - A receiver that fails gets the same `webhook-id` again, automatically
//!   after the first backoff (5–6 s) and at once on a manual retry.
//! - `kill -9` of the process with an attempt in flight loses nothing: its
//!   claim runs out and the next process sends it.
//! - Two and three replicas on one PostgreSQL deliver each of 1,000 events
//!   exactly once to a receiver that never fails.
//! - The SSRF guard: without `--webhook-allow-private-destinations`, a name
//!   of the loopback is refused before any connection.
//! - Bad input, roles and unknown ids.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keys_testkit::{on_both_backends, TestDb};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::e2e::{text, Api, Reply, Server};

const RECEIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/webhook_receiver.py");

/// The flag that lets endpoints use `http://` and reach 127.0.0.1.
const PRIVATE: &str = "--webhook-allow-private-destinations";

/// A secret no endpoint has (Standard Webhooks' own example secret).
const FOREIGN_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// ------------------------------------------------------------------ receiver

/// `webhook_receiver.py`, running: what it answers is set through its
/// control file, the secrets it verifies with through its secrets file;
/// what it received is read from its log.
struct Receiver {
    _child: Child,
    home: PathBuf,
    port: u16,
}

/// Writes `path` whole, in one rename: the receiver reads it at each request.
fn write_atomically(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

impl Receiver {
    /// Starts a receiver keeping its files under `dir/name`, answering 200
    /// and knowing no secret yet.
    async fn start(dir: &Path, name: &str) -> Self {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("receiver directory");
        write_atomically(&home.join("control"), "200");
        write_atomically(&home.join("secrets"), "");
        let interpreter = std::env::var("KEYSD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut child = Command::new(interpreter)
            .arg(RECEIVER)
            .args(["port", "log.jsonl", "secrets", "control"].map(|file| home.join(file)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.join("stderr")).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("python runs (KEYSD_PYTHON, with the PyPI package standardwebhooks)");
        let started = Instant::now();
        let port = loop {
            if let Some(port) =
                std::fs::read_to_string(home.join("port")).ok().and_then(|text| text.trim().parse().ok())
            {
                break port;
            }
            if let Some(status) = child.try_wait().expect("the receiver's status") {
                let stderr = std::fs::read_to_string(home.join("stderr")).unwrap_or_default();
                panic!("the receiver exited ({status}): {stderr}");
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the receiver did not listen within 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self { _child: child, home, port }
    }

    /// The URL of `path` on this receiver.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// How to answer from now on: `"200"`, `"500"`, `"200 5"` (after 5 s).
    fn answer(&self, control: &str) {
        write_atomically(&self.home.join("control"), control);
    }

    /// The secrets deliveries are verified with from now on.
    fn trust(&self, secrets: &[&str]) {
        write_atomically(&self.home.join("secrets"), &secrets.join("\n"));
    }

    /// The raw log, for the secret scans.
    fn raw_log(&self) -> String {
        std::fs::read_to_string(self.home.join("log.jsonl")).unwrap_or_default()
    }

    /// Every request answered so far, in the order answered.
    fn records(&self) -> Vec<Value> {
        complete_lines(&self.raw_log())
    }

    /// The `webhook-id` of every request that arrived (answered or not).
    fn arrivals(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.home.join("log.jsonl.arrivals")).unwrap_or_default();
        complete_lines(&log).iter().map(|id| id.as_str().unwrap_or_default().to_owned()).collect()
    }

    /// Polls the records until `done` holds of them, for at most `within`.
    async fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let records = self.records();
            if done(&records) {
                return records;
            }
            assert!(started.elapsed() < within, "{what}: not within {within:?}; received {}", summary(&records));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The JSON values of the lines of `log` that are complete.
fn complete_lines(log: &str) -> Vec<Value> {
    let complete = match log.rfind('\n') {
        Some(end) => &log[..end],
        None => "",
    };
    complete.lines().filter(|line| !line.is_empty()).map(|line| serde_json::from_str(line).expect("JSON")).collect()
}

/// One line per record: id, type, path, answer, verified.
fn summary(records: &[Value]) -> String {
    let lines: Vec<String> = records
        .iter()
        .map(|record| {
            format!(
                "{} {} {} answered {} verified {}",
                record["id"], record["type"], record["path"], record["answered"], record["verified"]
            )
        })
        .collect();
    format!("{} requests:\n{}", records.len(), lines.join("\n"))
}

/// The records of the event `id`.
fn of<'a>(records: &'a [Value], id: &str) -> Vec<&'a Value> {
    records.iter().filter(|record| record["id"] == id).collect()
}

/// The records of `path` with `data.action == action` and the target `target`.
fn find<'a>(records: &'a [Value], path: &str, action: &str, target: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|record| record["path"] == path && record["type"] == action && record["data"]["target"]["id"] == target)
        .collect()
}

/// Whether a record of `path` for `action` on `target` was answered 200.
fn delivered(records: &[Value], path: &str, action: &str, target: &str) -> bool {
    find(records, path, action, target).iter().any(|record| record["answered"] == 200)
}

/// A verified delivery of an audit event is well formed: `webhook-id` is
/// `evt_<n>` and the event's id, the type its action, the body's timestamp
/// its time, and the `webhook-timestamp` the time of sending.
fn assert_well_formed(record: &Value) {
    assert_eq!(record["verified"], true, "{record}");
    let id = text(&record["id"]);
    assert!(id.strip_prefix("evt_").is_some_and(|n| n.parse::<u64>().is_ok()), "{record}");
    assert_eq!(record["data"]["id"], id.as_str(), "{record}");
    assert_eq!(record["type"], record["data"]["action"], "{record}");
    assert_eq!(record["at"], record["data"]["at"], "{record}");
    let sent: f64 = text(&record["timestamp"]).parse().expect("webhook-timestamp");
    let received = record["received_at"].as_f64().expect("received_at");
    assert!((sent - received).abs() < 5.0, "webhook-timestamp {sent} far from arrival {received}");
    for signature in record["signatures"].as_array().expect("signatures") {
        assert!(text(signature).starts_with("v1,"), "{record}");
    }
}

// ------------------------------------------------------------------ helpers

/// A request with the answer's headers (the client of `e2e` keeps only the
/// status and the body).
async fn raw(server: &Server, token: &str, method: Method, path: &str, body: Option<Value>) -> (Reply, HeaderMap) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.base))
        .header(header::AUTHORIZATION, format!("ServiceToken {token}"));
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(body.to_string())
        }
        None => Bytes::new(),
    };
    let response = client.request(request.body(Full::new(body)).expect("request")).await.expect("response");
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }, headers)
}

/// Creates an endpoint and checks the one answer with its secret: 201,
/// `Cache-Control: no-store`, `whsec_…`. Returns (id, secret).
async fn create_endpoint(server: &Server, token: &str, body: Value) -> (String, String) {
    let (created, headers) = raw(server, token, Method::POST, "/v1/webhook_endpoint/", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(headers.get(header::CACHE_CONTROL).map(|value| value.as_bytes()), Some(&b"no-store"[..]));
    let (id, secret) = (text(&created.body["id"]), text(&created.body["secret"]));
    assert!(id.starts_with("we_"), "{id}");
    assert!(secret.starts_with("whsec_"), "a Standard Webhooks secret");
    assert_eq!(created.body["status"], "enabled");
    (id, secret)
}

/// The first page (100) of an endpoint's attempts, newest first, and their
/// total.
async fn attempts(api: &Api, endpoint: &str) -> (u64, Vec<Value>) {
    let listed = api.call(Method::GET, &format!("/v1/webhook_endpoint/{endpoint}/deliveries/?limit=100"), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let total = listed.body["meta"]["count"].as_u64().expect("count");
    (total, listed.body["results"].as_array().expect("results").clone())
}

/// Polls an endpoint's attempts until `done` holds of them, for at most
/// `within`.
async fn wait_for_attempts(api: &Api, endpoint: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let (_, results) = attempts(api, endpoint).await;
        if done(&results) {
            return results;
        }
        assert!(started.elapsed() < within, "attempts of {endpoint} not as awaited within {within:?}: {results:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn parse_time(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(&text(value), &time::format_description::well_known::Rfc3339).expect("RFC 3339")
}

/// Creates an API key named `name` in `workspace`: (id, secret).
async fn api_key(api: &Api, workspace: &str, name: &str) -> (String, String) {
    let created = api.call(Method::POST, &format!("/v1/{workspace}/ws_api_key/"), Some(json!({"name": name}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (text(&created.body["id"]), text(&created.body["api_key"]))
}

/// Creates a workspace named `name`: (uid, slug).
async fn workspace(api: &Api, name: &str) -> (String, String) {
    let created = api.call(Method::POST, "/v1/workspace/", Some(json!({"name": name}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (text(&created.body["uid"]), text(&created.body["slug"]))
}

/// Everything every keysd started on `backend` logged.
fn keysd_logs(backend: &TestDb) -> String {
    let mut logs = String::new();
    for entry in std::fs::read_dir(backend.dir()).expect("the test's directory") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
        if name.starts_with("keysd-") && name.ends_with(".log") {
            logs.push_str(&std::fs::read_to_string(&path).expect("log"));
        }
    }
    assert!(!logs.is_empty(), "keysd's logs are found");
    logs
}

// ------------------------------------------------------------------ journey

/// The journey (both backends): an endpoint for every event gets the
/// workspace and the key made, signed and verified, `webhook-id` = the
/// event's id, no secret anywhere; a delivery the receiver cannot verify
/// is answered 400 and sent again on a manual retry; after a rotation
/// each delivery carries two signatures and verifies with either secret
/// alone; the attempts list the 200s; an endpoint limited to one workspace
/// and `api_key.generated` gets exactly that.
async fn webhooks_journey(backend: TestDb) {
    let receiver = Receiver::start(backend.dir(), "receiver").await;
    let server = Server::start(&backend, &[PRIVATE]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);

    let body = json!({"url": receiver.url("/all"), "events": ["*"], "description": "everything"});
    let (all, old_secret) = create_endpoint(&server, &token, body).await;
    receiver.trust(&[&old_secret]);

    // A workspace and a key: both arrive within 5 s, verified.
    let (workspace_uid, slug) = workspace(&api, "Hooked").await;
    let (key_id, key_secret) = api_key(&api, &slug, "hooked-key").await;
    let records = receiver
        .wait_for("the workspace and the key", Duration::from_secs(5), |records| {
            delivered(records, "/all", "workspace.created", &workspace_uid)
                && delivered(records, "/all", "api_key.generated", &key_id)
        })
        .await;
    let key_event = find(&records, "/all", "api_key.generated", &key_id)[0].clone();
    assert_eq!(key_event["data"]["workspace"], slug.as_str(), "{key_event}");
    assert_eq!(key_event["data"]["target"]["type"], "api_key", "{key_event}");
    assert_eq!(key_event["signatures"].as_array().map(Vec::len), Some(1), "one secret, one signature");

    // A delivery the receiver cannot verify (it knows another secret) is
    // answered 400 and waits for its retry; a manual retry sends the same
    // webhook-id again at once.
    receiver.trust(&[FOREIGN_SECRET]);
    let (foreign_key, foreign_key_secret) = api_key(&api, &slug, "unverified-first").await;
    let listed = wait_for_attempts(&api, &all, Duration::from_secs(5), |results| {
        results.iter().any(|attempt| attempt["type"] == "api_key.generated" && attempt["status_code"] == 400)
    })
    .await;
    let attempt = listed.iter().find(|attempt| attempt["status_code"] == 400).expect("listed");
    assert_eq!(attempt["state"], "pending", "{attempt}");
    assert_eq!(attempt["error"], "the receiver answered 400", "{attempt}");
    let refused_id = text(&attempt["event_id"]);
    let records = receiver.records();
    let refused = of(&records, &refused_id);
    assert_eq!(refused.len(), 1, "{}", summary(&records));
    assert_eq!((&refused[0]["verified"], &refused[0]["answered"]), (&json!(false), &json!(400)));
    receiver.trust(&[&old_secret]);
    let retried =
        api.call(Method::POST, &format!("/v1/webhook_endpoint/{all}/deliveries/{refused_id}/retry/"), None).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body, json!({"event_id": refused_id, "state": "pending"}));
    receiver
        .wait_for("the manual retry", Duration::from_secs(3), |records| {
            delivered(records, "/all", "api_key.generated", &foreign_key)
        })
        .await;

    // Rotation: the answer carries the new secret; deliveries carry both
    // signatures for 24 h, and verify with either secret alone.
    let rotate = format!("/v1/webhook_endpoint/{all}/rotate_secret/");
    let (rotated, headers) = raw(&server, &token, Method::POST, &rotate, None).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(headers.get(header::CACHE_CONTROL).map(|value| value.as_bytes()), Some(&b"no-store"[..]));
    let new_secret = text(&rotated.body["secret"]);
    assert!(new_secret.starts_with("whsec_") && new_secret != old_secret);
    receiver.trust(&[&new_secret]);
    let (after_new, after_new_secret) = api_key(&api, &slug, "after-rotation-new").await;
    let records = receiver
        .wait_for("a delivery verified with the new secret only", Duration::from_secs(5), |records| {
            delivered(records, "/all", "api_key.generated", &after_new)
        })
        .await;
    let with_new = find(&records, "/all", "api_key.generated", &after_new)[0].clone();
    receiver.trust(&[&old_secret]);
    let (after_old, after_old_secret) = api_key(&api, &slug, "after-rotation-old").await;
    let records = receiver
        .wait_for("a delivery verified with the old secret only", Duration::from_secs(5), |records| {
            delivered(records, "/all", "api_key.generated", &after_old)
        })
        .await;
    let with_old = find(&records, "/all", "api_key.generated", &after_old)[0].clone();
    for record in [&with_new, &with_old] {
        assert_eq!(record["verified"], true, "{record}");
        assert_eq!(record["signatures"].as_array().map(Vec::len), Some(2), "two signatures: {record}");
    }
    assert_eq!(with_new["secrets"], 1);
    assert_eq!(with_old["secrets"], 1);

    // An endpoint limited to the workspace and to `api_key.generated`.
    let body = json!({"url": receiver.url("/keys"), "events": ["api_key.generated"], "workspaces": [slug]});
    let (keys_only, keys_secret) = create_endpoint(&server, &token, body).await;
    receiver.trust(&[&old_secret, &new_secret, &keys_secret]);
    let got = api.call(Method::GET, &format!("/v1/webhook_endpoint/{keys_only}/"), None).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!((&got.body["events"], &got.body["workspaces"]), (&json!(["api_key.generated"]), &json!([slug])));
    assert!(got.body.get("secret").is_none(), "GET never shows the secret: {}", got.body);
    let (elsewhere, elsewhere_secret) = api_key(&api, "staging", "in-another-workspace").await;
    let (limited, limited_secret) = api_key(&api, &slug, "in-the-workspace").await;
    let renamed =
        api.call(Method::PATCH, &format!("/v1/{slug}/ws_api_key/{limited}/"), Some(json!({"name": "renamed"}))).await;
    assert!(renamed.status.is_success(), "{}", renamed.body);
    let (other_uid, _) = workspace(&api, "Not Hooked").await;
    receiver
        .wait_for("every change on the endpoint for all, and the key on the limited one", Duration::from_secs(5), |r| {
            delivered(r, "/all", "api_key.generated", &elsewhere)
                && delivered(r, "/all", "api_key.generated", &limited)
                && delivered(r, "/all", "api_key.updated", &limited)
                && delivered(r, "/all", "workspace.created", &other_uid)
                && delivered(r, "/keys", "api_key.generated", &limited)
        })
        .await;
    // What would be sent wrongly is sent within the deliverer's next polls.
    tokio::time::sleep(Duration::from_millis(750)).await;
    let records = receiver.records();
    let limited_records: Vec<&Value> = records.iter().filter(|record| record["path"] == "/keys").collect();
    assert_eq!(limited_records.len(), 1, "the limited endpoint got exactly one delivery: {}", summary(&records));
    assert_eq!(limited_records[0]["data"]["target"]["id"], limited.as_str());
    let (total, results) = attempts(&api, &keys_only).await;
    assert_eq!(total, 1, "{results:#?}");
    assert_eq!((&results[0]["status_code"], &results[0]["state"]), (&json!(200), &json!("delivered")));

    // Every event of the endpoint for all reaches it answered 200 (a
    // delivery sent before the receiver knew the new endpoint's secret is
    // retried, at once here); every delivery well formed.
    let (_, results) = attempts(&api, &all).await;
    let types: BTreeMap<String, String> =
        results.iter().map(|attempt| (text(&attempt["event_id"]), text(&attempt["type"]))).collect();
    for id in types.keys() {
        if !records.iter().any(|record| record["id"] == id.as_str() && record["answered"] == 200) {
            let path = format!("/v1/webhook_endpoint/{all}/deliveries/{id}/retry/");
            assert_eq!(api.call(Method::POST, &path, None).await.status, StatusCode::OK);
        }
    }
    let records = receiver
        .wait_for("every event answered 200", Duration::from_secs(3), |records| {
            let at_all: Vec<&Value> = records.iter().filter(|record| record["path"] == "/all").collect();
            let ids: BTreeSet<&str> = at_all.iter().filter_map(|record| record["id"].as_str()).collect();
            ids.iter().all(|id| at_all.iter().any(|record| record["id"] == *id && record["answered"] == 200))
        })
        .await;
    let mut unverified = 0;
    for record in &records {
        if record["verified"] == true {
            assert_well_formed(record);
        } else {
            // Only the delivery made unverifiable on purpose, or the
            // endpoint's own creation if it was sent before the test could
            // give the receiver the secret of the create answer.
            let id = text(&record["id"]);
            let created = types.get(&id).is_some_and(|kind| kind == "webhook_endpoint.created");
            assert!(id == refused_id || created, "{record}");
            unverified += 1;
        }
    }
    assert!(records.iter().any(|record| record["type"] == "webhook_endpoint.secret_rotated"), "{}", summary(&records));

    // The attempts: 200s, delivered, for every event the receiver answered
    // 200 (the endpoint for all: its records at /all).
    let (total, results) = attempts(&api, &all).await;
    let all_records: Vec<&Value> = records.iter().filter(|record| record["path"] == "/all").collect();
    assert_eq!(total as usize, all_records.len(), "one attempt per request: {results:#?}");
    let mut by_event: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for attempt in &results {
        by_event.entry(text(&attempt["event_id"])).or_default().push(attempt);
        assert!(attempt["duration_ms"].as_u64().is_some(), "{attempt}");
        match attempt["status_code"].as_u64() {
            Some(200) => assert!(attempt["error"].is_null(), "{attempt}"),
            Some(400) => assert_eq!(attempt["error"], "the receiver answered 400"),
            _ => panic!("an attempt neither 200 nor 400: {attempt}"),
        }
    }
    for record in &all_records {
        let id = text(&record["id"]);
        let listed = by_event.get(&id).unwrap_or_else(|| panic!("{id} is not in the attempts: {results:#?}"));
        for attempt in listed {
            assert_eq!(attempt["state"], "delivered", "{attempt}");
            assert!(attempt["next_attempt_at"].is_null(), "{attempt}");
        }
        assert!(listed.iter().any(|attempt| attempt["status_code"] == 200), "{id}: {listed:#?}");
    }
    assert_eq!(results.iter().filter(|attempt| attempt["status_code"] == 400).count(), unverified);

    // No secret in any delivery nor in keysd's log: the keys', the
    // endpoints' and the token (the endpoints' secrets were in their create
    // and rotate answers only).
    let log = server_log_after_stop(server, &backend).await;
    let delivered_text = receiver.raw_log();
    let secrets = [
        &key_secret,
        &foreign_key_secret,
        &after_new_secret,
        &after_old_secret,
        &elsewhere_secret,
        &limited_secret,
        &old_secret,
        &new_secret,
        &keys_secret,
        &token,
    ];
    for secret in secrets {
        let body = secret.trim_start_matches("whsec_");
        assert!(!delivered_text.contains(body), "a secret was delivered");
        assert!(!log.contains(body), "a secret reached keysd's log");
    }
    assert!(!delivered_text.contains("whsec_") && !log.contains("whsec_"), "an endpoint secret leaked");
    backend.cleanup().await;
}

/// Stops `server` and returns what every keysd of `backend` logged.
async fn server_log_after_stop(server: Server, backend: &TestDb) -> String {
    server.stop().await;
    keysd_logs(backend)
}

on_both_backends! {
    webhooks_journey => sqlite_webhooks_journey, postgres_webhooks_journey;
}

// ------------------------------------------------------------------ retries

/// A receiver answering 500: the attempt is listed (500, pending, the next
/// attempt 5–6 s later, as RETRY_SCHEDULE says) and made again
/// automatically with the same `webhook-id`; once the receiver answers 200
/// a manual retry delivers it at once, the attempts say delivered, and
/// nothing more is sent; a manual retry of a delivered event sends it once
/// more, still with the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_then_recovers_gets_the_same_webhook_id() {
    let backend = TestDb::sqlite();
    let receiver = Receiver::start(backend.dir(), "receiver").await;
    receiver.answer("500");
    let server = Server::start(&backend, &[PRIVATE]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);
    let body = json!({"url": receiver.url("/hook"), "events": ["api_key.generated"]});
    let (endpoint, secret) = create_endpoint(&server, &token, body).await;
    receiver.trust(&[&secret]);

    let (key_id, _) = api_key(&api, "staging", "retried").await;
    let records = receiver.wait_for("the first attempt", Duration::from_secs(5), |records| !records.is_empty()).await;
    assert_eq!(records.len(), 1, "{}", summary(&records));
    let first = &records[0];
    assert_well_formed(first);
    assert_eq!((&first["answered"], &first["data"]["target"]["id"]), (&json!(500), &json!(key_id)));
    let event_id = text(&first["id"]);

    let listed = wait_for_attempts(&api, &endpoint, Duration::from_secs(2), |results| !results.is_empty()).await;
    let attempt = &listed[0];
    assert_eq!(attempt["event_id"], event_id.as_str());
    assert_eq!((&attempt["status_code"], &attempt["state"]), (&json!(500), &json!("pending")), "{attempt}");
    assert_eq!(attempt["error"], "the receiver answered 500");
    let (attempted_at, next) = (parse_time(&attempt["attempted_at"]), parse_time(&attempt["next_attempt_at"]));
    let wait = (next - attempted_at).as_seconds_f64();
    assert!((5.0..=6.0 + 1e-3).contains(&wait), "the first backoff is 5 s + up to 20 %: {wait} s");
    assert!(next - time::OffsetDateTime::now_utc() < time::Duration::seconds(60));

    // The automatic retry, 5–6 s after the first (plus a poll of 250 ms).
    let records = receiver.wait_for("the automatic retry", Duration::from_secs(10), |records| records.len() >= 2).await;
    let second = &records[1];
    assert_well_formed(second);
    assert_eq!((&second["id"], &second["answered"]), (&json!(event_id), &json!(500)));
    let gap = second["received_at"].as_f64().expect("time") - first["received_at"].as_f64().expect("time");
    assert!((4.9..7.5).contains(&gap), "the automatic retry came {gap:.2} s after the first attempt");
    let listed = wait_for_attempts(&api, &endpoint, Duration::from_secs(2), |results| results.len() == 2).await;
    let wait = (parse_time(&listed[0]["next_attempt_at"]) - parse_time(&listed[0]["attempted_at"])).as_seconds_f64();
    assert!((30.0..=36.0 + 1e-3).contains(&wait), "the second backoff is 30 s + up to 20 %: {wait} s");

    // The receiver recovers; a manual retry delivers at once.
    receiver.answer("200");
    let retry = format!("/v1/webhook_endpoint/{endpoint}/deliveries/{event_id}/retry/");
    let asked = Instant::now();
    assert_eq!(api.call(Method::POST, &retry, None).await.status, StatusCode::OK);
    let records = receiver.wait_for("the manual retry", Duration::from_secs(2), |records| records.len() >= 3).await;
    eprintln!("the manual retry arrived {:?} after it was asked for", asked.elapsed());
    assert_eq!((&records[2]["id"], &records[2]["answered"]), (&json!(event_id), &json!(200)));
    assert_well_formed(&records[2]);
    let listed = wait_for_attempts(&api, &endpoint, Duration::from_secs(2), |results| results.len() == 3).await;
    assert_eq!((&listed[0]["status_code"], &listed[0]["state"]), (&json!(200), &json!("delivered")), "{listed:#?}");
    assert!(listed[0]["next_attempt_at"].is_null() && listed[0]["error"].is_null());
    // Every attempt's row shows the delivery's state now.
    assert!(listed.iter().all(|attempt| attempt["state"] == "delivered"), "{listed:#?}");

    // Nothing more (the automatic retry due in ~30 s was superseded).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let records = receiver.records();
    assert_eq!(records.len(), 3, "{}", summary(&records));
    let answered_200 = records.iter().filter(|record| record["answered"] == 200).count();
    assert_eq!(answered_200, 1, "duplicates delivered: {}", answered_200 - 1);
    assert!(records.iter().all(|record| record["id"] == event_id.as_str()));

    // A manual retry of a delivered event sends it again: same id.
    assert_eq!(api.call(Method::POST, &retry, None).await.status, StatusCode::OK);
    let records = receiver.wait_for("a retry of a delivered event", Duration::from_secs(2), |r| r.len() >= 4).await;
    assert_eq!((&records[3]["id"], &records[3]["answered"]), (&json!(event_id), &json!(200)));
    server.stop().await;
    backend.cleanup().await;
}

// ------------------------------------------------------------------ kill -9

/// `kill -9` loses no delivery: one event whose first attempt failed (500)
/// waits for its retry, another's attempt is in flight (the receiver holds
/// it 4 s) when keysd is killed; a new keysd on the database delivers both
/// once the claim of the killed process runs out (30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_kill_9_loses_no_delivery() {
    let backend = TestDb::postgres().await;
    let receiver = Receiver::start(backend.dir(), "receiver").await;
    receiver.answer("500");
    let first = Server::start(&backend, &[PRIVATE]).await;
    let token = first.token.clone().expect("bootstrap token");
    let api = first.client(&token);
    let body = json!({"url": receiver.url("/hook"), "events": ["api_key.generated"]});
    let (endpoint, secret) = create_endpoint(&first, &token, body).await;
    receiver.trust(&[&secret]);

    // Failed once: pending, its retry 5–6 s later.
    let (failed_key, _) = api_key(&api, "staging", "failed-once").await;
    receiver.wait_for("the failing attempt", Duration::from_secs(5), |records| !records.is_empty()).await;
    // In flight: the receiver holds the request 4 s.
    receiver.answer("200 4");
    let (held_key, _) = api_key(&api, "staging", "in-flight").await;
    let started = Instant::now();
    loop {
        let arrivals = receiver.arrivals();
        if arrivals.len() >= 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the second attempt never arrived: {arrivals:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.signal("KILL");
    let killed_at = Instant::now();
    let killed_at_unix = unix_now();
    first.exit(Duration::from_secs(10)).await;
    receiver.answer("200");

    let second = Server::start(&backend, &[PRIVATE]).await;
    let api = second.client(&token);
    // Sent by the new process: arrived after the kill, answered 200.
    let after_kill = |records: &[Value], key: &str| -> usize {
        let sent = records.iter().filter(|record| record["data"]["target"]["id"] == key);
        sent.filter(|record| record["received_at"].as_f64().unwrap_or(0.0) > killed_at_unix)
            .filter(|record| record["answered"] == 200)
            .count()
    };
    let records = receiver
        .wait_for("both events after the kill", Duration::from_secs(45), |records| {
            after_kill(records, &failed_key) >= 1 && after_kill(records, &held_key) >= 1
        })
        .await;
    eprintln!("both delivered {:?} after the kill: {}", killed_at.elapsed(), summary(&records));
    // The new process recorded both as delivered.
    let listed = wait_for_attempts(&api, &endpoint, Duration::from_secs(5), |results| {
        let delivered: BTreeSet<&str> = results
            .iter()
            .filter(|attempt| attempt["status_code"] == 200)
            .filter_map(|attempt| attempt["event_id"].as_str())
            .collect();
        delivered.len() == 2
    })
    .await;
    assert!(listed.iter().all(|attempt| attempt["state"] == "delivered"), "{listed:#?}");
    // Nothing was sent twice by the new process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = receiver.records();
    assert_eq!(after_kill(&records, &failed_key), 1, "{}", summary(&records));
    assert_eq!(after_kill(&records, &held_key), 1, "{}", summary(&records));
    for record in &records {
        assert_well_formed(record);
    }
    second.stop().await;
    backend.cleanup().await;
}

fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

// ------------------------------------------------------------------ replicas

/// `count` replicas on one PostgreSQL, one endpoint, a receiver that never
/// fails: 1,000 keys made concurrently through every replica's API; each
/// event arrives exactly once, and each attempt is listed once.
async fn each_event_once(count: usize) {
    const EVENTS: usize = 1_000;
    let backend = TestDb::postgres().await;
    let receiver = Receiver::start(backend.dir(), "receiver").await;
    let first = Server::start(&backend, &[PRIVATE]).await;
    let token = first.token.clone().expect("bootstrap token");
    let mut servers = vec![first];
    for _ in 1..count {
        servers.push(Server::start(&backend, &[PRIVATE]).await);
    }
    let body = json!({"url": receiver.url("/hook"), "events": ["api_key.generated"]});
    let (endpoint, secret) = create_endpoint(&servers[0], &token, body).await;
    receiver.trust(&[&secret]);

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for server in &servers {
        for _ in 0..4 {
            let (api, next) = (server.client(&token), Arc::clone(&next));
            workers.push(tokio::spawn(async move {
                let mut made = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= EVENTS {
                        return made;
                    }
                    let workspace = if n % 2 == 0 { "staging" } else { "production" };
                    made.push(api_key(&api, workspace, &format!("key-{n}")).await.0);
                }
            }));
        }
    }
    let mut keys = BTreeSet::new();
    for worker in workers {
        keys.extend(worker.await.expect("worker"));
    }
    assert_eq!(keys.len(), EVENTS);
    let made = started.elapsed();
    receiver
        .wait_for("every event", Duration::from_secs(90), |records| {
            records.iter().filter_map(|record| record["id"].as_str()).collect::<BTreeSet<_>>().len() >= EVENTS
        })
        .await;
    let drained = started.elapsed();
    // A duplicate would come with the original, or a claim (30 s) later:
    // the former is what overlapping claims make; wait a little for it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let records = receiver.records();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        *seen.entry(record["id"].as_str().expect("webhook-id")).or_default() += 1;
    }
    let duplicates: Vec<(&&str, &usize)> = seen.iter().filter(|(_, times)| **times > 1).collect();
    eprintln!(
        "{count} replicas: {EVENTS} keys made in {made:?}, all {} events received after {drained:?}; {} requests, {} \
         duplicates",
        seen.len(),
        records.len(),
        records.len() - seen.len()
    );
    assert!(
        duplicates.is_empty(),
        "{} duplicate deliveries (ids sent more than once: {:?})",
        records.len() - seen.len(),
        duplicates.iter().take(20).collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), EVENTS, "only the keys' events");
    let targets: BTreeSet<String> = records.iter().map(|record| text(&record["data"]["target"]["id"])).collect();
    assert_eq!(targets, keys, "each key's event arrived");
    for record in &records {
        assert_well_formed(record);
        assert_eq!((&record["answered"], &record["type"]), (&json!(200), &json!("api_key.generated")));
    }
    let api = servers[count - 1].client(&token);
    let (total, results) = attempts(&api, &endpoint).await;
    assert_eq!(total as usize, EVENTS, "one attempt per event");
    assert!(results.iter().all(|attempt| attempt["status_code"] == 200 && attempt["state"] == "delivered"));
    for server in servers {
        server.stop().await;
    }
    backend.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_deliver_each_event_once() {
    each_event_once(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_replicas_deliver_each_event_once() {
    each_event_once(3).await;
}

// ------------------------------------------------------------------ SSRF

/// Without `--webhook-allow-private-destinations`: `http://` is refused at
/// creation (400); `https://` names of the loopback are accepted at
/// creation but refused when sent to, before any connection (the listener
/// they name never sees one), and the attempts say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_to_a_name_of_the_loopback_are_refused() {
    let backend = TestDb::sqlite();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let port = listener.local_addr().expect("address").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    let accepting = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let server = Server::start(&backend, &[]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);

    let http = json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["*"]});
    let refused = api.call(Method::POST, "/v1/webhook_endpoint/", Some(http)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.body["type"], "ValidationError");
    assert!(refused.body["message"].as_str().is_some_and(|message| message.contains("https://")), "{}", refused.body);

    let mut endpoints = Vec::new();
    for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]", "127.1"] {
        let body = json!({"url": format!("https://{host}:{port}/hook"), "events": ["workspace.created"]});
        endpoints.push((host, create_endpoint(&server, &token, body).await.0));
    }
    // The PATCH of a URL to http:// is refused too.
    let patch = json!({"url": format!("http://localhost:{port}/hook")});
    let patched = api.call(Method::PATCH, &format!("/v1/webhook_endpoint/{}/", endpoints[0].1), Some(patch)).await;
    assert_eq!(patched.status, StatusCode::BAD_REQUEST, "{}", patched.body);

    workspace(&api, "Target").await;
    for (host, endpoint) in &endpoints {
        let listed = wait_for_attempts(&api, endpoint, Duration::from_secs(5), |results| !results.is_empty()).await;
        let attempt = &listed[0];
        assert!(attempt["status_code"].is_null(), "{host}: {attempt}");
        let error = text(&attempt["error"]);
        eprintln!("{host}: {error}");
        assert!(error.contains("127.0.0.1") || error.contains("::1"), "{host}: {error}");
        assert!(error.contains("refused"), "{host}: {error}");
        assert_eq!(attempt["state"], "pending", "{host}: refused attempts are retried: {attempt}");
        let got = api.call(Method::GET, &format!("/v1/webhook_endpoint/{endpoint}/"), None).await;
        assert!(got.body["failing_since"].is_string(), "{host}: {}", got.body);
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a connection reached the loopback");
    accepting.abort();
    server.stop().await;
    backend.cleanup().await;
}

// ------------------------------------------------------------------ input

/// What a 400 of the SuprSend dialect looks like: `message` is the JSON
/// text of the `detail` array.
fn assert_validation(reply: &Reply, mentions: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!((&reply.body["code"], &reply.body["error_code"]), (&json!(400), &json!("error")), "{}", reply.body);
    assert_eq!(reply.body["type"], "ValidationError", "{}", reply.body);
    let detail = reply.body["detail"].as_array().expect("detail is a list");
    assert_eq!(reply.body["message"], serde_json::to_string(detail).expect("JSON"), "{}", reply.body);
    assert!(
        reply.body["message"].as_str().is_some_and(|message| message.contains(mentions)),
        "{mentions}: {}",
        reply.body
    );
}

/// Refused input (400 in the dialect's shape), roles (403), unknown ids
/// (404), and a secret shown by no answer but create and rotate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_endpoints_refuse_bad_input_weak_roles_and_unknown_ids() {
    let backend = TestDb::sqlite();
    let server = Server::start(&backend, &[]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);
    // An endpoint nothing is sent to (a refused destination, a type never raised here).
    let url = "https://127.0.0.1:9/hook";
    let post = |body: Value| api.call(Method::POST, "/v1/webhook_endpoint/", Some(body));

    assert_validation(&post(json!({"url": url, "events": ["*"], "colour": "red"})).await, "colour");
    assert_validation(&post(json!({"url": url, "events": ["api_key.exploded"]})).await, "api_key.exploded");
    assert_validation(&post(json!({"url": url, "events": []})).await, "");
    assert_validation(&post(json!({"url": url, "events": ["*", "api_key.leaked"]})).await, "*");
    assert_validation(&post(json!({"url": "not a url", "events": ["*"]})).await, "https://");
    assert_validation(&post(json!({"url": "ftp://example.com/hook", "events": ["*"]})).await, "https://");
    assert_validation(&post(json!({"url": "https://user:pw@example.com/hook", "events": ["*"]})).await, "password");
    assert_validation(
        &post(json!({"url": url, "events": ["*"], "workspaces": ["no-such-place"]})).await,
        "no-such-place",
    );
    assert_validation(&post(json!({"events": ["*"]})).await, "url");
    assert_validation(&post(json!({"url": url})).await, "events");
    assert_validation(&post(json!({"url": url, "events": "*"})).await, "");
    // Nothing was made.
    let listed = api.call(Method::GET, "/v1/webhook_endpoint/", None).await;
    assert_eq!((listed.status, &listed.body["meta"]["count"]), (StatusCode::OK, &json!(0)), "{}", listed.body);

    let body = json!({"url": url, "events": ["api_key.leaked"], "workspaces": ["staging"], "description": "quiet"});
    let (endpoint, secret) = create_endpoint(&server, &token, body).await;
    let path = format!("/v1/webhook_endpoint/{endpoint}/");

    // No answer but create and rotate shows the secret.
    let got = api.call(Method::GET, &path, None).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["description"], "quiet");
    let listed = api.call(Method::GET, "/v1/webhook_endpoint/", None).await;
    assert_eq!(listed.body["results"][0]["id"], endpoint.as_str());
    let patched = api.call(Method::PATCH, &path, Some(json!({"status": "disabled"}))).await;
    assert_eq!((patched.status, &patched.body["status"]), (StatusCode::OK, &json!("disabled")), "{}", patched.body);
    for answer in [&got.body, &listed.body, &patched.body] {
        assert!(!answer.to_string().contains("whsec_") && !answer.to_string().contains(&secret), "{answer}");
        assert!(!answer.to_string().contains("\"secret\""), "{answer}");
    }

    // Bad patches.
    for (patch, mentions) in [
        (json!({"status": "paused"}), ""),
        (json!({"url": null}), "url"),
        (json!({"events": null}), "events"),
        (json!({"events": []}), ""),
        (json!({"workspaces": ["no-such-place"]}), "no-such-place"),
        (json!({"secret": "whsec_mine"}), "secret"),
    ] {
        assert_validation(&api.call(Method::PATCH, &path, Some(patch)).await, mentions);
    }

    // Roles: only admin reaches webhooks.
    for role in ["manage", "verify"] {
        let made = api.call(Method::POST, "/v1/service_token/", Some(json!({"name": role, "role": role}))).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        let weak = server.client(&text(&made.body["token"]));
        for (method, path, body) in [
            (Method::GET, "/v1/webhook_endpoint/".to_owned(), None),
            (Method::POST, "/v1/webhook_endpoint/".to_owned(), Some(json!({"url": url, "events": ["*"]}))),
            (Method::GET, path.clone(), None),
            (Method::PATCH, path.clone(), Some(json!({"status": "enabled"}))),
            (Method::DELETE, path.clone(), None),
            (Method::POST, format!("{path}rotate_secret/"), None),
            (Method::GET, format!("{path}deliveries/"), None),
            (Method::POST, format!("{path}deliveries/evt_1/retry/"), None),
        ] {
            let refused = weak.call(method.clone(), &path, body).await;
            assert_eq!(refused.status, StatusCode::FORBIDDEN, "{role} {method} {path}: {}", refused.body);
            assert_eq!(refused.body["type"], "PermissionDenied", "{}", refused.body);
            assert!(!refused.body.to_string().contains("whsec_"));
        }
    }

    // Unknown ids: well formed or not, 404.
    for unknown in ["we_01JAAAAAAAAAAAAAAAAAAAAAAA", "we_nope", "nope"] {
        let path = format!("/v1/webhook_endpoint/{unknown}/");
        for (method, path, body) in [
            (Method::GET, path.clone(), None),
            (Method::PATCH, path.clone(), Some(json!({"status": "enabled"}))),
            (Method::DELETE, path.clone(), None),
            (Method::POST, format!("{path}rotate_secret/"), None),
            (Method::GET, format!("{path}deliveries/"), None),
            (Method::POST, format!("{path}deliveries/evt_1/retry/"), None),
        ] {
            let missing = api.call(method.clone(), &path, body).await;
            assert_eq!(missing.status, StatusCode::NOT_FOUND, "{method} {path}: {}", missing.body);
            assert_eq!(missing.body["type"], "NotFound", "{}", missing.body);
        }
    }
    // An event the endpoint never had.
    let retry = api.call(Method::POST, &format!("{path}deliveries/evt_999999/retry/"), None).await;
    assert_eq!(retry.status, StatusCode::NOT_FOUND, "{}", retry.body);

    // Deleted: gone.
    assert_eq!(api.call(Method::DELETE, &path, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.call(Method::GET, &path, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.call(Method::DELETE, &path, None).await.status, StatusCode::NOT_FOUND);
    server.stop().await;
    backend.cleanup().await;
}
