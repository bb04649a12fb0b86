//! Usage counts end to end (docs/API.md, Usage; SPEC 13), through the real
//! binary: a known mix of valid and refused verifications is read back
//! exactly from `GET /v1/{workspace}/usage/` on SQLite with one process,
//! on PostgreSQL with two replicas whose counts add up, and after a
//! SIGTERM restart where only the shutdown's flush could have written.
//!
//! Counts arrive within an interval of their verification, so the reads
//! poll; a poll fails at once on any count above what was sent (counted
//! twice), and after a generous deadline on any below it (lost). The clock
//! is the system's: rows are summed per key and outcome, whichever
//! buckets they fell in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use keys_testkit::{on_both_backends, TestDb};
use rand_core::OsRng;
use serde_json::{json, Value};

use crate::e2e::{text, Api, Replicas, Server};

/// How long counts may take to arrive before a read gives up: many
/// intervals of one second, on two busy cores.
const PATIENCE: Duration = Duration::from_secs(30);

/// Counts per (key id, outcome); the key `-` in the workspace's totals.
type Counts = BTreeMap<(String, String), u64>;

fn counts(entries: &[(&str, &str, u64)]) -> Counts {
    entries.iter().map(|(key, outcome, count)| (((*key).to_owned(), (*outcome).to_owned()), *count)).collect()
}

/// The usage of `staging` for `query` (after `?`), summed per key and
/// outcome over every page.
async fn usage(api: &Api, query: &str) -> Counts {
    let mut sums = Counts::new();
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = api.call(Method::GET, &format!("/v1/staging/usage/?{query}{cursor}"), None).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        for row in page.body["results"].as_array().expect("results") {
            let key = row["key_id"].as_str().unwrap_or("-").to_owned();
            *sums.entry((key, text(&row["outcome"]))).or_default() += row["count"].as_u64().expect("count");
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return sums,
        }
    }
    panic!("{query}: the cursor never ends");
}

