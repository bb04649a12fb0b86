//! The six figures of the benchmark, each beside its baseline.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde_json::{json, Value};

use super::load::{self, Api, Bodies, Expect, Job, MakeRequest, Sample};
use super::procs::{self, Memory, ScratchDatabase, Server, TempDir};
use super::{admin_url, median, random_suffix, Options};

/// One measured run, reduced.
#[derive(Debug, Clone)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// CPU time of the server over the run divided by its length.
    pub server_cores: Option<f64>,
}

impl Run {
    fn from_sample(sample: &Sample, server_cores: Option<f64>) -> Self {
        Self {
            rps: sample.rps(),
            p50_ms: sample.percentile_ms(50.0),
            p99_ms: sample.percentile_ms(99.0),
            ok: sample.ok(),
            errors: sample.errors,
            first_error: sample.first_error.clone(),
            seconds: sample.elapsed.as_secs_f64(),
            server_cores,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": round(self.seconds, 3),
            "server_cores": self.server_cores.map(|cores| round(cores, 2)),
        })
    }
}

/// A series of runs of one thing; every summary is a median over runs.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub runs: Vec<Run>,
}

impl Series {
    fn stat(&self, pick: impl Fn(&Run) -> f64) -> f64 {
        median(&self.runs.iter().map(pick).collect::<Vec<_>>())
    }
    pub fn rps(&self) -> f64 {
        self.stat(|run| run.rps)
    }
    pub fn p50(&self) -> f64 {
        self.stat(|run| run.p50_ms)
    }
    pub fn p99(&self) -> f64 {
        self.stat(|run| run.p99_ms)
    }
    pub fn server_cores(&self) -> f64 {
        self.stat(|run| run.server_cores.unwrap_or(f64::NAN))
    }
    /// Server CPU time per successful request, in microseconds.
    pub fn cpu_us_per_request(&self) -> f64 {
        self.stat(|run| run.server_cores.map_or(f64::NAN, |cores| cores * 1e6 / run.rps))
    }
    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|run| run.errors).sum()
    }
    pub fn ok(&self) -> u64 {
        self.runs.iter().map(|run| run.ok).sum()
    }
    pub fn first_error(&self) -> Option<&str> {
        self.runs.iter().find_map(|run| run.first_error.as_deref())
    }
    pub fn to_json(&self) -> Value {
        json!({
            "median": {
                "rps": round(self.rps(), 1),
                "p50_ms": round(self.p50(), 3),
                "p99_ms": round(self.p99(), 3),
                "server_cores_busy": round(self.server_cores(), 2),
                "server_cpu_us_per_request": round(self.cpu_us_per_request(), 1),
            },
            "ok": self.ok(),
            "errors": self.errors(),
            "runs": self.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        })
    }
}

pub fn round(value: f64, digits: i32) -> Value {
    if value.is_finite() {
        let scale = 10f64.powi(digits);
        json!((value * scale).round() / scale)
    } else {
        Value::Null
    }
}

/// Ratios of paired runs (`numerator[i] / denominator[i]`).
pub fn paired_ratios(numerator: &[f64], denominator: &[f64]) -> Vec<f64> {
    numerator.iter().zip(denominator).map(|(top, bottom)| if *bottom > 0.0 { top / bottom } else { f64::NAN }).collect()
}

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_mib: u64,
    /// `/proc/loadavg` before anything of the bench started.
    pub loadavg_before: String,
}

