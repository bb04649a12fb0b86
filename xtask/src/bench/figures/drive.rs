//! How a figure drives load: progress lines, a closed-loop run against a
//! server with its CPU use, the warm-up before a series, a scratch keysd of
//! a figure's own, and the series of runs of a figure at one size.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::results::{MemorySample, Run, Series};
use crate::bench::load::{self, Expect, MakeRequest};
use crate::bench::procs::{self, ScratchDatabase, Server, TempDir};
use crate::bench::{random_suffix, Options};

pub(super) fn progress(message: &str) {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let elapsed = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("bench: [{elapsed:6.1} s] {message}");
}

pub(super) fn log_run(label: &str, index: usize, runs: usize, run: &Run) {
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
pub(super) async fn closed(
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

pub(super) async fn warm_up(
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

pub(super) fn memory_of(server: &Server, after: &str) -> Result<MemorySample> {
    Ok(MemorySample { server: server.name.clone(), after: after.to_owned(), memory: server.memory_kib()? })
}

pub(super) fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value.get(field).and_then(Value::as_str).ok_or_else(|| anyhow!("no string {field} in {value}"))
}

pub(super) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A scratch database of its own for one figure and a keysd on it (the
/// server is declared last, so it stops before the database is dropped).
pub(super) fn scratch_keysd(
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
    figure: &str,
) -> Result<(ScratchDatabase, Server)> {
    let database = ScratchDatabase::create(admin, &format!("{}_{figure}", random_suffix()))?;
    let log = temp.path.join(format!("keysd-{figure}.log"));
    let server = procs::start_keysd(keysd, &format!("keysd-postgres-{figure}"), &database.url, &log)?;
    Ok((database, server))
}

/// The runs of one level of a scaling figure (2, 7): a warm-up, then
/// `options.runs` closed-loop runs at `options.scale_concurrency`.
pub(super) async fn scaling_series(
    options: &Options,
    server: &Server,
    make: &MakeRequest,
    expect: Expect,
    label: &str,
) -> Result<Series> {
    series_at(options, server, options.scale_concurrency, make, expect, label, false).await
}

/// A warm-up, then `options.runs` closed-loop runs at `concurrency`, with
/// the server's CPU use when `track_cpu`.
pub(super) async fn series_at(
    options: &Options,
    server: &Server,
    concurrency: usize,
    make: &MakeRequest,
    expect: Expect,
    label: &str,
    track_cpu: bool,
) -> Result<Series> {
    warm_up(server, concurrency, options.warmup, make, expect).await?;
    let mut series = Series::default();
    for index in 0..options.runs {
        let run = closed(server, concurrency, options.duration, make, expect, track_cpu).await?;
        log_run(label, index, options.runs, &run);
        series.runs.push(run);
    }
    Ok(series)
}
