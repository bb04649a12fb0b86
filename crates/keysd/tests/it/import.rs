//! Import of API keys made elsewhere, end to end on the real binary: the
//! API's `POST /v1/{ws}/ws_api_key/import/` (its answers, its masks, its
//! 1 MiB body limit, which no other route shares), verification of the
//! imported keys by their original text, `keysd import` from NDJSON
//! (10^4 keys, a rerun that skips them all, a bad line), and two
//! PostgreSQL replicas, one of which cached the miss of a key the other
//! then imports.

use std::io::Write as _;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use keys_crypto::secret::sha256_digest;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::e2e::{keysd, keysd_refused, text, Server};

type Backend = keys_testkit::TestDb;

/// A key in another system's format: `ext_` and 32 random hex digits.
fn foreign_key() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    format!("ext_{}", bytes.iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

fn import_path(workspace: &str) -> String {
    format!("/v1/{workspace}/ws_api_key/import/")
}

/// The status code `serve` answers to a `POST` of `path` that declares a
/// body of `length` bytes and sends none (a refusal comes before the body
/// is read; a client that sent a whole megabyte would be cut off).
async fn declared_length_status(server: &Server, token: &str, path: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: ServiceToken {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("send");
    let mut answer = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer)).await.expect("answered");
    let answer = String::from_utf8_lossy(&answer[..read.expect("read")]).into_owned();
    answer.split(' ').nth(1).unwrap_or_default().to_owned()
}