#[derive(Debug, Clone, Default)]
pub struct OpenSsl {
    pub version: String,
    pub seconds: u32,
    pub ecdsap256_verify_per_s: f64,
    pub rsa2048_verify_per_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scale {
    pub keys: u64,
    pub insert_seconds: f64,
    pub series: Series,
}

#[derive(Debug, Clone, Default)]
pub struct Jwt {
    pub series: Series,
    pub tokens_per_run: usize,
    pub signing_seconds: f64,
    /// keys-crypto in this process, one thread: `jwt::verify` with a parsed
    /// key, and `VerificationKey::from_pem` + `jwt::verify` (what keysd does
    /// per request besides I/O), per second.
    pub library_verify_per_s: f64,
    pub library_pem_verify_per_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct MemorySample {
    pub server: String,
    pub after: String,
    pub memory: Memory,
}

/// Figure 1d: how the `last_used_at` writer copes with many distinct keys.
#[derive(Debug, Clone, Default)]
pub struct Flush {
    pub keys: u64,
    /// Seconds from the end of the uses until every key had its
    /// `last_used_at` (at `--last-used-interval-seconds 1`, so at most one
    /// interval of waiting is in it).
    pub written_after_seconds: f64,
    pub verify_rps: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub machine: Machine,
    /// When the measured `keysd` binary was built (its mtime, RFC 3339).
    pub keysd_built: String,
    pub openssl: OpenSsl,
    pub hello: Series,
    pub verify_sqlite: Series,
    pub verify_postgres: Series,
    pub scaling: Vec<Scale>,
    pub jwt_es256: Jwt,
    /// The same ES256 path with tokens that carry no `kid` (SuprSend's
    /// recipe), one active signing key.
    pub jwt_es256_kidless: Series,
    pub jwt_rs256: Jwt,
    /// API-key forward authentication (`/v1/auth/forward`) on PostgreSQL,
    /// interleaved with the hello runs of figure 1.
    pub forward_postgres: Series,
    /// Figure 1's PostgreSQL verification on a keysd that records no
    /// `last_used_at` (`--last-used-interval-seconds 0`), interleaved.
    pub verify_postgres_unrecorded: Series,
    /// Writing `last_used_at` of distinct keys used once each.
    pub flush: Flush,
    pub create_workspace_steady: Series,
    pub create_workspace_burst: Series,
    pub create_organisation_steady: Series,
    pub create_organisation_burst: Series,
    /// Organisation keys at a steady 1 create/s (the target's rate).
    pub create_organisation_steady_slow: Series,
    /// 3c. The warm path: a few tokens sent again and again, ES256 and
    /// RS256, each run beside a hello run.
    pub jwt_es256_warm: Series,
    pub jwt_rs256_warm: Series,
    pub hello_warm: Series,
    /// 3d. What the warm path's memory costs when full.
    pub warm_memory: WarmMemory,
    /// SHA-256 of one API key in this process, µs (the crypto floor of
    /// figure 1).
    pub sha256_api_key_us: f64,
    pub writes_keysd: Series,
    /// The same creates spread round-robin over one workspace per client.
    pub writes_keysd_spread: Series,
    pub writes_pgbench_tps: Vec<f64>,
    /// In-process key generation with keys-crypto (the floor of figure 4), ms.
    pub keygen_p256_ms: Vec<f64>,
    pub keygen_rsa_ms: Vec<f64>,
    pub idle: Vec<MemorySample>,
    pub loaded: Vec<MemorySample>,
    /// 7. A page of 50 audit events as the organisation's trail grows.
    pub audit_pages: Vec<AuditPages>,
    /// 7b. `keysd audit export` of the largest trail.
    pub audit_export: AuditExportRun,
}

/// Figure 3d: a keysd whose warm path was filled with distinct tokens.
#[derive(Debug, Clone, Default)]
pub struct WarmMemory {
    pub entries: u64,
    pub before: Memory,
    pub after: Memory,
    pub verify_rps: f64,
}

/// Figure 7 at one size of the trail.
#[derive(Debug, Clone, Default)]
pub struct AuditPages {
    pub events: u64,
    pub insert_seconds: f64,
    pub series: Series,
}

/// Figure 7b: one `keysd audit export`, its lines counted.
#[derive(Debug, Clone, Default)]
pub struct AuditExportRun {
    pub events: u64,
    pub seconds: f64,
    /// `VmHWM` of the export process, last read before it exited.
    pub peak_rss_kib: u64,
}

fn progress(message: &str) {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let elapsed = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench: [{elapsed:6.1} s] {message}");
}

fn log_run(label: &str, index: usize, runs: usize, run: &Run) {
    let errors = if run.errors > 0 {
        format!(" ERRORS {} (first: {})", run.errors, run.first_error.as_deref().unwrap_or("?"))
    } else {
        String::new()
    };
    let cores = run.server_cores.map(|cores| format!(", server {cores:.2} cores")).unwrap_or_default();
    progress(&format!(
        "  {label} run {}/{runs}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} ok{cores}){errors}",
        index + 1,
        run.rps,
        run.p50_ms,
        run.p99_ms,
        run.ok
    ));
}

/// A closed-loop run against `server`, with its CPU use when asked.
async fn closed(
    server: &Server,
    concurrency: usize,
    duration: Duration,
    make: &MakeRequest,
    expect: Expect,
    track_cpu: bool,
) -> Result<Run> {
    let cpu_before = if track_cpu { Some(server.cpu_time()?) } else { None };
    let sample = load::closed_loop(server.addr, concurrency, duration, Arc::clone(make), expect)
        .await
        .with_context(|| format!("load on {}", server.name))?;
    let cores = match cpu_before {
        Some(before) => {
            let used = server.cpu_time()?.saturating_sub(before);
            Some(used.as_secs_f64() / sample.elapsed.as_secs_f64().max(1e-9))
        }
        None => None,
    };
    Ok(Run::from_sample(&sample, cores))
}

async fn warm_up(
    server: &Server,
    concurrency: usize,
    duration: Duration,
    make: &MakeRequest,
    expect: Expect,
) -> Result<()> {
    if duration.is_zero() {
        return Ok(());
    }
    let sample = load::closed_loop(server.addr, concurrency, duration, Arc::clone(make), expect).await?;
    if sample.ok() == 0 {
        bail!("{}: warm-up got no successful answer: {}", server.name, sample.first_error.unwrap_or_default());
    }
    Ok(())
}

fn memory_of(server: &Server, after: &str) -> Result<MemorySample> {
    Ok(MemorySample { server: server.name.clone(), after: after.to_owned(), memory: server.memory_kib()? })
}

fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value.get(field).and_then(Value::as_str).ok_or_else(|| anyhow!("no string {field} in {value}"))
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub async fn run_all(options: &Options, keysd: &Path) -> Result<Results> {
    let keysd_built = std::fs::metadata(keysd)
        .and_then(|metadata| metadata.modified())
        .ok()
        .and_then(|modified| {
            time::OffsetDateTime::from(modified).format(&time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_default();
    let mut results = Results { machine: machine(), keysd_built, ..Results::default() };
    progress(&format!(
        "{} cores, {}; {} mode: {} runs of {} s, concurrency {}",
        results.machine.cores,
        results.machine.cpu,
        if options.quick { "quick" } else { "full" },
        options.runs,
        options.duration.as_secs(),
        options.concurrency
    ));

    // The crypto baseline first, on a quiet machine.
    progress(&format!("openssl speed -seconds {} ecdsap256 rsa2048", options.openssl_seconds));
    results.openssl = openssl_speed(options.openssl_seconds).await?;
    progress(&format!(
        "  openssl single-core verify: ecdsap256 {:.0}/s, rsa2048 {:.0}/s",
        results.openssl.ecdsap256_verify_per_s, results.openssl.rsa2048_verify_per_s
    ));

    let suffix = random_suffix();
    let temp = TempDir::new(&suffix)?;
    let admin = admin_url();
    let database = ScratchDatabase::create(&admin, &suffix)?;
    progress(&format!("scratch database {} and directory {}", database.name, temp.path.display()));
    let hello = procs::start_hello(&temp.path.join("hello.log"))?;
    let sqlite_url = format!("sqlite://{}", temp.path.join("keysd.db").display());
    let sqlite = procs::start_keysd(keysd, "keysd-sqlite", &sqlite_url, &temp.path.join("keysd-sqlite.log"))?;
    let postgres = procs::start_keysd(keysd, "keysd-postgres", &database.url, &temp.path.join("keysd-postgres.log"))?;
    let unrecorded_database = ScratchDatabase::create(&admin, &format!("{suffix}_unrecorded"))?;
    let unrecorded = procs::start_keysd_with(
        keysd,
        "keysd-postgres-unrecorded",
        &unrecorded_database.url,
        &temp.path.join("keysd-postgres-unrecorded.log"),
        &["--last-used-interval-seconds", "0"],
    )?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    results.idle.push(memory_of(&hello, "start")?);
    results.idle.push(memory_of(&sqlite, "start")?);
    results.idle.push(memory_of(&postgres, "start")?);

    verify_api_keys(options, &mut results, &hello, &sqlite, &postgres, &unrecorded).await?;
    drop(unrecorded);
    drop(unrecorded_database);
    last_used_flush(options, &mut results, keysd, &admin, &temp).await?;
    results.loaded.push(memory_of(&hello, "1. API-key verification")?);
    results.loaded.push(memory_of(&sqlite, "1. API-key verification")?);
    results.loaded.push(memory_of(&postgres, "1. API-key verification")?);

    key_count_scaling(options, &mut results, keysd, &admin, &temp).await?;

    let samples = cold_jwt(options, &mut results, &postgres).await?;
    results.loaded.push(memory_of(&postgres, "3. cold JWT verification")?);
    warm_jwt(options, &mut results, &hello, &postgres, samples).await?;
    results.loaded.push(memory_of(&postgres, "3c. warm JWT verification")?);
    warm_memory(options, &mut results, keysd, &temp).await?;
    results.sha256_api_key_us = sha256_floor();

    key_creation(options, &mut results, &postgres).await?;
    results.loaded.push(memory_of(&postgres, "4. key creation")?);

    management_writes(options, &mut results, &postgres, &database, &temp).await?;
    results.loaded.push(memory_of(&postgres, "5. management writes")?);

    audit_trail(options, &mut results, keysd, &admin, &temp).await?;
    results.loaded.push(memory_of(&sqlite, "end")?);

    // Guards stop the servers, drop the database and remove the directory,
    // in this order (reverse declaration order).
    drop((postgres, sqlite, hello));
    drop(database);
    drop(temp);
    Ok(results)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or_else(|| "unknown CPU".to_owned(), |(_, name)| name.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_mib = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    Machine {
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        memory_mib,
        loadavg_before: loadavg(),
    }
}

/// The first three fields of `/proc/loadavg`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn openssl_speed(seconds: u32) -> Result<OpenSsl> {
    let version = tokio::process::Command::new("openssl").arg("version").output().await.context("running openssl")?;
    let output = tokio::process::Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "ecdsap256", "rsa2048"])
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .context("running openssl speed")?;
    if !output.status.success() {
        bail!("openssl speed failed ({})", output.status);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(OpenSsl {
        version: String::from_utf8_lossy(&version.stdout).trim().to_owned(),
        seconds,
        ecdsap256_verify_per_s: parse_openssl_verify(&text, "ecdsa (nistp256)")?,
        rsa2048_verify_per_s: parse_openssl_verify(&text, "rsa 2048 bits")?,
    })
}

/// The `verify/s` column of the row naming `row`, read against the header
/// line above it (columns are right-aligned; OpenSSL 3.x may add encrypt /
/// decrypt columns).
pub fn parse_openssl_verify(output: &str, row: &str) -> Result<f64> {
    let mut header: Vec<&str> = Vec::new();
    for line in output.lines() {
        if line.contains("verify/s") {
            header = line.split_whitespace().collect();
        } else if line.contains(row) && !header.is_empty() {
            let from_end = header.len() - header.iter().position(|column| *column == "verify/s").unwrap_or(0);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let field =
                fields.get(fields.len().wrapping_sub(from_end)).ok_or_else(|| anyhow!("short openssl row {line:?}"))?;
            return field.parse().with_context(|| format!("openssl verify/s of {row}: {field:?}"));
        }
    }
    bail!("openssl speed printed no {row} row:\n{output}")
}

/// Figure 1: API-key verification on SQLite and PostgreSQL beside hello.
async fn verify_api_keys(
    options: &Options,
    results: &mut Results,
    hello: &Server,
    sqlite: &Server,
    postgres: &Server,
    unrecorded: &Server,
) -> Result<()> {
    progress("1. API-key verification over HTTP, beside hello");
    let path = "/v1/verify/api_key/";
    let mut targets = Vec::new();
    for server in [sqlite, postgres, unrecorded] {
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
    let all = [
        (hello, &hello_make),
        (targets[0].0, &targets[0].1),
        (targets[1].0, &targets[1].1),
        (targets[2].0, &targets[2].1),
    ];
    for (server, make) in all {
        warm_up(server, options.concurrency, options.warmup, make, Expect::valid()).await?;
    }
    warm_up(postgres, options.concurrency, options.warmup, &forward_make, Expect::status(200)).await?;
    for index in 0..options.runs {
        for (server, make) in all {
            let run = closed(server, options.concurrency, options.duration, make, Expect::valid(), true).await?;
            log_run(&server.name, index, options.runs, &run);
            match server.name.as_str() {
                "hello" => results.hello.runs.push(run),
                "keysd-sqlite" => results.verify_sqlite.runs.push(run),
                "keysd-postgres-unrecorded" => results.verify_postgres_unrecorded.runs.push(run),
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
async fn last_used_flush(
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

/// A scratch database of its own for one figure and a keysd on it (the
/// server is declared last, so it stops before the database is dropped).
fn scratch_keysd(keysd: &Path, admin: &str, temp: &TempDir, figure: &str) -> Result<(ScratchDatabase, Server)> {
    let database = ScratchDatabase::create(admin, &format!("{}_{figure}", random_suffix()))?;
    let log = temp.path.join(format!("keysd-{figure}.log"));
    let server = procs::start_keysd(keysd, &format!("keysd-postgres-{figure}"), &database.url, &log)?;
    Ok((database, server))
}

/// The runs of one level of a scaling figure (2, 7): a warm-up, then
/// `options.runs` closed-loop runs at `options.scale_concurrency`.
async fn scaling_series(
    options: &Options,
    server: &Server,
    make: &MakeRequest,
    expect: Expect,
    label: &str,
) -> Result<Series> {
    warm_up(server, options.scale_concurrency, options.warmup, make, expect).await?;
    let mut series = Series::default();
    for index in 0..options.runs {
        let run = closed(server, options.scale_concurrency, options.duration, make, expect, false).await?;
        log_run(label, index, options.runs, &run);
        series.runs.push(run);
    }
    Ok(series)
}

/// Figure 2: verification latency as the number of stored API keys grows,
/// on its own scratch database and keysd.
async fn key_count_scaling(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    progress("2. key-count scaling on PostgreSQL");
    let (database, server) = scratch_keysd(keysd, admin, temp, "scale")?;
    let api = Api::new(server.addr, &server.token);
    let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(&json!({"name": "bench scale"})), 201).await?;
    let body = Bytes::from(json!({"api_key": text(&created.json, "api_key")?}).to_string());
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/api_key/", Bodies::Same(body));
    let workspace = database.psql("SELECT uid FROM workspaces WHERE slug = 'staging'")?;
    if !workspace.starts_with("wksp_") {
        bail!("no staging workspace in the scale database: {workspace:?}");
    }
    // Bulk rows are numbered 1..; the real key is one more row.
    let mut inserted = 0u64;
    for &keys in &options.key_counts {
        let target = keys.saturating_sub(1);
        let started = Instant::now();
        if target > inserted {
            progress(&format!("  inserting {} rows into api_keys (to {keys} keys)", target - inserted));
            database.psql(&bulk_insert_sql(&workspace, inserted + 1, target))?;
            database.psql("VACUUM (ANALYZE) api_keys")?;
            inserted = target;
        }
        let insert_seconds = started.elapsed().as_secs_f64();
        let stored: u64 = database.psql("SELECT count(*) FROM api_keys")?.parse().context("counting api_keys")?;
        let series = scaling_series(options, &server, &make, Expect::valid(), &format!("{stored} keys")).await?;
        results.scaling.push(Scale { keys: stored, insert_seconds, series });
    }
    results.loaded.push(memory_of(&server, "2. key-count scaling")?);
    drop(server);
    drop(database);
    Ok(())
}

/// Figure 7: `GET /v1/audit_event/?limit=50` as the organisation's trail
/// grows to each of `options.audit_event_counts` (rows bulk-inserted below
/// the store), then 7b: `keysd audit export` of the largest trail, its time
/// and its peak RSS.
async fn audit_trail(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    progress("7. audit trail pages and export on PostgreSQL");
    let (database, server) = scratch_keysd(keysd, admin, temp, "audit")?;
    let organisation = server.organisation_id.clone();
    let make =
        load::requests(server.addr, &server.token, "GET", "/v1/audit_event/?limit=50", Bodies::Same(Bytes::new()));
    let count = || -> Result<u64> {
        database.psql("SELECT count(*) FROM audit_events")?.parse().context("counting audit_events")
    };
    // The bootstrap wrote a few events; bulk rows are numbered after them.
    let mut inserted = 0u64;
    for &events in &options.audit_event_counts {
        let started = Instant::now();
        let target = events.saturating_sub(count()?);
        if target > 0 {
            progress(&format!("  inserting {target} rows into audit_events (to {events} events)"));
            database.psql(&bulk_audit_sql(&organisation, inserted + 1, inserted + target))?;
            database.psql("VACUUM (ANALYZE) audit_events")?;
            inserted += target;
        }
        let insert_seconds = started.elapsed().as_secs_f64();
        let stored = count()?;
        let series =
            scaling_series(options, &server, &make, Expect::status(200), &format!("{stored} audit events")).await?;
        results.audit_pages.push(AuditPages { events: stored, insert_seconds, series });
    }
    drop(server);

    // 7b. The export, alone on the database, to a counting sink.
    let events = count()?;
    progress(&format!("  keysd audit export of {events} events"));
    let started = Instant::now();
    let mut export = std::process::Command::new(keysd)
        .args(["audit", "export", "--org", &organisation, "--database-url", &database.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting keysd audit export")?;
    let stdout = export.stdout.take().context("export stdout")?;
    let counter = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).split(b'\n').filter(Result::is_ok).count() as u64
    });
    let pid = export.id();
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Ok(memory) = procs::memory_kib(pid) {
            peak_rss_kib = peak_rss_kib.max(memory.peak_kib);
        }
        if let Some(status) = export.try_wait().context("waiting for the export")? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let lines = counter.join().map_err(|_| anyhow!("the line counter panicked"))?;
    if !status.success() || lines != events {
        bail!("keysd audit export: {status}, {lines} lines for {events} events");
    }
    progress(&format!("  exported {lines} events in {seconds:.1} s, peak RSS {} MiB", peak_rss_kib / 1024));
    results.audit_export = AuditExportRun { events, seconds, peak_rss_kib };
    drop(database);
    Ok(())
}

/// Audit events `first..=last` of `organisation`, as the pipeline writes
/// them (an API key generated, by a token, in a request), one microsecond
/// apart, two days ago.
pub fn bulk_audit_sql(organisation: &str, first: u64, last: u64) -> String {
    format!(
        "INSERT INTO audit_events (organisation_id, actor_name, actor_email, token_id, request_id, action, \
         target_id, at) SELECT '{organisation}', 'System User', 'bench@systemuser.keysd.local', \
         'st_01BENCH0000000000000000000', 'bench-' || g, 'api_key.generated', \
         'ws_apik_01BENCH' || lpad(g::text, 19, '0'), now() - interval '2 days' + g * interval '1 microsecond' \
         FROM generate_series({first}::bigint, {last}::bigint) AS g"
    )
}

/// Rows `first..=last` of synthetic API keys: valid-looking ids, unique
/// 32-byte digests (SHA-256 of a counter), as the store writes them.
pub fn bulk_insert_sql(workspace_uid: &str, first: u64, last: u64) -> String {
    format!(
        "INSERT INTO api_keys (id, workspace_uid, name, description, digest, masked_api_key, created_at, updated_at) \
         SELECT 'ws_apik_01BENCH' || lpad(g::text, 19, '0'), '{workspace_uid}', 'bench key ' || g, NULL, \
         sha256(convert_to('keysd-bench-' || g::text, 'UTF8')), 'SS.bench00*****', now() - interval '1 day', \
         now() - interval '1 day' FROM generate_series({first}::bigint, {last}::bigint) AS g"
    )
}

/// Signs tokens on every core until `count` are made or `budget` is spent.
fn sign_tokens(
    count: usize,
    budget: Duration,
    sign: impl Fn(u64) -> Result<String> + Sync,
) -> Result<(Vec<String>, f64)> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let started = Instant::now();
    let deadline = started + budget;
    let chunks = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let sign = &sign;
                scope.spawn(move || -> Result<Vec<String>> {
                    let mut tokens = Vec::new();
                    let mut n = thread as u64;
                    while (n as usize) < count && Instant::now() < deadline {
                        tokens.push(sign(n)?);
                        n += threads as u64;
                    }
                    Ok(tokens)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| anyhow!("signing thread panicked"))?)
            .collect::<Result<Vec<_>>>()
    })?;
    Ok((chunks.into_iter().flatten().collect(), started.elapsed().as_secs_f64()))
}

/// Figure 3: cold JWT verification (every token distinct), ES256 user tokens
/// in secure mode and RS256 organisation tokens, on PostgreSQL.
async fn cold_jwt(options: &Options, results: &mut Results, server: &Server) -> Result<WarmSamples> {
    progress("3. cold JWT verification on PostgreSQL (every token distinct)");
    let api = Api::new(server.addr, &server.token);
    let SecureMode { public_value, kid, ec_pem } = secure_mode(&api).await?;
    let org_key = api
        .expect(
            "POST",
            &format!("/api/organisations/v1/organisations/{}/keys", server.organisation_id),
            Some(&json!({"name": "bench jwt"})),
            201,
        )
        .await?;
    let org_key_id = text(&org_key.json, "id")?.to_owned();
    let rsa_pem = text(&org_key.json, "privateKey")?.to_owned();

    let expires = unix_now() + 3600;
    let cores = results.machine.cores;
    let per_run_cap = (options.duration.as_secs() as usize) * 12_000;
    let es_total = per_run_cap * options.runs + 2_000;
    let es_budget = if options.quick { Duration::from_millis(2500) } else { Duration::from_secs(15) };
    let (es_tokens, es_seconds) = sign_tokens(es_total, es_budget, |n| {
        let claims =
            json!({"entity_type": "subscriber", "entity_id": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, Some(&kid), &ec_pem, keys_crypto::Algorithm::Es256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    // The same recipe without `kid`, as SuprSend documents it.
    let (kidless_tokens, _) = sign_tokens(es_total, es_budget, |n| {
        let claims =
            json!({"entity_type": "subscriber", "entity_id": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, None, &ec_pem, keys_crypto::Algorithm::Es256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    let kidless_bodies: Vec<Bytes> = kidless_tokens
        .into_iter()
        .map(|token| Bytes::from(json!({"api_key": public_value, "user_token": token}).to_string()))
        .collect();
    let rs_total = per_run_cap * options.runs + 500;
    let issuer = format!("https://versori.com/sk/{org_key_id}");
    let (rs_tokens, rs_seconds) = sign_tokens(rs_total, options.rs256_signing_budget, |n| {
        let claims = json!({"iss": issuer, "sub": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, None, &rsa_pem, keys_crypto::Algorithm::Rs256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    progress(&format!(
        "  signed {} ES256 tokens in {es_seconds:.1} s and {} RS256 tokens in {rs_seconds:.1} s on {cores} cores",
        es_tokens.len(),
        rs_tokens.len()
    ));

    // The library alone, in this process, on one thread.
    let library_window = Duration::from_millis(if options.quick { 300 } else { 2000 });
    let ec_public =
        keys_crypto::EcKeyPair::from_pkcs8_pem(&ec_pem).map_err(|error| anyhow!("{error}"))?.public_key_pem();
    let rsa_public =
        keys_crypto::RsaKeyPair::from_pkcs8_pem(&rsa_pem).map_err(|error| anyhow!("{error}"))?.public_key_pem();
    let es_library = library_verify_rates(keys_crypto::Algorithm::Es256, ec_public, &es_tokens, library_window).await?;
    let rs_library =
        library_verify_rates(keys_crypto::Algorithm::Rs256, rsa_public, &rs_tokens, library_window).await?;
    progress(&format!(
        "  keys-crypto on 1 thread: ES256 {:.0} verifications/s ({:.0}/s with PEM parse), RS256 {:.0}/s ({:.0}/s)",
        es_library.0, es_library.1, rs_library.0, rs_library.1
    ));
    let es_bodies: Vec<Bytes> = es_tokens
        .into_iter()
        .map(|token| Bytes::from(json!({"api_key": public_value, "user_token": token}).to_string()))
        .collect();
    let rs_bodies: Vec<Bytes> =
        rs_tokens.into_iter().map(|token| Bytes::from(json!({"token": token}).to_string())).collect();
    let samples = WarmSamples {
        es256: es_bodies.iter().take(WARM_TOKENS).cloned().collect(),
        rs256: rs_bodies.iter().take(WARM_TOKENS).cloned().collect(),
    };

    let kinds = [
        ("ES256", "/v1/verify/public_key/", es_bodies, es_seconds, es_library),
        ("RS256", "/v1/verify/jwt/", rs_bodies, rs_seconds, rs_library),
    ];
    for (name, path, bodies, signing_seconds, library) in kinds {
        // A tenth (at most 2,000) warms up and checks the path answers valid.
        let warm = (bodies.len() / 10).clamp(1, 2_000);
        let per_run = (bodies.len() - warm) / options.runs;
        if per_run < 100 {
            bail!("only {} {name} tokens signed; need at least 100 per run", bodies.len());
        }
        let (measured, warming) = bodies.split_at(bodies.len() - warm);
        let mut chunks = measured.chunks(per_run).map(|chunk| Arc::new(chunk.to_vec()));
        let warm_bodies = Arc::new(warming.to_vec());
        let make = load::requests(server.addr, &server.token, "POST", path, Bodies::Each(warm_bodies));
        warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
        let mut jwt = Jwt {
            tokens_per_run: per_run,
            signing_seconds,
            library_verify_per_s: library.0,
            library_pem_verify_per_s: library.1,
            ..Jwt::default()
        };
        for index in 0..options.runs {
            let chunk = chunks.next().context("token chunks")?;
            let make = load::requests(server.addr, &server.token, "POST", path, Bodies::Each(chunk));
            let run = closed(server, options.concurrency, options.duration, &make, Expect::valid(), true).await?;
            log_run(name, index, options.runs, &run);
            jwt.series.runs.push(run);
        }
        if name == "ES256" {
            results.jwt_es256 = jwt;
        } else {
            results.jwt_rs256 = jwt;
        }
    }
    // Kid-less ES256 after the kid runs, on the same key and endpoint.
    let per_run = (kidless_bodies.len() / (options.runs + 1)).max(1);
    let mut chunks = kidless_bodies.chunks(per_run).map(|chunk| Arc::new(chunk.to_vec()));
    let warm = chunks.next().context("kid-less token chunks")?;
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(warm));
    warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
    for index in 0..options.runs {
        let chunk = chunks.next().context("kid-less token chunks")?;
        let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(chunk));
        let run = closed(server, options.concurrency, options.duration, &make, Expect::valid(), true).await?;
        log_run("ES256 without kid", index, options.runs, &run);
        results.jwt_es256_kidless.runs.push(run);
    }
    Ok(samples)
}

/// A secure-mode public key of `staging` and its workspace's signing key.
struct SecureMode {
    public_value: String,
    kid: String,
    ec_pem: String,
}

async fn secure_mode(api: &Api) -> Result<SecureMode> {
    let public_key = api.expect("POST", "/v1/staging/ws_public_key/", Some(&json!({"name": "bench jwt"})), 201).await?;
    let public_id = text(&public_key.json, "id")?.to_owned();
    let public_value = text(&public_key.json, "api_key")?.to_owned();
    api.expect(
        "PATCH",
        &format!("/v1/staging/ws_public_key/{public_id}/"),
        Some(&json!({"is_secure_mode_enabled": true})),
        202,
    )
    .await?;
    let signing = api.expect("POST", "/v1/staging/ws_signing_key/", None, 201).await?;
    let kid = text(&signing.json, "uid")?.to_owned();
    let ec_pem = text(&signing.json, "private_key_pem")?.to_owned();
    Ok(SecureMode { public_value, kid, ec_pem })
}

/// Distinct tokens of the warm figure: each is sent again and again.
const WARM_TOKENS: usize = 64;

/// Request bodies of figure 3 kept for the warm figure.
pub struct WarmSamples {
    es256: Vec<Bytes>,
    rs256: Vec<Bytes>,
}

/// Figure 3c: the warm path. [`WARM_TOKENS`] tokens of each kind, cycled
/// (a browser's user token on every page, a backend's JWT on every call),
/// each keysd run beside a hello run.
async fn warm_jwt(
    options: &Options,
    results: &mut Results,
    hello: &Server,
    server: &Server,
    samples: WarmSamples,
) -> Result<()> {
    progress(&format!("3c. warm JWT verification ({WARM_TOKENS} tokens of each kind, sent again and again)"));
    let cycled = |bodies: Vec<Bytes>| {
        let bodies = Arc::new(bodies);
        Bodies::Numbered(Arc::new(move |n| bodies[(n as usize) % bodies.len()].clone()))
    };
    let kinds =
        [("ES256 warm", "/v1/verify/public_key/", samples.es256), ("RS256 warm", "/v1/verify/jwt/", samples.rs256)];
    for (name, path, bodies) in kinds {
        // The same requests (headers and bodies) go to hello.
        let hello_make = load::requests(hello.addr, &server.token, "POST", path, cycled(bodies.clone()));
        let make = load::requests(server.addr, &server.token, "POST", path, cycled(bodies));
        warm_up(server, options.concurrency, options.warmup, &make, Expect::valid()).await?;
        let mut series = Series::default();
        for index in 0..options.runs {
            let run = closed(hello, options.concurrency, options.duration, &hello_make, Expect::valid(), true).await?;
            log_run("hello", index, options.runs, &run);
            results.hello_warm.runs.push(run);
            let run = closed(server, options.concurrency, options.duration, &make, Expect::valid(), true).await?;
            log_run(name, index, options.runs, &run);
            series.runs.push(run);
        }
        if name.starts_with("ES256") {
            results.jwt_es256_warm = series;
        } else {
            results.jwt_rs256_warm = series;
        }
    }
    Ok(())
}

/// Figure 3d: a keysd on SQLite with room for as many verified tokens as the
/// figure sends, each distinct and sent once: the resident memory before
/// and after is what the warm path costs when full.
async fn warm_memory(options: &Options, results: &mut Results, keysd: &Path, temp: &TempDir) -> Result<()> {
    let entries: u64 = if options.quick { 100_000 } else { 1_000_000 };
    progress(&format!("3d. warm-path memory: {entries} distinct ES256 tokens into a cache of as many"));
    let url = format!("sqlite://{}", temp.path.join("keysd-warm.db").display());
    let capacity = entries.to_string();
    let server = procs::start_keysd_with(
        keysd,
        "keysd-sqlite-warm",
        &url,
        &temp.path.join("keysd-sqlite-warm.log"),
        &["--verified-token-cache-entries", &capacity, "--last-used-interval-seconds", "0"],
    )?;
    let api = Api::new(server.addr, &server.token);
    let SecureMode { public_value, kid, ec_pem } = secure_mode(&api).await?;
    let expires = unix_now() + 3600;
    let (tokens, seconds) = sign_tokens(entries as usize, Duration::from_secs(600), |n| {
        let claims =
            json!({"entity_type": "subscriber", "entity_id": format!("bench-user-{n}"), "exp": expires, "jti": n});
        keys_crypto::mint::sign(&claims, Some(&kid), &ec_pem, keys_crypto::Algorithm::Es256)
            .map_err(|error| anyhow!("{error}"))
    })?;
    progress(&format!("  signed {} tokens in {seconds:.1} s", tokens.len()));
    let bodies: Vec<Bytes> = tokens
        .into_iter()
        .map(|token| Bytes::from(json!({"api_key": public_value, "user_token": token}).to_string()))
        .collect();
    // A few requests first, so that connections and buffers are in `before`.
    let split = 1_000.min(bodies.len());
    let first = Arc::new(bodies[..split].to_vec());
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(first));
    closed(&server, options.concurrency, Duration::from_secs(60), &make, Expect::valid(), false).await?;
    let before = server.memory_kib()?;
    let rest = Arc::new(bodies[split..].to_vec());
    drop(bodies);
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/public_key/", Bodies::Each(rest));
    let run = closed(&server, options.concurrency, Duration::from_secs(600), &make, Expect::valid(), false).await?;
    let after = server.memory_kib()?;
    progress(&format!(
        "  RSS {:.1} MiB before, {:.1} MiB after {} more verifications ({:.0}/s)",
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        run.ok,
        run.rps
    ));
    results.warm_memory = WarmMemory { entries, before, after, verify_rps: run.rps };
    Ok(())
}

/// SHA-256 of an API key-sized string in this process, µs per digest: the
/// crypto of an API-key verification.
fn sha256_floor() -> f64 {
    let rounds = 200_000u32;
    let keys: Vec<String> =
        (0..16).map(|index| format!("sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCD_{index:04}")).collect();
    let started = Instant::now();
    let mut sink = 0u8;
    for round in 0..rounds {
        let key = &keys[(round % 16) as usize];
        sink ^= keys_crypto::secret::sha256_digest(std::hint::black_box(key.as_bytes())).as_bytes()[0];
    }
    std::hint::black_box(sink);
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

/// Verifications per second of keys-crypto on one thread, cycling through
/// `tokens` for `window` each: with the key parsed once, and with
/// `VerificationKey::from_pem` per token as keysd does.
async fn library_verify_rates(
    algorithm: keys_crypto::Algorithm,
    public_pem: String,
    tokens: &[String],
    window: Duration,
) -> Result<(f64, f64)> {
    let sample: Vec<String> = tokens.iter().take(4_000).cloned().collect();
    tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
        let now = time::OffsetDateTime::now_utc();
        let key = keys_crypto::VerificationKey::from_pem(algorithm, &public_pem).map_err(|error| anyhow!("{error}"))?;
        let rate = |parse_each: bool| -> Result<f64> {
            let started = Instant::now();
            let mut done = 0u64;
            while started.elapsed() < window {
                let token = &sample[(done as usize) % sample.len()];
                let parsed;
                let key = if parse_each {
                    parsed = keys_crypto::VerificationKey::from_pem(algorithm, &public_pem)
                        .map_err(|error| anyhow!("{error}"))?;
                    &parsed
                } else {
                    &key
                };
                let claims =
                    keys_crypto::jwt::verify(token, key).map_err(|error| anyhow!("in-process verify: {error}"))?;
                // keysd checks the time window after the signature, with
                // keys-core's policy; so does the baseline.
                claims.times().exp.filter(|exp| *exp > now.unix_timestamp()).context("bench token expired")?;
                done += 1;
            }
            Ok(done as f64 / started.elapsed().as_secs_f64())
        };
        Ok((rate(false)?, rate(true)?))
    })
    .await
    .context("library verify baseline")?
}

/// Figure 4: creating a workspace signing key (P-256) and an organisation
/// key (RSA-2048), at a steady rate and in bursts; only the create request
/// is timed.
async fn key_creation(options: &Options, results: &mut Results, server: &Server) -> Result<()> {
    progress(&format!("4. key creation at {} req/s and in bursts of {} (PostgreSQL)", options.rate, options.burst));
    // The floor: generating the key pair alone, in this process, one at a
    // time, with the same library keysd uses.
    let rsa_samples = if options.quick { 4 } else { 24 };
    let (p256, rsa) = tokio::task::spawn_blocking(move || {
        let time = |generate: &dyn Fn()| {
            let started = Instant::now();
            generate();
            started.elapsed().as_secs_f64() * 1000.0
        };
        // Generation plus the PEMs a create returns and stores.
        let p256: Vec<f64> = (0..200)
            .map(|_| {
                time(&|| {
                    let pair = keys_crypto::EcKeyPair::generate(&mut rand_core::OsRng);
                    drop((pair.private_key_pem(), pair.public_key_pem()));
                })
            })
            .collect();
        let rsa: Vec<f64> = (0..rsa_samples)
            .map(|_| {
                time(&|| {
                    let pair = keys_crypto::RsaKeyPair::generate(&mut rand_core::OsRng);
                    drop((pair.private_key_pem(), pair.public_key_pem()));
                })
            })
            .collect();
        (p256, rsa)
    })
    .await
    .context("key generation baseline")?;
    progress(&format!(
        "  in-process key generation: P-256 p50 {:.3} ms, RSA-2048 p50 {:.0} ms (max {:.0} ms)",
        median(&p256),
        median(&rsa),
        rsa.iter().copied().fold(0.0, f64::max)
    ));
    results.keygen_p256_ms = p256;
    results.keygen_rsa_ms = rsa;

    let api = Api::new(server.addr, &server.token);
    // A workspace holds one active signing key: each create is followed by
    // a delete, and a slot is used by one job at a time.
    let slots = options.burst.max(8);
    let mut workspaces = Vec::with_capacity(slots);
    for index in 0..slots {
        let slug = format!("bench-{index}");
        api.expect("POST", "/v1/workspace/", Some(&json!({"name": slug, "slug": slug})), 201).await?;
        workspaces.push((slug, tokio::sync::Mutex::new(())));
    }
    let workspaces = Arc::new(workspaces);
    let workspace_job: Job = {
        let api = api.clone();
        Arc::new(move |n| {
            let api = api.clone();
            let workspaces = Arc::clone(&workspaces);
            Box::pin(async move {
                let (slug, lock) = &workspaces[(n as usize) % workspaces.len()];
                let _slot = lock.lock().await;
                let created = api.expect("POST", &format!("/v1/{slug}/ws_signing_key/"), None, 201).await?;
                let uid = text(&created.json, "uid")?;
                api.expect("DELETE", &format!("/v1/{slug}/ws_signing_key/{uid}/"), None, 204).await?;
                Ok(created.latency)
            })
        })
    };
    let organisation_job: Job = {
        let api = api.clone();
        let base = format!("/api/organisations/v1/organisations/{}/keys", server.organisation_id);
        Arc::new(move |n| {
            let api = api.clone();
            let base = base.clone();
            Box::pin(async move {
                let created = api.expect("POST", &base, Some(&json!({"name": format!("bench key {n}")})), 201).await?;
                let id = text(&created.json, "id")?;
                api.expect("DELETE", &format!("{base}/{id}"), None, 204).await?;
                Ok(created.latency)
            })
        })
    };
    // Open as many pooled connections as a burst needs, outside the timing.
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..options.burst {
        let api = api.clone();
        opening.spawn(async move { api.call("GET", "/health", None).await });
    }
    while let Some(joined) = opening.join_next().await {
        joined.context("opening connections")??;
    }
    let pause = Duration::from_millis(if options.quick { 300 } else { 2000 });
    // Long enough for one refill thread to fill keysd's pool again (8 keys
    // of 0.2-0.7 s each) before an organisation-key burst.
    let refill = Duration::from_secs(if options.quick { 4 } else { 6 });
    for (name, job) in [("workspace key (P-256)", &workspace_job), ("organisation key (RSA-2048)", &organisation_job)] {
        let organisation = name.starts_with("organisation");
        let mut steady = Series::default();
        let mut bursts = Series::default();
        for index in 0..options.runs {
            let sample = load::fixed_rate(options.rate, options.steady_duration, Arc::clone(job)).await?;
            let run = Run::from_sample(&sample, None);
            log_run(&format!("{name} steady"), index, options.runs, &run);
            steady.runs.push(run);
            // Let background work (the RSA pool refill) settle, as after any
            // quiet period, then burst: as many as keysd's pool holds.
            tokio::time::sleep(if organisation { refill } else { pause }).await;
            let size = if organisation { RSA_POOL_SIZE } else { options.burst };
            let sample = load::burst(size, 1_000_000 * (index as u64 + 1), Arc::clone(job)).await?;
            let run = Run::from_sample(&sample, None);
            log_run(&format!("{name} burst"), index, options.runs, &run);
            bursts.runs.push(run);
            tokio::time::sleep(if organisation { refill } else { pause }).await;
            if organisation {
                let sample =
                    load::fixed_rate(1.0, options.steady_duration.max(Duration::from_secs(3)), Arc::clone(job)).await?;
                let run = Run::from_sample(&sample, None);
                log_run(&format!("{name} steady 1/s"), index, options.runs, &run);
                results.create_organisation_steady_slow.runs.push(run);
            }
        }
        if name.starts_with("workspace") {
            results.create_workspace_steady = steady;
            results.create_workspace_burst = bursts;
        } else {
            results.create_organisation_steady = steady;
            results.create_organisation_burst = bursts;
        }
    }
    Ok(())
}

/// keysd's default `--rsa-pool-size`: the organisation-key burst is this
/// many creates at once.
pub const RSA_POOL_SIZE: usize = 8;

/// Figure 5: API-key creates per second on PostgreSQL beside pgbench's
/// single-row INSERTs into a scratch table of the same database, run after
/// run.
async fn management_writes(
    options: &Options,
    results: &mut Results,
    server: &Server,
    database: &ScratchDatabase,
    temp: &TempDir,
) -> Result<()> {
    progress(&format!("5. management writes at {} clients, beside pgbench", options.write_concurrency));
    database.psql(
        "CREATE TABLE bench_scratch (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL, \
         at timestamptz NOT NULL DEFAULT now())",
    )?;
    let script = temp.path.join("insert.sql");
    std::fs::write(&script, "INSERT INTO bench_scratch (v) VALUES (md5(random()::text));\n")?;
    let names: Arc<dyn Fn(u64) -> Bytes + Send + Sync> =
        Arc::new(|n| Bytes::from(json!({"name": format!("bench write {n}")}).to_string()));
    let make = load::requests(server.addr, &server.token, "POST", "/v1/staging/ws_api_key/", Bodies::Numbered(names));
    // Diagnostic: the same creates spread over one workspace per client, to
    // show what the per-workspace lock of a create costs.
    let api = Api::new(server.addr, &server.token);
    for index in 0..options.write_concurrency {
        let slug = format!("bench-w-{index}");
        api.expect("POST", "/v1/workspace/", Some(&json!({"name": slug, "slug": slug})), 201).await?;
    }
    let spread_count = options.write_concurrency as u64;
    let spread = load::requests_by(
        server.addr,
        &server.token,
        "POST",
        Arc::new(move |n| {
            let path = format!("/v1/bench-w-{}/ws_api_key/", n % spread_count);
            (path, Bytes::from(json!({"name": format!("bench spread {n}")}).to_string()))
        }),
    );
    warm_up(server, options.write_concurrency, options.warmup, &make, Expect::status(201)).await?;
    warm_up(server, options.write_concurrency, options.warmup, &spread, Expect::status(201)).await?;
    let threads = options.write_concurrency.min(results.machine.cores.max(1));
    for index in 0..options.runs {
        let tps = pgbench(&database.url, options.write_concurrency, threads, options.duration, &script).await?;
        progress(&format!("  pgbench run {}/{}: {tps:.0} tps", index + 1, options.runs));
        results.writes_pgbench_tps.push(tps);
        let run = closed(server, options.write_concurrency, options.duration, &make, Expect::status(201), true).await?;
        log_run("keysd API-key creates", index, options.runs, &run);
        results.writes_keysd.runs.push(run);
        let run =
            closed(server, options.write_concurrency, options.duration, &spread, Expect::status(201), true).await?;
        log_run("keysd API-key creates, spread", index, options.runs, &run);
        results.writes_keysd_spread.runs.push(run);
    }
    Ok(())
}

async fn pgbench(url: &str, clients: usize, threads: usize, duration: Duration, script: &Path) -> Result<f64> {
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &threads.to_string(),
            "-T",
            &duration.as_secs().to_string(),
            "-f",
        ])
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed ({}): {}{}", output.status, stdout, String::from_utf8_lossy(&output.stderr));
    }
    parse_pgbench_tps(&stdout)
}

/// `tps = 1234.5 (without initial connection time)`.
pub fn parse_pgbench_tps(output: &str) -> Result<f64> {
    output
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line["tps = ".len()..].split_whitespace().next())
        .ok_or_else(|| anyhow!("no tps line in pgbench output:\n{output}"))?
        .parse()
        .context("pgbench tps")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSSL_30: &str = "\
                  sign    verify    sign/s verify/s
rsa 2048 bits 0.000768s 0.000024s   1302.6  41467.3
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0001s  37300.0  12925.0
";

    const OPENSSL_35: &str = "\
                   sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s
rsa  2048 bits 0.000565s 0.000017s 0.000018s 0.000563s   1770.0  59525.5  56071.4   1776.5
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0001s  48000.0  16000.0
";

    #[test]
    fn reads_openssl_verify_rates() {
        assert_eq!(parse_openssl_verify(OPENSSL_30, "rsa 2048 bits").expect("rsa"), 41467.3);
        assert_eq!(parse_openssl_verify(OPENSSL_30, "ecdsa (nistp256)").expect("ec"), 12925.0);
        assert_eq!(parse_openssl_verify(OPENSSL_35, "rsa  2048 bits").expect("rsa"), 59525.5);
        assert_eq!(parse_openssl_verify(OPENSSL_35, "ecdsa (nistp256)").expect("ec"), 16000.0);
        assert!(parse_openssl_verify("nothing", "rsa 2048 bits").is_err());
    }

    #[test]
    fn reads_pgbench_tps() {
        let output = "number of failed transactions: 0 (0.000%)\nlatency average = 4.1 ms\n\
                      initial connection time = 12.3 ms\ntps = 3890.123456 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(output).expect("tps"), 3890.123456);
        assert!(parse_pgbench_tps("").is_err());
    }

    #[test]
    fn bulk_rows_look_like_the_stores() {
        let sql = bulk_insert_sql("wksp_X", 1, 999);
        assert!(sql.contains("generate_series(1::bigint, 999::bigint)"));
        // 'ws_apik_' + a 26-character ULID-shaped body.
        assert_eq!("01BENCH".len() + 19, 26);
    }

    #[test]
    fn bulk_audit_rows_look_like_the_pipelines() {
        let sql = bulk_audit_sql("01ORG", 2, 1_000_000);
        assert!(sql.contains("generate_series(2::bigint, 1000000::bigint)"));
        // A token id keys-core parses: 'st_' + 26 Crockford characters.
        let token = "01BENCH0000000000000000000";
        assert!(sql.contains(&format!("'st_{token}'")) && token.len() == 26);
    }

    #[test]
    fn pairs_and_rounds() {
        assert_eq!(paired_ratios(&[1.0, 3.0], &[2.0, 0.0])[0], 0.5);
        assert!(paired_ratios(&[1.0], &[0.0])[0].is_nan());
        assert_eq!(round(1.23456, 2), json!(1.23));
        assert_eq!(round(f64::NAN, 2), Value::Null);
    }
}
