//! Figure 11, webhooks (docs/WEBHOOKS.md): how fast the deliverer drains a
//! backlog to a local receiver from one replica and from two on one
//! PostgreSQL database, at the default bound of attempts in flight per
//! endpoint and at 16 (11a); what one subscribed endpoint adds to the
//! latency of a management write, on PostgreSQL and on SQLite (11b); and
//! the API-key verification throughput beside a busy deliverer, against an
//! idle one (11c).

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::drive::{closed, log_run, progress, text, warm_up};
use super::results::{PatchLatency, Results, Run, WebhookDrain};
use super::scaling::bulk_audit_sql;
use crate::bench::load::{self, Api, Bodies, Expect, Job, MakeRequest};
use crate::bench::procs::{self, ScratchDatabase, Server, TempDir};
use crate::bench::{random_suffix, Options};

const VERIFY: &str = "/v1/verify/api_key/";
const ALLOW_PRIVATE: &str = "--webhook-allow-private-destinations";
const IN_FLIGHT_FLAG: &str = "--webhook-in-flight-per-endpoint";

/// keysd's default `--webhook-in-flight-per-endpoint`, and the wider bound
/// 11a also runs at.
pub const DEFAULT_IN_FLIGHT: u32 = 4;
pub const WIDE_IN_FLIGHT: u32 = 16;

/// 11c: the rate of the background writer (API-key PATCHes, each an
/// `api_key.updated` event), per second.
pub const WRITER_RATE: f64 = 200.0;
/// 11c: the writer's keys, PATCHed in turn (so that no two writes wait
/// for one row's lock).
pub const WRITER_KEYS: u64 = 8;
/// 11c: the writer runs this long before the verifications start (the
/// deliverer is busy by then) and after they end.
pub const WRITER_LEAD: Duration = Duration::from_millis(500);
const WRITER_TAIL: Duration = Duration::from_millis(200);

/// 11a: the longest wait for a backlog to be delivered.
const DRAIN_CAP: Duration = Duration::from_secs(180);
/// The longest wait for the deliveries pending to be none.
const SETTLE_CAP: Duration = Duration::from_secs(30);

/// 11a: the events of each backlog.
pub fn backlog_events(quick: bool) -> u64 {
    if quick {
        2_000
    } else {
        5_000
    }
}

/// Figure 11 in full: 11a on servers of its own, then 11b and 11c on one
/// PostgreSQL keysd, then 11b on a SQLite keysd.
pub(super) async fn webhooks(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    let receiver = Receiver::start()?;
    drains(options, results, keysd, admin, temp, &receiver).await?;
    progress(
        "11b, 11c. one PostgreSQL keysd (--webhook-allow-private-destinations), endpoints made and deleted per run",
    );
    let database = ScratchDatabase::create(admin, &format!("{}_webhooks_writes", random_suffix()))?;
    let server = procs::start_keysd_with(
        keysd,
        "keysd-postgres-webhooks",
        &database.url,
        &temp.path.join("keysd-webhooks-writes.log"),
        &[ALLOW_PRIVATE],
    )?;
    let store = Store::Postgres(&database);
    results.webhooks.patch.push(write_latency(options, &server, store, &receiver).await?);
    verification(options, results, &server, store, &receiver).await?;
    drop(server);
    drop(database);

    let path = temp.path.join("keysd-webhooks.db");
    let url = format!("sqlite://{}", path.display());
    let server = procs::start_keysd_with(
        keysd,
        "keysd-sqlite-webhooks",
        &url,
        &temp.path.join("keysd-webhooks-sqlite.log"),
        &[ALLOW_PRIVATE],
    )?;
    results.webhooks.patch.push(write_latency(options, &server, Store::Sqlite(&path), &receiver).await?);
    drop(server);
    drop(receiver);
    Ok(())
}

