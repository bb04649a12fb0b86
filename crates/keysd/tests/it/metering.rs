//! Metering across replicas (docs/METERING.md, Across replicas; SPEC 12),
//! through the real binary: two and three `keysd serve` on one
//! PostgreSQL hammer one key concurrently.
//!
//! - Credits: what all replicas admit never exceeds the balance granted,
//!   and, with traffic that outlasts it on every replica, reaches it
//!   (idle slices come back and are reserved by the replicas still asked).
//! - Rate limits: what all replicas admit in the run stays within the
//!   bound the docs prove, `L · (w + h + D) / D` for a run of `w` seconds
//!   starting from a full bucket, `h` the batch horizon (`D / 20`), and
//!   well above what one replica's share would be.
//! - `kill -9` of a replica holding a slice loses at most that slice:
//!   never an oversell.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use keys_testkit::TestDb;
use serde_json::json;

use crate::e2e::{text, Server};

/// `count` replicas on one fresh PostgreSQL database, and the bootstrap
/// token.
async fn replicas(backend: &TestDb, count: usize) -> (Vec<Server>, String) {
    let first = Server::start(backend, &[]).await;
    let token = first.token.clone().expect("bootstrap token");
    let mut servers = vec![first];
    for _ in 1..count {
        servers.push(Server::start(backend, &[]).await);
    }
    (servers, token)
}

