//! `keysd audit export` and `keysd audit prune`, the real binary on a real
//! SQLite file and PostgreSQL database: NDJSON oldest first over 10^4
//! events, streamed (an event written while the export runs reaches its
//! end: nothing was read ahead into memory), and prune's count and event.

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::e2e::{keysd, keysd_refused};

const BINARY: &str = env!("CARGO_BIN_EXE_keysd");

/// The bulk events of a test: as many as the export figure uses
/// for its correctness check.
const EVENTS: usize = 10_000;

/// `EVENTS` events of `organisation` in 2020, one microsecond apart, written
/// in one statement below the store (as the bench does).
async fn bulk_events(db: &keys_testkit::TestDb, organisation: &str) {
    let statement = match db.kind {
        keys_testkit::Kind::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < CAST($2 AS INTEGER)) \
             INSERT INTO audit_events (organisation_id, actor_name, actor_email, action, target_id, at) \
             SELECT $1, 'Bulk', 'bulk@example.com', 'api_key.generated', 'ws_apik_' || i, 1577836800000000 + i FROM n"
        }
        keys_testkit::Kind::Postgres => {
            "INSERT INTO audit_events (organisation_id, actor_name, actor_email, action, target_id, at) \
             SELECT $1, 'Bulk', 'bulk@example.com', 'api_key.generated', 'ws_apik_' || i, \
             timestamptz '2020-01-01 00:00:00Z' + i * interval '1 microsecond' FROM generate_series(1, $2::int) i"
        }
    };
    let written = db.execute(statement, &[organisation, &EVENTS.to_string()]).await.expect("bulk insert");
    assert_eq!(written, EVENTS as u64);
}

async fn export_streams_oldest_first(db: keys_testkit::TestDb) {
    let organisation = keysd(&db, &["org", "create", "acme"]).await;
    bulk_events(&db, &organisation).await;
    let mut export = Command::new(BINARY)
        .args(["audit", "export", "--org", "acme", "--database-url", db.url()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("export starts");
    let mut lines = BufReader::new(export.stdout.take().expect("stdout")).lines();
    let first = lines.next_line().await.expect("read").expect("a first line");
    // The export is now blocked on the pipe, its first batch in hand. An
    // event written now is after every other; it reaches the export only if
    // the rest of the trail was not read yet.
    let late = keysd(&db, &["workspace", "create", "--org", "acme", "late"]).await;
    let mut events = vec![serde_json::from_str::<Value>(&first).expect("NDJSON")];
    while let Some(line) = lines.next_line().await.expect("read") {
        events.push(serde_json::from_str(&line).unwrap_or_else(|_| panic!("not one JSON value a line: {line}")));
    }
    assert!(export.wait().await.expect("export ends").success());

    assert_eq!(events.len(), EVENTS + 2, "the bulk events, the organisation's creation, the late workspace");
    assert_eq!(events[0]["target"]["id"], "ws_apik_1");
    assert_eq!(events[EVENTS - 1]["target"]["id"], format!("ws_apik_{EVENTS}"));
    assert_eq!(events[EVENTS]["action"], "organisation.created");
    let last = &events[EVENTS + 1];
    assert_eq!((&last["action"], &last["target"]["id"]), (&Value::from("workspace.created"), &Value::from(late)));
    let ids: Vec<u64> =
        events.iter().map(|event| event["id"].as_str().expect("id")[4..].parse().expect("number")).collect();
    // Ordered by time, then id (the organisation's event came first in id).
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len(), "an event twice");
    let times: Vec<&str> = events.iter().map(|event| event["at"].as_str().expect("at")).collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "not oldest first");

    // `--since` / `--until` bound it.
    let window = keysd(
        &db,
        &[
            "audit",
            "export",
            "--org",
            "acme",
            "--since",
            "2020-01-01T00:00:00.000101Z",
            "--until",
            "2020-01-01T00:00:00.000111Z",
        ],
    )
    .await;
    let targets: Vec<String> = window
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json")["target"]["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(targets, (101..111).map(|i| format!("ws_apik_{i}")).collect::<Vec<_>>());
    db.cleanup().await;
}

async fn prune_counts_and_records(db: keys_testkit::TestDb) {
    let organisation = keysd(&db, &["org", "create", "acme"]).await;
    keysd(&db, &["org", "create", "globex"]).await;
    bulk_events(&db, &organisation).await;
    assert_eq!(
        keysd(&db, &["audit", "prune", "--org", "acme", "--before", "2020-01-01T00:00:00.005001Z"]).await,
        "5000"
    );
    let left = keysd(&db, &["audit", "export", "--org", &organisation]).await;
    let events: Vec<Value> = left.lines().map(|line| serde_json::from_str(line).expect("json")).collect();
    assert_eq!(events.len(), EVENTS - 5000 + 2);
    assert_eq!(events[0]["target"]["id"], "ws_apik_5001");
    let pruned = events.last().expect("the prune's event");
    assert_eq!(pruned["action"], "audit.pruned");
    assert_eq!(pruned["target"], serde_json::json!({"type": "organisation", "id": organisation}));
    assert_eq!(keysd(&db, &["audit", "export", "--org", "globex"]).await.lines().count(), 1);
    keysd_refused(&db, &["audit", "prune", "--org", "acme", "--before", "yesterday"]).await;
    db.cleanup().await;
}

keys_testkit::on_both_backends! {
    export_streams_oldest_first => sqlite_audit_export_streams_oldest_first, postgres_audit_export_streams_oldest_first;
    prune_counts_and_records => sqlite_audit_prune_counts_and_records, postgres_audit_prune_counts_and_records;
}
