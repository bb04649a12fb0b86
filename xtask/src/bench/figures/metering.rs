//! Figure 10, metering (docs/METERING.md): API-key verification of a
//! metered key beside an unmetered one on the same PostgreSQL keysd, in the
//! same rounds (10); the database transactions and meter row writes per
//! metered verification over those rounds (10b); the resident memory a
//! replica holds per metered key (10c); and two replicas on one PostgreSQL
//! database sharing a rate limit under steady overload and under a burst,
//! and a balance of credits (10d).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::drive::{closed, log_run, memory_of, progress, scratch_keysd, text};
use super::results::{MeterMemory, MeterTransactions, Results, SharedCredits, SharedLimit};
use crate::bench::load::{self, Api, Bodies, Expect, Job, MakeRequest};
use crate::bench::procs::{self, ScratchDatabase, Server, TempDir};
use crate::bench::{random_suffix, Options};

const VERIFY: &str = "/v1/verify/api_key/";

/// The limit of the metered key of 10 and 10c: so wide that it never
/// refuses, so that every verification takes a token.
const WIDE_LIMIT: u64 = 1_000_000_000;
/// The balance of the metered key of 10 and 10c: the most a key takes.
const WIDE_CREDITS: u64 = 1_000_000_000_000;

/// The shared limit of 10d: `SHARED_LIMIT` per `SHARED_SECONDS`.
pub const SHARED_LIMIT: u64 = 1_000;
pub const SHARED_SECONDS: u64 = 10;
/// 10d (i): the open loop sends this many times the limit's rate.
pub const OVERLOAD: f64 = 5.0;
/// 10d (ii): the burst is this many times the limit.
pub const BURST_TIMES: u64 = 3;
/// 10d (iii): the balance spent from both replicas.
pub const GRANTED_CREDITS: u64 = 20_000;
/// 10d (iii): the run ends once every verification was refused this long.
const QUIET: Duration = Duration::from_secs(3);
/// Longest run of 10d (iii) (it ends far sooner).
const CREDITS_CAP: Duration = Duration::from_secs(120);

/// A backend's statistics reach `pg_stat_*` when it commits at least a
/// second after its last report, or 10 s after it went idle
/// (PostgreSQL 15's `PGSTAT_IDLE_INTERVAL`), or when it exits: 10b stops
/// the keysd before each read, so that its backends exit, and waits this
/// long for them to go.
const STATS_AFTER_EXIT: Duration = Duration::from_millis(500);

/// 10c: metered keys held (and as many unmetered ones, the baseline).
pub fn memory_keys(quick: bool) -> u64 {
    if quick {
        2_000
    } else {
        10_000
    }
}

/// 10d (i): windows of the limit's duration the steady overload lasts.
pub fn steady_windows(quick: bool) -> u64 {
    if quick {
        2
    } else {
        4
    }
}

/// keysd's lease horizon of a limit of `duration_seconds` (keys-service's
/// `metering::horizon`): `duration / 20`, at most a second.
pub fn horizon_seconds(duration_seconds: u64) -> f64 {
    (duration_seconds as f64 / 20.0).min(1.0)
}

/// Figure 10 in full: 10 and 10b, 10c, 10d, each on servers of its own.
pub(super) async fn metering(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    metered_verification(options, results, keysd, admin, temp).await?;
    memory_per_key(options, results, keysd, temp).await?;
    replicas(options, results, keysd, admin, temp).await?;
    Ok(())
}

/// A create's body: a key with one auto-applied limit of `limit` per
/// `duration_seconds` and, when `credits` is given, that balance.
fn metered_key(name: &str, limit: Option<(u64, u64)>, credits: Option<u64>) -> Value {
    let mut body = json!({"name": name});
    if let Some((limit, duration_seconds)) = limit {
        body["ratelimits"] =
            json!([{"name": "requests", "limit": limit, "duration_seconds": duration_seconds, "auto_apply": true}]);
    }
    if let Some(remaining) = credits {
        body["credits"] = json!({"remaining": remaining});
    }
    body
}

/// Creates a key in the bootstrap workspace; its verify body.
async fn create_key(api: &Api, body: &Value) -> Result<Bytes> {
    let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(body), 201).await?;
    Ok(Bytes::from(json!({"api_key": text(&created.json, "api_key")?}).to_string()))
}

