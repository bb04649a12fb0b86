//! Figure 1: API-key verification throughput on SQLite and PostgreSQL
//! beside hello, forward authentication (1b), with `last_used_at` recording
//! off (1c), how the `last_used_at` writer copes with many keys (1d), an
//! imported key of a foreign format against a keysd-format one (1f), and
//! with usage counting off (1g).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde_json::json;

use super::drive::{closed, log_run, progress, text, warm_up};
use super::import::ForeignKeys;
use super::results::{Flush, Results};
use crate::bench::load::{self, Api, Bodies, Expect, MakeRequest};
use crate::bench::procs::{self, ScratchDatabase, Server, TempDir};
use crate::bench::{random_suffix, Options};

/// The keysd servers of figure 1: on SQLite and PostgreSQL with their
/// defaults, and on PostgreSQL with `last_used_at` recording off (1c) and
/// with usage counting off (1g), each on a database of its own.
pub(super) struct VerifyServers<'a> {
    pub(super) sqlite: &'a Server,
    pub(super) postgres: &'a Server,
    pub(super) unrecorded: &'a Server,
    pub(super) uncounted: &'a Server,
}

/// Figure 1: API-key verification on SQLite and PostgreSQL beside hello,
/// 1b, 1c, 1f and 1g in the same rounds.
pub(super) async fn verify_api_keys(
    options: &Options,
    results: &mut Results,
    hello: &Server,
    servers: VerifyServers<'_>,
) -> Result<()> {
    let VerifyServers { sqlite, postgres, unrecorded, uncounted } = servers;
    progress("1. API-key verification over HTTP, beside hello");
    let path = "/v1/verify/api_key/";
    let mut targets = Vec::new();
    for server in [sqlite, postgres, unrecorded, uncounted] {
        let api = Api::new(server.addr, &server.token);
        let created =
            api.expect("POST", "/v1/staging/ws_api_key/", Some(&json!({"name": "bench verify"})), 201).await?;
        let body = Bytes::from(json!({"api_key": text(&created.json, "api_key")?}).to_string());
        targets.push((server, load::requests(server.addr, &server.token, "POST", path, Bodies::Same(body))));
    }
    // The same request (headers and body) goes to hello.
    let hello_make = load::requests(
        hello.addr,
        &sqlite.token,
        "POST",
        path,
        Bodies::Same(Bytes::from(json!({"api_key": "SS.x"}).to_string())),
    );
    // Forward authentication of the same kind of key, as a gateway asks:
    // the gateway's token in its own header, the key as `Bearer`.
    let api = Api::new(postgres.addr, &postgres.token);
    let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(&json!({"name": "bench forward"})), 201).await?;
    let forward_make = forward_requests(postgres, text(&created.json, "api_key")?);
    // 1f. A key of another system's format, imported through the API into
    // the same workspace: verified by its text, without keysd's checksum.
    let foreign = ForeignKeys::new().next_key();
    let import = json!({"keys": [{"key": foreign, "name": "bench foreign"}]});
    api.expect("POST", "/v1/staging/ws_api_key/import/", Some(&import), 201).await?;
    let foreign_body = Bytes::from(json!({"api_key": foreign}).to_string());
    let foreign_make = load::requests(postgres.addr, &postgres.token, "POST", path, Bodies::Same(foreign_body));
    // Each run's label; the foreign-format runs come right before the
    // keysd-format ones on the same server, which come right before the
    // unrecorded ones (1c), then the uncounted ones (1g).
    let foreign_label = "keysd-postgres, foreign-format key";
    let all = [
        (hello.name.as_str(), hello, &hello_make),
        (targets[0].0.name.as_str(), targets[0].0, &targets[0].1),
        (foreign_label, postgres, &foreign_make),
        (targets[1].0.name.as_str(), targets[1].0, &targets[1].1),
        (targets[2].0.name.as_str(), targets[2].0, &targets[2].1),
        (targets[3].0.name.as_str(), targets[3].0, &targets[3].1),
    ];
    for (_, server, make) in all {
        warm_up(server, options.concurrency, options.warmup, make, Expect::valid()).await?;
    }
    warm_up(postgres, options.concurrency, options.warmup, &forward_make, Expect::status(200)).await?;
    for index in 0..options.runs {
        for (label, server, make) in all {
            let run = closed(server, options.concurrency, options.duration, make, Expect::valid(), true).await?;
            log_run(label, index, options.runs, &run);
            match label {
                "hello" => results.hello.runs.push(run),
                "keysd-sqlite" => results.verify_sqlite.runs.push(run),
                "keysd-postgres-unrecorded" => results.verify_postgres_unrecorded.runs.push(run),
                "keysd-postgres-uncounted" => results.verify_postgres_uncounted.runs.push(run),
                label if label == foreign_label => results.verify_postgres_foreign.runs.push(run),
                _ => results.verify_postgres.runs.push(run),
            }
        }
        let run =
            closed(postgres, options.concurrency, options.duration, &forward_make, Expect::status(200), true).await?;
        log_run("forward auth", index, options.runs, &run);
        results.forward_postgres.runs.push(run);
    }
    Ok(())
}