/// The database of a keysd of 11b and 11c, read beside it: through `psql`
/// or the `sqlite3` shell.
#[derive(Debug, Clone, Copy)]
enum Store<'a> {
    Postgres(&'a ScratchDatabase),
    Sqlite(&'a Path),
}

impl Store<'_> {
    fn name(self) -> &'static str {
        match self {
            Self::Postgres(_) => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }

    /// One number a query answers.
    fn count(self, sql: &str) -> Result<u64> {
        let line = self.line(sql)?;
        line.parse().with_context(|| format!("reading a count from {line:?}"))
    }

    /// The line a query answers (`a|b|…`).
    fn line(self, sql: &str) -> Result<String> {
        Ok(match self {
            Self::Postgres(database) => database.psql(sql)?,
            Self::Sqlite(path) => {
                let output = std::process::Command::new("sqlite3")
                    .args(["-batch", "-readonly", "-cmd", ".timeout 5000"])
                    .arg(path)
                    .arg(sql)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .context("running sqlite3 (is the SQLite shell installed?)")?;
                if !output.status.success() {
                    bail!("sqlite3 failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
                }
                String::from_utf8_lossy(&output.stdout).trim().to_owned()
            }
        })
    }

    /// An endpoint's attempts: how many, their mean and longest
    /// `duration_ms` (the mean in thousandths).
    fn attempts(self, endpoint: &str) -> Result<Vec<u64>> {
        let line = self.line(&format!(
            "SELECT count(*), coalesce(round(avg(duration_ms) * 1000), 0), coalesce(max(duration_ms), 0) \
             FROM webhook_attempts WHERE endpoint_id = '{endpoint}'"
        ))?;
        numbers(&line.replace(".0", ""), 3)
    }

    /// The deliveries pending.
    fn pending(self) -> Result<u64> {
        self.count("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")
    }
}

// ------------------------------------------------------------------- 11a

/// Figure 11a: a PostgreSQL database whose one endpoint (subscribed to
/// every event) points at the receiver; for each bound of attempts in
/// flight and for one and two replicas, `backlog_events` audit events are
/// inserted in one transaction while the replicas run, and the time from
/// its commit until the receiver has had every one is taken.
async fn drains(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
    receiver: &Receiver,
) -> Result<()> {
    let events = backlog_events(options.quick);
    progress(&format!(
        "11a. webhook deliveries per second to a local receiver: backlogs of {events} events, one and two replicas \
         on one PostgreSQL database"
    ));
    let database = ScratchDatabase::create(admin, &format!("{}_webhooks", random_suffix()))?;
    let log = |name: &str| temp.path.join(format!("{name}.log"));
    let mut bootstrap = procs::start_keysd_with(
        keysd,
        "keysd-postgres-webhooks-bootstrap",
        &database.url,
        &log("keysd-webhooks-bootstrap"),
        &[ALLOW_PRIVATE],
    )?;
    let api = Api::new(bootstrap.addr, &bootstrap.token);
    create_endpoint(&api, receiver).await?;
    // The endpoint's own creation is an event too: delivered before the
    // first backlog.
    settle(&database).await?;
    bootstrap.stop(Duration::from_secs(5));
    let organisation = bootstrap.organisation_id.clone();
    let mut numbered = 0;
    for in_flight in [DEFAULT_IN_FLIGHT, WIDE_IN_FLIGHT] {
        for replicas in [1, 2] {
            let bound = in_flight.to_string();
            let flags = [ALLOW_PRIVATE, IN_FLIGHT_FLAG, bound.as_str()];
            let mut servers = Vec::new();
            for index in 1..=replicas {
                let name = format!("keysd-postgres-webhooks-{replicas}r-{in_flight}f-{index}");
                servers.push(procs::start_keysd_replica_with(
                    keysd,
                    &name,
                    &bootstrap,
                    &database.url,
                    &log(&name),
                    &flags,
                )?);
            }
            let drain = drain(&database, receiver, &servers, &organisation, numbered, events, in_flight).await?;
            numbered += events;
            let errors = match &drain.error {
                Some(error) => format!(" ERROR {error}"),
                None => String::new(),
            };
            progress(&format!(
                "  {replicas} replica{}, {in_flight} in flight per endpoint: {} of {events} received in {:.2} s, {:.0} \
                 deliveries/s; {} duplicates, {} attempts ({:.1} ms each on average), {} failed, {} pending \
                 (inserted in {:.2} s; keysd CPU {}){errors}",
                if replicas == 1 { "" } else { "s" },
                drain.distinct,
                drain.seconds,
                drain.per_second(),
                drain.duplicates(),
                drain.attempts,
                drain.attempt_ms,
                drain.failed,
                drain.pending,
                drain.insert_seconds,
                drain.replica_cpu_seconds.iter().map(|cpu| format!("{cpu:.2} s")).collect::<Vec<_>>().join(" + ")
            ));
            results.webhooks.drains.push(drain);
            drop(servers);
        }
    }
    drop(bootstrap);
    drop(database);
    Ok(())
}

/// One backlog of 11a: `events` audit events (numbered after `numbered`)
/// inserted in one transaction, then the receiver watched until it has
/// had them all, and what the database says of their deliveries.
async fn drain(
    database: &ScratchDatabase,
    receiver: &Receiver,
    servers: &[Server],
    organisation: &str,
    numbered: u64,
    events: u64,
    in_flight: u32,
) -> Result<WebhookDrain> {
    let last_event: i64 =
        database.psql("SELECT coalesce(max(id), 0) FROM audit_events")?.parse().context("reading the last event")?;
    receiver.reset();
    let cpu_before = servers.iter().map(Server::cpu_time).collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    database.psql(&bulk_audit_sql(organisation, numbered + 1, numbered + events))?;
    let committed = Instant::now();
    let mut error = None;
    while receiver.distinct() < events {
        if committed.elapsed() > DRAIN_CAP {
            error = Some(format!("{} of {events} received within {} s", receiver.distinct(), DRAIN_CAP.as_secs()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = receiver.last_new_since(committed).as_secs_f64();
    let replica_cpu_seconds = servers
        .iter()
        .zip(cpu_before)
        .map(|(server, before)| Ok(server.cpu_time()?.saturating_sub(before).as_secs_f64()))
        .collect::<Result<Vec<_>>>()?;
    // keysd records an attempt after the receiver's answer.
    if error.is_none() {
        settle(database).await?;
    }
    let line = database.psql(&format!(
        "SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'failed'), \
         count(*) FILTER (WHERE state = 'pending'), (SELECT count(*) FROM webhook_attempts a \
         JOIN webhook_deliveries dd ON dd.id = a.delivery_id WHERE dd.audit_event_id > {last_event}), \
         (SELECT coalesce(round(avg(a.duration_ms) * 1000), 0) FROM webhook_attempts a \
         JOIN webhook_deliveries dd ON dd.id = a.delivery_id WHERE dd.audit_event_id > {last_event}) \
         FROM webhook_deliveries WHERE audit_event_id > {last_event}"
    ))?;
    let counts = numbers(&line, 5)?;
    Ok(WebhookDrain {
        store: "PostgreSQL".to_owned(),
        replicas: servers.len(),
        in_flight,
        events,
        insert_seconds: committed.duration_since(started).as_secs_f64(),
        seconds,
        requests: receiver.requests(),
        distinct: receiver.distinct(),
        without_id: receiver.without_id(),
        delivered: counts[0],
        failed: counts[1],
        pending: counts[2],
        attempts: counts[3],
        attempt_ms: counts[4] as f64 / 1000.0,
        replica_cpu_seconds,
        error,
    })
}

/// Waits until no delivery is pending (each attempt recorded).
async fn settle(database: &ScratchDatabase) -> Result<()> {
    let started = Instant::now();
    loop {
        let pending = pending(database)?;
        if pending == 0 {
            return Ok(());
        }
        if started.elapsed() > SETTLE_CAP {
            bail!("{pending} webhook deliveries still pending after {} s", SETTLE_CAP.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pending(database: &ScratchDatabase) -> Result<u64> {
    database
        .psql("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'")?
        .parse()
        .context("counting the pending deliveries")
}

/// `count` numbers of a `psql` line `a|b|…`.
fn numbers(line: &str, count: usize) -> Result<Vec<u64>> {
    let fields: Vec<u64> = line
        .split('|')
        .map(|field| field.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading {count} numbers from {line:?}"))?;
    if fields.len() != count {
        bail!("expected {count} numbers, got {line:?}");
    }
    Ok(fields)
}

/// Makes an endpoint of every event pointing at the receiver; its id.
async fn create_endpoint(api: &Api, receiver: &Receiver) -> Result<String> {
    let body = json!({"url": receiver.url(), "events": ["*"], "description": "bench receiver"});
    let created = api.expect("POST", "/v1/webhook_endpoint/", Some(&body), 201).await?;
    Ok(text(&created.json, "id")?.to_owned())
}

/// Deletes an endpoint once no attempt to it is in flight: disabled first
/// (the deliverer claims no more of its deliveries), then deleted when
/// none is claimed. (A delete that races an attempt's record deadlocks
/// with it in keysd: the record locks the delivery, then the endpoint; the
/// delete the endpoint, then its deliveries.)
async fn delete_endpoint(api: &Api, store: Store<'_>, id: &str) -> Result<()> {
    let path = format!("/v1/webhook_endpoint/{id}/");
    api.expect("PATCH", &path, Some(&json!({"status": "disabled"})), 200).await?;
    let started = Instant::now();
    let claimed = format!("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = '{id}' AND claim IS NOT NULL");
    while store.count(&claimed)? > 0 {
        if started.elapsed() > SETTLE_CAP {
            bail!("deliveries to {id} still claimed {} s after it was disabled", SETTLE_CAP.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    api.expect("DELETE", &path, None, 204).await?;
    Ok(())
}

/// Creates an API key in the bootstrap workspace; its id and secret.
async fn create_key(api: &Api, name: &str) -> Result<(String, String)> {
    let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(&json!({"name": name})), 201).await?;
    Ok((text(&created.json, "id")?.to_owned(), text(&created.json, "api_key")?.to_owned()))
}

// ------------------------------------------------------------------- 11b

/// Figure 11b: PATCHes of one API key's name from one connection, back to
/// back, with no endpoint and with one endpoint of every event (made
/// before the run, deleted after it), alternating run by run.
async fn write_latency(
    options: &Options,
    server: &Server,
    store: Store<'_>,
    receiver: &Receiver,
) -> Result<PatchLatency> {
    progress(&format!("11b. API-key PATCH latency, one connection, {}: no endpoint, then one endpoint", store.name()));
    let api = Api::new(server.addr, &server.token);
    let (key, _) = create_key(&api, "bench webhook patch").await?;
    let path = format!("/v1/staging/ws_api_key/{key}/");
    let make = load::requests_by(
        server.addr,
        &server.token,
        "PATCH",
        Arc::new(move |n| (path.clone(), Bytes::from(json!({"name": format!("bench patch {n}")}).to_string()))),
    );
    let expect = Expect::status(202);
    warm_up(server, 1, options.warmup, &make, expect).await?;
    let mut latency = PatchLatency { store: store.name().to_owned(), ..PatchLatency::default() };
    for index in 0..options.runs {
        let run = closed(server, 1, options.duration, &make, expect, true).await?;
        log_run("no endpoint", index, options.runs, &run);
        latency.without.runs.push(run);
        let endpoint = create_endpoint(&api, receiver).await?;
        let before = receiver.distinct();
        let run = closed(server, 1, options.duration, &make, expect, true).await?;
        log_run("one endpoint", index, options.runs, &run);
        latency.delivered.push(receiver.distinct().saturating_sub(before));
        latency.pending_after.push(store.pending()?);
        latency.with.runs.push(run);
        delete_endpoint(&api, store, &endpoint).await?;
    }
    progress(&format!(
        "  deliveries during the runs with an endpoint: {:?} (pending at their ends: {:?})",
        latency.delivered, latency.pending_after
    ));
    Ok(latency)
}

// ------------------------------------------------------------------- 11c

/// Figure 11c: API-key verification from `options.concurrency`
/// connections while a writer PATCHes keys at [`WRITER_RATE`], with one
/// endpoint of every event (the deliverer busy) and with none (idle),
/// alternating run by run.
async fn verification(
    options: &Options,
    results: &mut Results,
    server: &Server,
    store: Store<'_>,
    receiver: &Receiver,
) -> Result<()> {
    progress(&format!(
        "11c. API-key verification, PostgreSQL, {} connections, beside {WRITER_RATE:.0} PATCHes/s: deliverer busy \
         (one endpoint) and idle (none)",
        options.concurrency
    ));
    let api = Api::new(server.addr, &server.token);
    let (_, secret) = create_key(&api, "bench webhook verify").await?;
    let make = load::requests(
        server.addr,
        &server.token,
        "POST",
        VERIFY,
        Bodies::Same(Bytes::from(json!({"api_key": secret}).to_string())),
    );
    let mut writer_keys = Vec::new();
    for n in 0..WRITER_KEYS {
        writer_keys.push(create_key(&api, &format!("bench webhook writer {n}")).await?.0);
    }
    let job = writer(&api, writer_keys);
    warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
    let webhooks = &mut results.webhooks;
    for index in 0..options.runs {
        for busy in [true, false] {
            let endpoint = if busy { Some(create_endpoint(&api, receiver).await?) } else { None };
            let label = if busy { "deliverer busy" } else { "deliverer idle" };
            let (written, (run, delivered)) = tokio::join!(
                load::fixed_rate(WRITER_RATE, WRITER_LEAD + options.duration + WRITER_TAIL, Arc::clone(&job)),
                verify_run(options, server, &make, receiver)
            );
            let (written, run) = (written?, run?);
            log_run(label, index, options.runs, &run);
            let writes = Run::from_sample(&written, None);
            if writes.errors > 0 {
                progress(&format!(
                    "  writer: {} errors (first: {})",
                    writes.errors,
                    writes.first_error.as_deref().unwrap_or("?")
                ));
            }
            if let Some(endpoint) = endpoint {
                let pending = store.pending()?;
                let attempts = store.attempts(&endpoint)?;
                progress(&format!(
                    "  {delivered} delivered during the run ({:.0}/s), {pending} pending at its end; {} attempts \
                     since the endpoint was made, {:.1} ms each on average, the longest {} ms",
                    delivered as f64 / run.seconds,
                    attempts[0],
                    attempts[1] as f64 / 1000.0,
                    attempts[2]
                ));
                webhooks.busy_attempt_ms.push(attempts[1] as f64 / 1000.0);
                webhooks.busy_attempt_max_ms.push(attempts[2]);
                webhooks.busy_delivered.push(delivered);
                webhooks.busy_pending_after.push(pending);
                webhooks.busy.runs.push(run);
                webhooks.busy_writes.runs.push(writes);
                delete_endpoint(&api, store, &endpoint).await?;
            } else {
                webhooks.idle.runs.push(run);
                webhooks.idle_writes.runs.push(writes);
            }
        }
    }
    webhooks.writer_rate = WRITER_RATE;
    Ok(())
}

/// One run of 11c, after the writer's lead: the verifications, and the
/// events the receiver had meanwhile.
async fn verify_run(options: &Options, server: &Server, make: &MakeRequest, receiver: &Receiver) -> (Result<Run>, u64) {
    tokio::time::sleep(WRITER_LEAD).await;
    let before = receiver.distinct();
    let run = closed(server, options.concurrency, options.duration, make, Expect::valid(), true).await;
    (run, receiver.distinct().saturating_sub(before))
}

/// 11c's writer: job `n` renames key `n mod WRITER_KEYS` (a 202).
fn writer(api: &Api, keys: Vec<String>) -> Job {
    let (api, keys) = (api.clone(), Arc::new(keys));
    Arc::new(move |n| {
        let (api, keys) = (api.clone(), Arc::clone(&keys));
        Box::pin(async move {
            let key = &keys[usize::try_from(n % WRITER_KEYS).unwrap_or(0)];
            let body = json!({"name": format!("bench writer {n}")});
            let answer = api.expect("PATCH", &format!("/v1/staging/ws_api_key/{key}/"), Some(&body), 202).await?;
            Ok(answer.latency)
        })
    })
}

// -------------------------------------------------------------- receiver

/// The receiver of figure 11: a minimal hyper HTTP/1.1 server on a thread
/// of its own (a current-thread tokio runtime, apart from the load
/// generator's), answering every request 200 with no body once it has
/// read it, counting the requests and the distinct `webhook-id`s.
#[derive(Debug)]
struct Receiver {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    without_id: AtomicU64,
    ids: Mutex<HashSet<String>>,
    /// When the last id not seen before arrived.
    last_new: Mutex<Option<Instant>>,
}

impl Receiver {
    fn start() -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the webhook receiver")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("webhook-receiver".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(serve(listener, served, stopped));
                }
            })
            .context("starting the webhook receiver")?;
        Ok(Self { addr, counts, stop: Some(stop), thread: Some(thread) })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    fn without_id(&self) -> u64 {
        self.counts.without_id.load(Ordering::Relaxed)
    }

    fn distinct(&self) -> u64 {
        self.counts.ids.lock().unwrap_or_else(PoisonError::into_inner).len() as u64
    }

    /// How long after `since` the last new id arrived (zero if none did).
    fn last_new_since(&self, since: Instant) -> Duration {
        let last = *self.counts.last_new.lock().unwrap_or_else(PoisonError::into_inner);
        last.map_or(Duration::ZERO, |last| last.saturating_duration_since(since))
    }

    /// Forgets everything counted.
    fn reset(&self) {
        let mut ids = self.counts.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.clear();
        self.counts.requests.store(0, Ordering::Relaxed);
        self.counts.without_id.store(0, Ordering::Relaxed);
        *self.counts.last_new.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _stopped = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _joined = thread.join();
        }
    }
}

impl Counts {
    fn count(&self, id: Option<String>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Some(id) = id else {
            self.without_id.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.insert(id) {
            *self.last_new.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

async fn serve(listener: std::net::TcpListener, counts: Arc<Counts>, mut stopped: tokio::sync::oneshot::Receiver<()>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let counts = Arc::clone(&counts);
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let counts = Arc::clone(&counts);
            async move {
                let id = request.headers().get("webhook-id").and_then(|value| value.to_str().ok()).map(str::to_owned);
                let _body = request.into_body().collect().await;
                counts.count(id);
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
            }
        });
        tokio::spawn(async move {
            let _ended =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_psql_lines() {
        assert_eq!(numbers("1|2|3", 3).expect("numbers"), vec![1, 2, 3]);
        assert!(numbers("1|2", 3).is_err());
        assert!(numbers("1|x|3", 3).is_err());
    }

    #[test]
    fn the_receiver_counts_distinct_ids() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let receiver = Receiver::start().expect("receiver");
        runtime.block_on(async {
            for id in ["msg_1", "msg_2", "msg_1"] {
                let mut sender = load::connect(receiver.addr).await.expect("connects");
                let request = hyper::Request::post("/hook")
                    .header("host", receiver.addr.to_string())
                    .header("webhook-id", id)
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .expect("request");
                let response = sender.send_request(request).await.expect("answered");
                assert_eq!(response.status(), 200);
            }
        });
        assert_eq!((receiver.requests(), receiver.distinct(), receiver.without_id()), (3, 2, 0));
        receiver.reset();
        assert_eq!(receiver.distinct(), 0);
    }
}