async fn api_import_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let api = server.client(server.token.as_deref().expect("bootstrap token"));
    let (plain, hashed) = (foreign_key(), foreign_key());
    let digest = sha256_digest(hashed.as_bytes()).to_hex();
    assert_eq!(api.verdict(&plain).await, "unknown_key", "a foreign text is looked up, not refused unread");

    let body = json!({"keys": [
        {"key": plain, "name": "from stripe", "scopes": ["orders:read"], "external_id": "cus_1"},
        {"sha256": digest.to_uppercase(), "name": "hash only", "meta": {"plan": "pro"}},
    ]});
    let imported = api.call(Method::POST, &import_path("staging"), Some(body.clone())).await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let results = imported.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["masked_api_key"], format!("{}*****", &plain[..9]), "a quarter of 36 characters");
    assert_eq!(results[1]["masked_api_key"], format!("imported_{}*****", &digest[..6]));
    assert_eq!((&results[0]["scopes"], &results[1]["meta"]), (&json!(["orders:read"]), &json!({"plan": "pro"})));
    let answer = imported.body.to_string();
    assert!(!answer.contains(&plain[9..]) && !answer.contains(&hashed) && !answer.contains(&digest[6..]), "{answer}");
    assert!(results.iter().all(|key| key.get("api_key").is_none()), "no secret in the answer");
    let got = api.call(Method::GET, &format!("/v1/staging/ws_api_key/{}/", text(&results[0]["id"])), None).await;
    assert_eq!(got.body, results[0], "GET shows what the import answered");
    for text in [&plain, &hashed] {
        assert_eq!(api.verdict(text).await, "valid");
    }

    // Again: a 409 naming the first entry; the same key into another
    // workspace as well.
    for workspace in ["staging", "production"] {
        let again = api.call(Method::POST, &import_path(workspace), Some(body.clone())).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert_eq!((&again.body["code"], &again.body["type"]), (&json!(409), &json!("Conflict")));
        assert_eq!(again.body["message"], "keys[0]: this key is already stored");
    }

    // A bad entry: a 400 naming it, and nothing of the batch stored.
    let fresh = foreign_key();
    let refusals = [
        (json!([{"key": fresh, "name": "ok"}, {"key": "too-short", "name": "bad"}]), "keys[1].key: must be 16 to 256"),
        (json!([{"key": fresh, "name": "ok"}, {"key": "with a space inside it", "name": "x"}]), "keys[1].key: must be"),
        (json!([{"key": fresh, "name": "ok"}, {"sha256": "abc", "name": "bad"}]), "keys[1].sha256: must be 64 hex"),
        (json!([{"name": "neither"}]), "keys[0]: exactly one of key and sha256"),
        (json!([{"key": fresh, "sha256": digest, "name": "both"}]), "keys[0]: exactly one of key and sha256"),
        (json!([{"key": fresh}]), "keys[0]: name is required"),
        (json!([{"key": fresh, "name": "x", "expires_at": "2001-01-01T00:00:00Z"}]), "keys[0]: "),
        (json!([{"key": fresh, "name": "x", "colour": "red"}]), "keys[0]"),
        (json!([{"key": 5, "name": "x"}]), "keys[0].key"),
        (json!([]), "keys must hold 1 to 1000 entries"),
    ];
    for (keys, expected) in refusals {
        let refused = api.call(Method::POST, &import_path("staging"), Some(json!({ "keys": keys }))).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{keys}: {}", refused.body);
        assert_eq!(refused.body["type"], "ValidationError");
        let detail = text(&refused.body["detail"][0]);
        assert!(detail.starts_with(expected), "{keys}: {detail}");
        assert!(!detail.contains(&fresh), "the key is never echoed: {detail}");
    }
    assert_eq!(api.verdict(&fresh).await, "unknown_key");

    // Bodies: the import takes more than 64 KiB, up to 1 MiB; every other
    // route keeps its 64 KiB.
    let many: Vec<Value> = (0..300)
        .map(|index| json!({"key": format!("{}{}", foreign_key(), "x".repeat(200)), "name": format!("k{index}")}))
        .collect();
    let large = json!({ "keys": many });
    assert!(large.to_string().len() > 64 * 1024);
    let created = api.call(Method::POST, &import_path("production"), Some(large.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["results"].as_array().map(Vec::len), Some(300));
    let token = server.token.as_deref().expect("token");
    assert_eq!(declared_length_status(&server, token, "/v1/staging/ws_api_key/", 64 * 1024 + 1).await, "413");
    assert_eq!(declared_length_status(&server, token, &import_path("staging"), (1 << 20) + 1).await, "413");

    // One audit event per call, naming the keys, never a secret.
    let events = api.call(Method::GET, "/v1/audit_event/?action=api_key.imported", None).await;
    let events = events.body["results"].as_array().expect("events").clone();
    assert_eq!(events.len(), 2);
    let first = text(&events[1]["target"]["id"]);
    assert_eq!(first, format!("count=2 ids={},{}", text(&results[0]["id"]), text(&results[1]["id"])));
    let large = text(&events[0]["target"]["id"]);
    assert!(large.starts_with("count=300 ids=ws_apik_") && large.ends_with(",…"), "{large}");
    assert_eq!(large.matches("ws_apik_").count(), 50, "at most 50 ids");
    server.stop().await;
    // No key text anywhere in the logs (debug included) nor, on SQLite, in
    // the database's files.
    for entry in std::fs::read_dir(backend.dir()).expect("directory").flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        for secret in [&plain, &hashed, &fresh] {
            let found = bytes.windows(secret.len()).any(|window| window == secret.as_bytes());
            assert!(!found, "{} holds an imported key's text", entry.path().display());
        }
    }
    backend.cleanup().await;
}