/// Figure 1d: `keys` distinct API keys (made through the API, 16 at a
/// time) each verified through a keysd that writes `last_used_at` every
/// second; measures how long until every key has it.
pub(super) async fn last_used_flush(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    let keys: u64 = if options.quick { 2_000 } else { 10_000 };
    progress(&format!("1d. last_used_at of {keys} distinct keys, written every second"));
    let database = ScratchDatabase::create(admin, &format!("{}_flush", random_suffix()))?;
    let server = procs::start_keysd_with(
        keysd,
        "keysd-postgres-flush",
        &database.url,
        &temp.path.join("keysd-flush.log"),
        &["--last-used-interval-seconds", "1"],
    )?;
    let api = Api::new(server.addr, &server.token);
    let mut creating = tokio::task::JoinSet::new();
    for lane in 0..16 {
        let api = api.clone();
        creating.spawn(async move {
            let mut bodies = Vec::new();
            for n in (lane..keys).step_by(16) {
                let body = json!({"name": format!("bench flush {n}")});
                let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(&body), 201).await?;
                bodies.push(Bytes::from(json!({"api_key": text(&created.json, "api_key")?}).to_string()));
            }
            Ok::<_, anyhow::Error>(bodies)
        });
    }
    let mut bodies = Vec::new();
    while let Some(lane) = creating.join_next().await {
        bodies.extend(lane.context("creating keys")??);
    }
    let make =
        load::requests(server.addr, &server.token, "POST", "/v1/verify/api_key/", Bodies::Each(Arc::new(bodies)));
    // Long enough for every key to be used at least once.
    let sample =
        load::closed_loop(server.addr, options.concurrency, Duration::from_secs(3), make, Expect::valid()).await?;
    let ended = Instant::now();
    let used = keys.min(sample.ok());
    let written_sql = "SELECT count(*) FROM api_keys WHERE last_used_at IS NOT NULL";
    loop {
        let written: u64 = database.psql(written_sql)?.parse().context("counting written keys")?;
        if written >= used {
            break;
        }
        if ended.elapsed() > Duration::from_secs(60) {
            bail!("only {written} of {used} keys had last_used_at after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    results.flush =
        Flush { keys: used, written_after_seconds: ended.elapsed().as_secs_f64(), verify_rps: sample.rps() };
    progress(&format!(
        "  {} keys verified at {:.0} req/s ({} errors); all written {:.2} s later",
        results.flush.keys, results.flush.verify_rps, sample.errors, results.flush.written_after_seconds
    ));
    drop(server);
    drop(database);
    Ok(())
}

/// `GET /v1/auth/forward` as nginx's `auth_request` sends it for a client
/// with `Authorization: Bearer <api key>`.
fn forward_requests(server: &Server, api_key: &str) -> MakeRequest {
    let host = server.addr.to_string();
    let gateway = server.token.clone();
    let bearer = format!("Bearer {api_key}");
    Arc::new(move |_| {
        hyper::Request::builder()
            .method("GET")
            .uri("/v1/auth/forward")
            .header(hyper::header::HOST, host.as_str())
            .header("x-keysd-service-token", gateway.as_str())
            .header(hyper::header::AUTHORIZATION, bearer.as_str())
            .body(http_body_util::Full::new(Bytes::new()))
            .ok()
    })
}