/// Polls `query` until it answers `expected`; fails at once on a count
/// above it, and after [`PATIENCE`] on one still below.
async fn usage_becomes(api: &Api, query: &str, expected: &Counts) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = usage(api, query).await;
        if &seen == expected {
            return;
        }
        for (key, count) in &seen {
            let sent = expected.get(key).copied().unwrap_or(0);
            assert!(*count <= sent, "{query}: {key:?} counted {count}, more than the {sent} sent: {seen:?}");
        }
        assert!(Instant::now() < deadline, "{query}: still {seen:?}, not {expected:?}, after {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A new API key of `staging` made through `api` with `body`: (id, secret).
async fn api_key(api: &Api, body: Value) -> (String, String) {
    let created = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    (text(&created.body["id"]), text(&created.body["api_key"]))
}

async fn disable(api: &Api, id: &str) {
    let disabled = api.call(Method::PATCH, &format!("/v1/staging/ws_api_key/{id}/disable/"), None).await;
    assert_eq!(disabled.status, StatusCode::ACCEPTED, "{}", disabled.body);
}

/// Verifies `secret` through `api` `times` times, each answering `expected`.
async fn verify_times(api: &Api, times: usize, secret: &str, expected: &str) {
    for time in 0..times {
        assert_eq!(api.verdict(secret).await, expected, "verification {time}");
    }
}

/// Verifies `secret` needing `scopes` `times` times, each answering `expected`.
async fn verify_scoped(api: &Api, times: usize, secret: &str, scopes: &[&str], expected: &str) {
    for time in 0..times {
        let answer = api.verify("api_key", json!({"api_key": secret, "required_scopes": scopes})).await;
        let verdict = if answer["valid"] == true { "valid".to_owned() } else { text(&answer["reason"]) };
        assert_eq!(verdict, expected, "verification {time}");
    }
}

fn unknown_key() -> String {
    keys_crypto::ApiKeySecret::generate(&mut OsRng).expose().to_owned()
}

/// SQLite, one process writing every second: 7 valid, 3 `key_disabled`
/// after a disable, 2 unknown (no key to count under) are read back
/// exactly, per key and in the totals; a restart adds nothing to them.
#[tokio::test]
async fn sqlite_usage_counts_arrive_exactly() {
    let backend = TestDb::sqlite();
    let server = Server::start(&backend, &["--usage-interval-seconds", "1"]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);
    let (used, used_secret) = api_key(&api, json!({"name": "used"})).await;
    let (disabled, disabled_secret) = api_key(&api, json!({"name": "disabled"})).await;
    verify_times(&api, 7, &used_secret, "valid").await;
    disable(&api, &disabled).await;
    verify_times(&api, 3, &disabled_secret, "key_disabled").await;
    verify_times(&api, 2, &unknown_key(), "unknown_key").await;

    let totals = counts(&[("-", "valid", 7), ("-", "key_disabled", 3)]);
    usage_becomes(&api, "granularity=minute", &totals).await;
    for granularity in ["hour", "day"] {
        assert_eq!(usage(&api, &format!("granularity={granularity}")).await, totals, "{granularity}");
    }
    assert_eq!(usage(&api, &format!("granularity=minute&key_id={used}")).await, counts(&[(&used, "valid", 7)]));
    let of_disabled = usage(&api, &format!("granularity=day&key_id={disabled}")).await;
    assert_eq!(of_disabled, counts(&[(&disabled, "key_disabled", 3)]));

    // Stopped (its shutdown flush has nothing left) and started again:
    // the same counts, nothing added twice.
    server.stop().await;
    let restarted = Server::start(&backend, &["--usage-interval-seconds", "1"]).await;
    let api = restarted.client(&token);
    assert_eq!(usage(&api, "granularity=minute").await, totals);
    restarted.stop().await;
}

/// PostgreSQL, two replicas: a known mix split across both (the same keys
/// through each) adds up exactly in the database, read from either
/// replica, in the totals, per key and per owner.
#[tokio::test]
async fn postgres_two_replicas_usage_counts_add_up() {
    let replicas = Replicas::start(&["--usage-interval-seconds", "1"]).await;
    let [first, second] = &replicas.apis;
    let (scoped, scoped_secret) =
        api_key(first, json!({"name": "scoped", "external_id": "customer-1", "scopes": ["orders:read"]})).await;
    let (shared, shared_secret) = api_key(first, json!({"name": "shared", "external_id": "customer-1"})).await;
    let (disabled, disabled_secret) = api_key(first, json!({"name": "disabled", "external_id": "customer-2"})).await;

    verify_times(first, 5, &shared_secret, "valid").await;
    verify_times(second, 6, &shared_secret, "valid").await;
    verify_scoped(first, 3, &scoped_secret, &["orders:read"], "valid").await;
    verify_scoped(second, 2, &scoped_secret, &["orders:write"], "insufficient_scope").await;
    verify_scoped(first, 1, &scoped_secret, &["orders:write"], "insufficient_scope").await;
    // Disabled before either replica has looked it up: both read it disabled.
    disable(first, &disabled).await;
    verify_times(first, 2, &disabled_secret, "key_disabled").await;
    verify_times(second, 4, &disabled_secret, "key_disabled").await;
    verify_times(second, 3, &unknown_key(), "unknown_key").await;
    verify_times(second, 4, &shared_secret, "valid").await;

    let totals = counts(&[("-", "valid", 5 + 6 + 3 + 4), ("-", "insufficient_scope", 3), ("-", "key_disabled", 6)]);
    usage_becomes(second, "granularity=minute", &totals).await;
    usage_becomes(first, "granularity=minute", &totals).await;
    for api in [first, second] {
        assert_eq!(usage(api, "granularity=hour").await, totals);
        assert_eq!(usage(api, "granularity=day").await, totals);
        let owner = usage(api, "granularity=minute&external_id=customer-1").await;
        let expected = counts(&[(&shared, "valid", 15), (&scoped, "valid", 3), (&scoped, "insufficient_scope", 3)]);
        assert_eq!(owner, expected);
        let one = usage(api, &format!("granularity=hour&key_id={disabled}")).await;
        assert_eq!(one, counts(&[(&disabled, "key_disabled", 6)]));
    }

    replicas.stop().await;
}

/// A graceful shutdown writes what is pending: with an interval far longer
/// than the test, nothing is written while the server runs; after SIGTERM
/// and a start on the same database the counts are there exactly.
async fn sigterm_restart_keeps_the_pending_counts_journey(backend: TestDb) {
    let never = ["--usage-interval-seconds", "3600"];
    let server = Server::start(&backend, &never).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);
    let (used, used_secret) = api_key(&api, json!({"name": "used"})).await;
    let (disabled, disabled_secret) = api_key(&api, json!({"name": "disabled"})).await;
    verify_times(&api, 9, &used_secret, "valid").await;
    disable(&api, &disabled).await;
    verify_times(&api, 2, &disabled_secret, "key_disabled").await;
    verify_times(&api, 1, &unknown_key(), "unknown_key").await;
    assert_eq!(usage(&api, "granularity=minute").await, Counts::new(), "written before its interval");
    server.stop().await;

    let restarted = Server::start(&backend, &never).await;
    assert_eq!(restarted.token, None, "the same database");
    let api = restarted.client(&token);
    let totals = counts(&[("-", "valid", 9), ("-", "key_disabled", 2)]);
    for granularity in ["minute", "hour", "day"] {
        assert_eq!(usage(&api, &format!("granularity={granularity}")).await, totals, "{granularity}");
    }
    assert_eq!(usage(&api, &format!("key_id={used}")).await, counts(&[(&used, "valid", 9)]));
    assert_eq!(usage(&api, &format!("key_id={disabled}")).await, counts(&[(&disabled, "key_disabled", 2)]));
    restarted.stop().await;
    backend.cleanup().await;
}

on_both_backends! {
    sigterm_restart_keeps_the_pending_counts_journey => sqlite_sigterm_restart_keeps_the_pending_usage_counts, postgres_sigterm_restart_keeps_the_pending_usage_counts;
}