/// `keysd import` of 10^5 keys while `serve` runs (the workspace's cap
/// raised for it, as an operator would): all imported, a rerun imports
/// none and skips them all, a sample verifies by its text; `-` reads
/// stdin; a bad line stops the import with its number after storing the
/// lines before it.
async fn cli_import_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let api = server.client(server.token.as_deref().expect("bootstrap token"));
    let keys: Vec<String> = (0..100_000).map(|_| foreign_key()).collect();
    let mut ndjson = String::new();
    for (index, key) in keys.iter().enumerate() {
        let entry = if index % 10 == 0 {
            json!({"sha256": sha256_digest(key.as_bytes()).to_hex(), "name": format!("hashed {index}")})
        } else {
            json!({"key": key, "name": format!("imported {index}"), "external_id": format!("user_{index}")})
        };
        ndjson.push_str(&format!("{entry}\n"));
    }
    let file = backend.dir().join("keys.ndjson");
    std::fs::write(&file, &ndjson).expect("write");
    let path = file.to_str().expect("utf-8 path");
    let cap = ["--max-keys-per-workspace", "100000"];
    let import = ["import", "--org", "default", "--workspace", "staging", path, cap[0], cap[1]];
    // The default cap (10,000 live keys) refuses the whole batch that
    // would pass it, naming it.
    let capped = keysd_refused(&backend, &["import", "--org", "default", "--workspace", "staging", path]).await;
    assert!(capped.contains("imported 10000, skipped 0"), "{capped}");
    assert_eq!(keysd(&backend, &import).await, "imported 90000, skipped 10000");
    assert_eq!(keysd(&backend, &import).await, "imported 0, skipped 100000");
    for index in [0, 1, 49_999, 99_990, 99_999] {
        assert_eq!(api.verdict(&keys[index]).await, "valid", "line {}", index + 1);
    }
    let listed = api.call(Method::GET, "/v1/staging/ws_api_key/?limit=1", None).await;
    assert_eq!(listed.body["meta"]["count"], 100_000);

    // A bad line (2) after a good one: line 1 is stored, the rest is not.
    let (good, later) = (foreign_key(), foreign_key());
    let lines = format!(
        "{}\n{{\"key\": \"short\", \"name\": \"bad\"}}\n{}\n",
        json!({"key": good, "name": "good"}),
        json!({"key": later, "name": "later"})
    );
    let bad_file = backend.dir().join("bad.ndjson");
    std::fs::write(&bad_file, &lines).expect("write");
    let bad_path = bad_file.to_str().expect("utf-8 path");
    let refused = keysd_refused(&backend, &["import", "--org", "default", "--workspace", "production", bad_path]).await;
    assert!(refused.contains("line 2.key: must be 16 to 256"), "{refused}");
    assert!(refused.contains("imported 1, skipped 0"), "{refused}");
    assert_eq!((api.verdict(&good).await, api.verdict(&later).await), ("valid".to_owned(), "unknown_key".to_owned()));
    // A key another workspace holds stops it too, naming the line.
    let taken = format!("{}\n", json!({"key": keys[1], "name": "taken"}));
    std::fs::write(&bad_file, taken).expect("write");
    let refused = keysd_refused(&backend, &["import", "--org", "default", "--workspace", "production", bad_path]).await;
    assert!(refused.contains("line 1: this key is already stored in another workspace"), "{refused}");

    // Fixed, from stdin: the stored line is skipped, the rest imported.
    let fixed = lines.replace("{\"key\": \"short\", \"name\": \"bad\"}", "");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keysd"))
        .args(["import", "--org", "default", "--workspace", "production", "-", "--database-url", backend.url()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("keysd runs");
    child.stdin.take().expect("stdin").write_all(fixed.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("keysd exits");
    let since = Instant::now();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "imported 1, skipped 1\n");
    assert!(output.stderr.is_empty(), "no progress line when stderr is not a terminal");
    // `serve` cached the miss of `later` above: on SQLite no announcement
    // reaches it, its entry expires within the cache's time to live.
    api.turns_within_a_second(&later, "unknown_key", "valid", since).await;
    server.stop().await;
    backend.cleanup().await;
}

keys_testkit::on_both_backends! {
    api_import_journey => sqlite_api_import, postgres_api_import;
    cli_import_journey => sqlite_cli_import, postgres_cli_import;
}

/// Two replicas on one PostgreSQL whose cache entries answer for a second
/// (the most `--cache-ttl-ms` allows): replica B looks a foreign key up and
/// caches the miss; replica A imports it; B verifies it before that cached
/// miss could have expired: the import's announcement dropped it.
#[tokio::test]
async fn postgres_a_replica_sees_an_import_despite_its_cached_miss() {
    let backend = Backend::postgres().await;
    let long_cache = ["--cache-ttl-ms", "1000"];
    let first = Server::start(&backend, &long_cache).await;
    let token = first.token.clone().expect("bootstrap token");
    let second = Server::start(&backend, &long_cache).await;
    let (a, b) = (first.client(&token), second.client(&token));
    let key = foreign_key();
    // The miss B caches is read after `cached`: it answers until at least a
    // second after it.
    let cached = Instant::now();
    assert_eq!(b.verdict(&key).await, "unknown_key");
    let body = json!({"keys": [{"key": key, "name": "k"}]});
    let imported = a.call(Method::POST, &import_path("staging"), Some(body)).await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    b.turns_within_a_second(&key, "unknown_key", "valid", cached).await;
    assert!(cached.elapsed() < Duration::from_secs(1), "B's cached miss was dropped, not expired");
    first.stop().await;
    second.stop().await;
    backend.cleanup().await;
}