/// `keys` keys made by `body(n)`, created through the API by 16
/// concurrent creators (as figure 1d does); their verify bodies.
async fn create_keys(api: &Api, keys: u64, body: fn(u64) -> Value) -> Result<Vec<Bytes>> {
    let mut creating = tokio::task::JoinSet::new();
    for lane in 0..16 {
        let api = api.clone();
        creating.spawn(async move {
            let mut bodies = Vec::new();
            for n in (lane..keys).step_by(16) {
                bodies.push(create_key(&api, &body(n)).await?);
            }
            Ok::<_, anyhow::Error>(bodies)
        });
    }
    let mut bodies = Vec::new();
    while let Some(lane) = creating.join_next().await {
        bodies.extend(lane.context("creating keys")??);
    }
    Ok(bodies)
}

/// One verification through the API, its answer checked: the metered key
/// answers its limit and balance, the unmetered one neither.
async fn check_answer(api: &Api, body: &Bytes, metered: bool) -> Result<()> {
    let body: Value = serde_json::from_slice(body)?;
    let answer = api.expect("POST", VERIFY, Some(&body), 200).await?;
    let json = &answer.json;
    let limits = json.get("ratelimits").and_then(Value::as_array).map_or(0, Vec::len);
    let credits = json.pointer("/credits/remaining").and_then(Value::as_u64);
    let shaped = if metered { limits == 1 && credits.is_some() } else { limits == 0 && credits.is_none() };
    if json.get("valid") != Some(&Value::Bool(true)) || !shaped {
        bail!("unexpected answer for the {} key: {json}", if metered { "metered" } else { "unmetered" });
    }
    Ok(())
}

/// Figures 10 and 10b: a metered and an unmetered key on one PostgreSQL
/// keysd, alternating run by run; the database's transactions and the
/// meter rows written over the keysd's whole life but its start-up: the
/// keys are created through a first keysd, stopped before the first read
/// (its backends exit and report their statistics), and the runs go to a
/// second keysd on the same database, stopped before the second read.
async fn metered_verification(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    progress("10. API-key verification of a metered key beside an unmetered one, PostgreSQL");
    let (database, mut creator) = scratch_keysd(keysd, admin, temp, "metering")?;
    let api = Api::new(creator.addr, &creator.token);
    let metered_body =
        create_key(&api, &metered_key("bench metered", Some((WIDE_LIMIT, 1)), Some(WIDE_CREDITS))).await?;
    let unmetered_body = create_key(&api, &metered_key("bench unmetered", None, None)).await?;
    check_answer(&api, &metered_body, true).await?;
    check_answer(&api, &unmetered_body, false).await?;
    creator.stop(Duration::from_secs(5));
    let before = meter_stats(&database).await?;
    let log = temp.path.join("keysd-metering-serving.log");
    let mut server = procs::start_keysd_replica(keysd, "keysd-postgres-metering", &creator, &database.url, &log)?;
    let started = Instant::now();
    let metered = load::requests(server.addr, &server.token, "POST", VERIFY, Bodies::Same(metered_body));
    let unmetered = load::requests(server.addr, &server.token, "POST", VERIFY, Bodies::Same(unmetered_body));
    let all: [(&str, &MakeRequest); 2] = [("metered key", &metered), ("unmetered key", &unmetered)];
    // The warm-ups' metered verifications are in 10b's window: counted.
    let mut warmup_verifications = 0;
    for (label, make) in all.into_iter().filter(|_| !options.warmup.is_zero()) {
        let warm = closed(&server, options.concurrency, options.warmup, make, Expect::valid(), false).await?;
        if warm.ok == 0 {
            bail!("{label}: warm-up got no successful answer: {}", warm.first_error.unwrap_or_default());
        }
        if label == "metered key" {
            warmup_verifications = warm.ok;
        }
    }
    for index in 0..options.runs {
        for (label, make) in all {
            let run = closed(&server, options.concurrency, options.duration, make, Expect::valid(), true).await?;
            log_run(label, index, options.runs, &run);
            match label {
                "metered key" => results.metering.metered.runs.push(run),
                _ => results.metering.unmetered.runs.push(run),
            }
        }
    }
    results.loaded.push(memory_of(&server, "10. metering")?);
    // A graceful stop: what the keysd hands back is in the window.
    server.stop(Duration::from_secs(5));
    let seconds = started.elapsed().as_secs_f64();
    let after = meter_stats(&database).await?;
    // The first read's own transaction is counted by the second.
    let transactions = MeterTransactions {
        xact_commits: after.xact_commits.saturating_sub(before.xact_commits).saturating_sub(1),
        row_writes: after.row_writes.saturating_sub(before.row_writes),
        verifications: warmup_verifications + results.metering.metered.ok(),
        warmup_verifications,
        seconds,
    };
    let per = |count: u64| count as f64 / transactions.verifications.max(1) as f64;
    progress(&format!(
        "  10b. {} transactions and {} meter row writes over {} metered verifications: {:.5} and {:.5} a verification",
        transactions.xact_commits,
        transactions.row_writes,
        transactions.verifications,
        per(transactions.xact_commits),
        per(transactions.row_writes)
    ));
    results.metering.transactions = transactions;
    drop(server);
    drop(creator);
    drop(database);
    Ok(())
}