/// A key of `staging` created through `server` with `body`: its secret.
async fn metered_key(server: &Server, token: &str, body: serde_json::Value) -> String {
    let created = server.client(token).call(Method::POST, "/v1/staging/ws_api_key/", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    text(&created.body["api_key"])
}

/// Verifies `secret` from `clients` concurrent clients on every replica
/// until `stop` says so: (admitted, refused by `reason`, other outcomes).
async fn hammer(
    servers: &[Server],
    token: &str,
    secret: &str,
    clients: usize,
    reason: &'static str,
    stop: impl Fn(u64, Instant) -> bool + Send + Sync + 'static,
) -> (u64, u64, u64) {
    let admitted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(stop);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for server in servers {
        for _ in 0..clients {
            let api = server.client(token);
            let (secret, admitted, refused, other, stop) =
                (secret.to_owned(), Arc::clone(&admitted), Arc::clone(&refused), Arc::clone(&other), Arc::clone(&stop));
            tasks.push(tokio::spawn(async move {
                while !stop(admitted.load(Ordering::SeqCst), started) {
                    let verdict = api.verify("api_key", json!({"api_key": secret})).await;
                    if verdict["valid"] == true {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    } else if verdict["reason"] == reason {
                        refused.fetch_add(1, Ordering::SeqCst);
                    } else {
                        other.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("client");
    }
    (admitted.load(Ordering::SeqCst), refused.load(Ordering::SeqCst), other.load(Ordering::SeqCst))
}

/// Credits across `count` replicas: never above the balance, and all of it
/// spent when every replica keeps being asked.
async fn credits_are_never_oversold(count: usize) {
    const GRANTED: u64 = 400;
    let backend = TestDb::postgres().await;
    let (servers, token) = replicas(&backend, count).await;
    let secret = metered_key(&servers[0], &token, json!({"name": "metered", "credits": {"remaining": GRANTED}})).await;
    // Until the balance is spent, or 20 s (slices idle 2 s come back to be
    // reserved by whoever still asks).
    let (admitted, refused, other) = hammer(&servers, &token, &secret, 4, "usage_exceeded", |admitted, started| {
        admitted >= GRANTED || started.elapsed() > Duration::from_secs(20)
    })
    .await;
    eprintln!("{count} replicas: {admitted} of {GRANTED} credits admitted, {refused} refused, {other} other");
    assert_eq!(other, 0);
    assert!(admitted <= GRANTED, "oversold: {admitted} admitted of {GRANTED}");
    assert_eq!(admitted, GRANTED, "traffic outlasted the balance on every replica");
    // And nothing more is admitted anywhere.
    for server in &servers {
        assert_eq!(server.client(&token).verdict(&secret).await, "usage_exceeded");
    }
    for server in servers {
        server.stop().await;
    }
    backend.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_never_oversell_credits() {
    credits_are_never_oversold(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_replicas_never_oversell_credits() {
    credits_are_never_oversold(3).await;
}

/// A rate limit of `L` per `D` seconds shared by `count` replicas under
/// overload: what they admit in a run of `w` seconds is at most
/// `L · (w + h + D) / D` (docs/METERING.md), and at least the first burst.
async fn rate_limits_hold_their_bound(count: usize) {
    const LIMIT: u64 = 200;
    const DURATION: u64 = 4;
    let backend = TestDb::postgres().await;
    let (servers, token) = replicas(&backend, count).await;
    let limits = json!([{"name": "shared", "limit": LIMIT, "duration_seconds": DURATION}]);
    let secret = metered_key(&servers[0], &token, json!({"name": "limited", "ratelimits": limits})).await;
    let run = Duration::from_secs(6);
    let started = Instant::now();
    let (admitted, refused, other) =
        hammer(&servers, &token, &secret, 4, "rate_limited", move |_, started| started.elapsed() >= run).await;
    let w = started.elapsed().as_secs_f64();
    let (limit, duration) = (LIMIT as f64, DURATION as f64);
    let horizon = (duration / 20.0).min(1.0);
    let bound = limit * (w + horizon + duration) / duration;
    let single = limit * (w + duration) / duration;
    eprintln!(
        "{count} replicas: {admitted} admitted in {w:.2} s ({refused} refused, {other} other); bound {bound:.0}, \
         one counter's {single:.0}, admitted/limit-per-window {:.3}",
        admitted as f64 / (limit * w / duration)
    );
    assert_eq!(other, 0);
    assert!(refused > admitted, "the run must overload the limit: {refused} refused");
    assert!((admitted as f64) <= bound.ceil(), "{admitted} admitted beyond the bound {bound:.1}");
    assert!(admitted >= LIMIT, "at least the first burst: {admitted}");
    for server in servers {
        server.stop().await;
    }
    backend.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_share_a_rate_limit_within_the_bound() {
    rate_limits_hold_their_bound(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_replicas_share_a_rate_limit_within_the_bound() {
    rate_limits_hold_their_bound(3).await;
}

/// `kill -9` of a replica that holds a slice: the other replica admits the
/// rest of the balance, less at most that slice (the first slice a
/// replica reserves is 16), never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_9_loses_at_most_the_slice_held_never_oversells() {
    const GRANTED: u64 = 100;
    const FIRST_SLICE: u64 = 16;
    let backend = TestDb::postgres().await;
    let (mut servers, token) = replicas(&backend, 2).await;
    let secret = metered_key(&servers[0], &token, json!({"name": "held", "credits": {"remaining": GRANTED}})).await;
    let doomed = servers.pop().expect("second replica");
    let verdict = doomed.client(&token).verify("api_key", json!({"api_key": secret})).await;
    assert_eq!(verdict["credits"]["remaining"], GRANTED - 1, "{verdict}");
    doomed.signal("KILL");
    doomed.exit(Duration::from_secs(10)).await;

    let survivor = servers.pop().expect("first replica");
    let api = survivor.client(&token);
    let mut admitted = 1;
    while api.verdict(&secret).await == "valid" {
        admitted += 1;
        assert!(admitted <= GRANTED, "oversold after the kill");
    }
    eprintln!("kill -9: {admitted} of {GRANTED} admitted; {} lost with the slice", GRANTED - admitted);
    assert!(admitted >= GRANTED - (FIRST_SLICE - 1), "lost more than the slice: {admitted} admitted");
    assert!(admitted < GRANTED, "the killed replica's slice cannot have come back");
    survivor.stop().await;
    backend.cleanup().await;
}

/// A change made on one replica (credits set, a limit patched) reaches the
/// other's verification within a second, the slice it held voided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_change_of_limits_or_credits_reaches_the_other_replica_within_a_second() {
    let backend = TestDb::postgres().await;
    let (servers, token) = replicas(&backend, 2).await;
    let (writer, reader) = (servers[0].client(&token), servers[1].client(&token));
    let limits = json!([{"name": "minute", "limit": 50, "duration_seconds": 60}]);
    let created = writer
        .call(
            Method::POST,
            "/v1/staging/ws_api_key/",
            Some(json!({"name": "changing", "ratelimits": limits, "credits": {"remaining": 5}})),
        )
        .await;
    let (id, secret) = (text(&created.body["id"]), text(&created.body["api_key"]));
    let first = reader.verify("api_key", json!({"api_key": secret})).await;
    assert_eq!(first["credits"]["remaining"], 4, "{first}");

    let set = writer
        .call(
            Method::POST,
            &format!("/v1/staging/ws_api_key/{id}/credits/"),
            Some(json!({"operation": "set", "value": 1000})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let patched = writer
        .call(
            Method::PATCH,
            &format!("/v1/staging/ws_api_key/{id}/"),
            Some(json!({"ratelimits": [{"name": "minute", "limit": 7, "duration_seconds": 60}]})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.body);
    let changed_at = Instant::now();
    loop {
        let verdict = reader.verify("api_key", json!({"api_key": secret})).await;
        let seen =
            verdict["credits"]["remaining"].as_u64().unwrap_or(0) > 900 && verdict["ratelimits"][0]["limit"] == 7;
        if seen {
            break;
        }
        assert!(changed_at.elapsed() < Duration::from_secs(1), "not seen within a second: {verdict}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the other replica saw the change after {:?}", changed_at.elapsed());
    for server in servers {
        server.stop().await;
    }
    backend.cleanup().await;
}

/// Across two replicas: a verification that cannot be admitted (its cost
/// above the balance) holds nothing back from the other replica, and a
/// limit exhausted on one replica refuses on the other as `rate_limited`,
/// before its credits are looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_refused_verification_holds_nothing_back_and_limits_come_before_credits() {
    let backend = TestDb::postgres().await;
    let (servers, token) = replicas(&backend, 2).await;
    let (first, second) = (servers[0].client(&token), servers[1].client(&token));
    let secret = metered_key(&servers[0], &token, json!({"name": "dear", "credits": {"remaining": 100}})).await;
    let expensive = first.verify("api_key", json!({"api_key": secret, "cost": 1000})).await;
    assert_eq!((&expensive["reason"], &expensive["credits"]["remaining"]), (&json!("usage_exceeded"), &json!(100)));
    let cheap = second.verify("api_key", json!({"api_key": secret})).await;
    assert_eq!(cheap["valid"], true, "the other replica still spends: {cheap}");

    let limits = json!([{"name": "few", "limit": 3, "duration_seconds": 600}]);
    let body = json!({"name": "both", "ratelimits": limits, "credits": {"remaining": 3}});
    let both = metered_key(&servers[0], &token, body).await;
    for _ in 0..3 {
        assert_eq!(first.verdict(&both).await, "valid");
    }
    assert_eq!(first.verdict(&both).await, "rate_limited");
    let other = second.verify("api_key", json!({"api_key": both})).await;
    assert_eq!(other["reason"], "rate_limited", "limits before credits on every replica: {other}");
    for server in servers {
        server.stop().await;
    }
    backend.cleanup().await;
}