/// What 10b reads of the keysd database.
struct MeterStats {
    xact_commits: u64,
    row_writes: u64,
}

/// `xact_commit` of the database and the rows inserted and updated in
/// `meters` and `ratelimit_counters`, read once the stopped keysd's
/// backends have exited (and reported their statistics).
async fn meter_stats(database: &ScratchDatabase) -> Result<MeterStats> {
    tokio::time::sleep(STATS_AFTER_EXIT).await;
    let line = database.psql(
        "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()), \
         (SELECT coalesce(sum(n_tup_upd + n_tup_ins), 0) FROM pg_stat_user_tables \
         WHERE relname IN ('meters', 'ratelimit_counters'))",
    )?;
    let fields: Vec<u64> = line
        .split('|')
        .map(|field| field.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading xact_commit and the meter row writes from {line:?}"))?;
    match fields[..] {
        [xact_commits, row_writes] => Ok(MeterStats { xact_commits, row_writes }),
        _ => bail!("expected xact_commit|row writes, got {line:?}"),
    }
}

/// Figure 10c: a fresh keysd on SQLite; `keys` unmetered and `keys`
/// metered keys created, then each unmetered key verified once, then each
/// metered one, `VmRSS` read before, between and after.
async fn memory_per_key(options: &Options, results: &mut Results, keysd: &Path, temp: &TempDir) -> Result<()> {
    let keys = memory_keys(options.quick);
    progress(&format!("10c. memory per metered key: {keys} metered keys verified once each, beside {keys} unmetered"));
    let url = format!("sqlite://{}", temp.path.join("keysd-metering-memory.db").display());
    let server =
        procs::start_keysd(keysd, "keysd-sqlite-metering-memory", &url, &temp.path.join("keysd-metering-memory.log"))?;
    let api = Api::new(server.addr, &server.token);
    let unmetered = create_keys(&api, keys, |n| metered_key(&format!("bench plain {n}"), None, None)).await?;
    let metered = create_keys(&api, keys, |n| {
        metered_key(&format!("bench metered {n}"), Some((WIDE_LIMIT, 1)), Some(WIDE_CREDITS))
    })
    .await?;
    let verify_each = |bodies: Vec<Bytes>| {
        let make = load::requests(server.addr, &server.token, "POST", VERIFY, Bodies::Each(Arc::new(bodies)));
        load::closed_loop(server.addr, options.concurrency, Duration::from_secs(600), make, Expect::valid())
    };
    let before = server.memory_kib()?;
    let plain = verify_each(unmetered).await?;
    let unmetered_after = server.memory_kib()?;
    let sample = verify_each(metered).await?;
    let after = server.memory_kib()?;
    let memory = MeterMemory {
        keys,
        store: "SQLite".to_owned(),
        before,
        unmetered_after,
        after,
        unmetered_verified: plain.ok(),
        metered_verified: sample.ok(),
        errors: plain.errors + sample.errors,
        first_error: sample.first_error.or(plain.first_error),
    };
    let per_key = |from: u64, to: u64| (to as f64 - from as f64) * 1024.0 / keys as f64;
    progress(&format!(
        "  VmRSS {} → {} KiB ({:.0} bytes an unmetered key) → {} KiB ({:.0} bytes a metered key); {} errors",
        memory.before.rss_kib,
        memory.unmetered_after.rss_kib,
        per_key(memory.before.rss_kib, memory.unmetered_after.rss_kib),
        memory.after.rss_kib,
        per_key(memory.unmetered_after.rss_kib, memory.after.rss_kib),
        memory.errors
    ));
    results.metering.memory = memory;
    drop(server);
    Ok(())
}

/// Figure 10d: two keysd on one PostgreSQL database, the second started
/// on the database the first bootstrapped; (i) a shared limit under steady
/// overload, (ii) a burst at a full bucket, (iii) a shared balance.
async fn replicas(options: &Options, results: &mut Results, keysd: &Path, admin: &str, temp: &TempDir) -> Result<()> {
    progress("10d. two replicas on one PostgreSQL database: a shared limit and a shared balance");
    let database = ScratchDatabase::create(admin, &format!("{}_replicas", random_suffix()))?;
    let first = procs::start_keysd(keysd, "keysd-postgres-replica-1", &database.url, &temp.path.join("replica-1.log"))?;
    let second = procs::start_keysd_replica(
        keysd,
        "keysd-postgres-replica-2",
        &first,
        &database.url,
        &temp.path.join("replica-2.log"),
    )?;
    let servers = [&first, &second];
    let horizon = horizon_seconds(SHARED_SECONDS);
    let shared = Some((SHARED_LIMIT, SHARED_SECONDS));

    // (i) Steady overload, alternating replicas, open loop.
    let windows = steady_windows(options.quick);
    let rate = OVERLOAD * SHARED_LIMIT as f64 / SHARED_SECONDS as f64;
    let seconds = windows * SHARED_SECONDS;
    progress(&format!(
        "  (i) a limit of {SHARED_LIMIT} per {SHARED_SECONDS} s at {rate:.0} req/s over both replicas for {seconds} s"
    ));
    let body =
        create_key(&Api::new(first.addr, &first.token), &metered_key("bench shared steady", shared, None)).await?;
    let tally = Arc::new(Tally::default());
    let job = alternating_job(servers, body, "rate_limited", Arc::clone(&tally));
    let sample = load::fixed_rate(rate, Duration::from_secs(seconds), job).await?;
    let steady = SharedLimit {
        limit: SHARED_LIMIT,
        duration_seconds: SHARED_SECONDS,
        horizon_seconds: horizon,
        rate,
        connections: 0,
        // Every job that did not count an answer is an error of the
        // sample (a timeout too).
        requests: tally.admitted.load(Ordering::Relaxed) + tally.refused.load(Ordering::Relaxed) + sample.errors,
        seconds: sample.elapsed.as_secs_f64(),
        admitted: tally.admitted.load(Ordering::Relaxed),
        refused: tally.refused.load(Ordering::Relaxed),
        errors: sample.errors,
        first_error: sample.first_error,
    };
    log_shared("(i)", &steady);
    results.metering.steady = steady;

    // (ii) A burst of 3 × the limit from a full bucket.
    let per_replica = (options.concurrency / 2).max(1);
    let requests = BURST_TIMES * SHARED_LIMIT;
    progress(&format!(
        "  (ii) {requests} verifications at once ({per_replica} connections to each replica), a fresh key limited to \
         {SHARED_LIMIT} per {SHARED_SECONDS} s"
    ));
    let body =
        create_key(&Api::new(second.addr, &second.token), &metered_key("bench shared burst", shared, None)).await?;
    let run = tally_loop(servers, per_replica, &body, "rate_limited", Budget::Requests(requests)).await?;
    let burst = SharedLimit {
        limit: SHARED_LIMIT,
        duration_seconds: SHARED_SECONDS,
        horizon_seconds: horizon,
        rate: 0.0,
        connections: 2 * per_replica,
        requests: run.tally.sent(),
        seconds: run.seconds,
        admitted: run.tally.admitted.load(Ordering::Relaxed),
        refused: run.tally.refused.load(Ordering::Relaxed),
        errors: run.tally.errors.load(Ordering::Relaxed),
        first_error: run.tally.first_error(),
    };
    log_shared("(ii)", &burst);
    results.metering.burst = burst;

    // (iii) A balance spent from both replicas until refused for 3 s.
    progress(&format!(
        "  (iii) a balance of {GRANTED_CREDITS} credits spent from both replicas ({per_replica} connections each) until \
         refused for {} s straight",
        QUIET.as_secs()
    ));
    let body = create_key(
        &Api::new(first.addr, &first.token),
        &metered_key("bench shared credits", None, Some(GRANTED_CREDITS)),
    )
    .await?;
    let run = tally_loop(servers, per_replica, &body, "usage_exceeded", Budget::Quiet(QUIET, CREDITS_CAP)).await?;
    let credits = SharedCredits {
        granted: GRANTED_CREDITS,
        connections: 2 * per_replica,
        quiet_seconds: QUIET.as_secs_f64(),
        admitted: run.tally.admitted.load(Ordering::Relaxed),
        refused: run.tally.refused.load(Ordering::Relaxed),
        errors: run.tally.errors.load(Ordering::Relaxed),
        first_error: run.tally.first_error(),
        seconds: run.seconds,
        last_admitted_seconds: run.tally.last_admitted_seconds(),
    };
    progress(&format!(
        "  (iii) {} of {} credits spent ({:.4}), the last {:.2} s after the start; {} refused, {} errors in {:.1} s",
        credits.admitted,
        credits.granted,
        credits.admitted as f64 / credits.granted as f64,
        credits.last_admitted_seconds,
        credits.refused,
        credits.errors,
        credits.seconds
    ));
    results.metering.credits = credits;
    drop((second, first));
    drop(database);
    Ok(())
}

fn log_shared(part: &str, run: &SharedLimit) {
    let errors = match run.errors {
        0 => String::new(),
        errors => format!(" ERRORS {errors} (first: {})", run.first_error.as_deref().unwrap_or("?")),
    };
    progress(&format!(
        "  {part} {} of {} admitted, {} refused in {:.2} s: {:.3} of L·(w+D)/D = {:.0}, {:.3} of L·(w+h+D)/D = {:.0}, \
         {:.3} of L{errors}",
        run.admitted,
        run.requests,
        run.refused,
        run.seconds,
        run.admitted as f64 / run.bucket_bound(),
        run.bucket_bound(),
        run.admitted as f64 / run.replica_bound(),
        run.replica_bound(),
        run.admitted as f64 / run.limit as f64
    ));
}

/// Answers of 10d, counted.
#[derive(Debug, Default)]
struct Tally {
    admitted: AtomicU64,
    /// Refused for the reason expected.
    refused: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// When the last admission was read, microseconds after the start.
    last_admitted_us: AtomicU64,
}

impl Tally {
    fn sent(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.errors.load(Ordering::Relaxed)
    }

    fn first_error(&self) -> Option<String> {
        self.first_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn last_admitted_seconds(&self) -> f64 {
        self.last_admitted_us.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Counts one answer: `valid:true`, or `valid:false` for `refusal`;
    /// anything else is an error.
    fn count(&self, answer: Result<(u16, Bytes)>, refusal: &str, started: Instant) -> Result<()> {
        let outcome = answer.and_then(|(status, body)| verdict(status, &body, refusal));
        match outcome {
            Ok(true) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                let at = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.last_admitted_us.fetch_max(at, Ordering::Relaxed);
                Ok(())
            }
            Ok(false) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(PoisonError::into_inner);
                if first.is_none() {
                    *first = Some(format!("{error:#}"));
                }
                Err(error)
            }
        }
    }
}

/// Whether an answer of `/v1/verify/api_key/` admits (`true`) or refuses
/// for `refusal` (`false`); an error for anything else.
fn verdict(status: u16, body: &[u8], refusal: &str) -> Result<bool> {
    let contains = |needle: &[u8]| body.windows(needle.len()).any(|window| window == needle);
    let shown = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    if status != 200 {
        bail!("status {status}: {}", shown());
    }
    if contains(b"\"valid\":true") {
        return Ok(true);
    }
    if contains(format!("\"reason\":\"{refusal}\"").as_bytes()) {
        return Ok(false);
    }
    bail!("neither admitted nor {refusal}: {}", shown())
}

/// 10d (i)'s job: verification `n` goes to replica `n % 2`.
fn alternating_job(servers: [&Server; 2], body: Bytes, refusal: &'static str, tally: Arc<Tally>) -> Job {
    let apis = Arc::new(servers.map(|server| Api::new(server.addr, &server.token)));
    let body: Arc<Value> = Arc::new(serde_json::from_slice(&body).unwrap_or(Value::Null));
    let started = Instant::now();
    Arc::new(move |n| {
        let (apis, body, tally) = (Arc::clone(&apis), Arc::clone(&body), Arc::clone(&tally));
        Box::pin(async move {
            let api = &apis[usize::from(n % 2 == 1)];
            let sent = Instant::now();
            let answer = api.call("POST", VERIFY, Some(&body)).await;
            let latency = sent.elapsed();
            let answer = answer.map(|answer| (answer.status, Bytes::from(answer.json.to_string())));
            tally.count(answer, refusal, started).map(|()| latency)
        })
    })
}

/// When a [`tally_loop`] ends.
#[derive(Debug, Clone, Copy)]
enum Budget {
    /// After this many requests.
    Requests(u64),
    /// Once nothing was admitted for the first duration (and something
    /// was refused), or after the second.
    Quiet(Duration, Duration),
}

struct TallyRun {
    tally: Arc<Tally>,
    seconds: f64,
}

/// `per_replica` keep-alive connections to each server (opened before the
/// start), each sending the same verification back to back until the
/// budget is spent; every answer counted.
async fn tally_loop(
    servers: [&Server; 2],
    per_replica: usize,
    body: &Bytes,
    refusal: &'static str,
    budget: Budget,
) -> Result<TallyRun> {
    let mut senders = Vec::new();
    for server in servers {
        let make = load::requests(server.addr, &server.token, "POST", VERIFY, Bodies::Same(body.clone()));
        for _ in 0..per_replica {
            senders.push((load::connect(server.addr).await?, Arc::clone(&make)));
        }
    }
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (mut sender, make) in senders {
        let (tally, stop, counter) = (Arc::clone(&tally), Arc::clone(&stop), Arc::clone(&counter));
        workers.spawn(async move {
            let mut consecutive_errors = 0;
            while !stop.load(Ordering::Relaxed) && consecutive_errors < 100 {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                if matches!(budget, Budget::Requests(requests) if n >= requests) {
                    break;
                }
                let Some(request) = make(n) else { break };
                let answer = tokio::time::timeout(load::REQUEST_TIMEOUT, answer(&mut sender, request))
                    .await
                    .unwrap_or_else(|_| Err(anyhow!("no answer within {:?}", load::REQUEST_TIMEOUT)));
                if tally.count(answer, refusal, started).is_ok() {
                    consecutive_errors = 0;
                    continue;
                }
                consecutive_errors += 1;
                if sender.is_closed() {
                    break;
                }
            }
        });
    }
    if let Budget::Quiet(quiet, cap) = budget {
        while !workers.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = started.elapsed();
            let last = Duration::from_micros(tally.last_admitted_us.load(Ordering::Relaxed));
            let refused = tally.refused.load(Ordering::Relaxed) > 0;
            if (refused && now.saturating_sub(last) >= quiet) || now >= cap {
                break;
            }
            // Workers that gave up (closed connections) are reaped here.
            while let Some(joined) = workers.try_join_next() {
                joined.context("load worker panicked")?;
            }
        }
        stop.store(true, Ordering::Relaxed);
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("load worker panicked")?;
    }
    Ok(TallyRun { tally, seconds: started.elapsed().as_secs_f64() })
}

/// Sends one request on a kept-alive connection; its status and body.
async fn answer(
    sender: &mut load::Sender,
    request: hyper::Request<http_body_util::Full<Bytes>>,
) -> Result<(u16, Bytes)> {
    sender.ready().await.context("connection closed")?;
    let response = sender.send_request(request).await.context("request failed")?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.context("reading the body")?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_sort_answers() {
        assert!(verdict(200, br#"{"valid":true,"key_id":"x"}"#, "rate_limited").expect("admitted"));
        assert!(!verdict(200, br#"{"valid":false,"reason":"rate_limited"}"#, "rate_limited").expect("refused"));
        assert!(verdict(200, br#"{"valid":false,"reason":"usage_exceeded"}"#, "rate_limited").is_err());
        assert!(verdict(500, b"{}", "rate_limited").is_err());
        assert_eq!(horizon_seconds(10), 0.5);
        assert_eq!(horizon_seconds(86_400), 1.0);
        let body = metered_key("k", Some((1_000, 10)), Some(5));
        assert_eq!(body["ratelimits"][0]["limit"], 1_000);
        assert_eq!(body["credits"]["remaining"], 5);
        assert!(metered_key("k", None, None).get("credits").is_none());
    }
}
