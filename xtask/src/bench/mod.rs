//! `cargo xtask bench [--quick]`: builds keysd and this tool in release,
//! starts what it needs on loopback (keysd on SQLite and on a scratch
//! PostgreSQL database, a hello baseline server), drives load with the
//! in-repo load generator ([`load`]) and writes `docs/BENCHMARKS.md` and
//! `docs/benchmarks.json`.
//!
//! Every figure is the median of several runs and is paired with a baseline
//! measured in the same invocation, interleaved run by run where both are
//! HTTP/SQL loads (hello vs keysd, pgbench vs keysd). Every child process
//! and the scratch databases are owned by guards ([`procs`]) and stopped or
//! dropped when the run ends, on error too. Nothing here is a test: no
//! figure is asserted anywhere, targets are only reported as met or not.

mod figures;
pub mod hello;
mod load;
mod procs;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, project_root, run};

/// What `cargo xtask bench` does, from its flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// Connections of the throughput figures (1, 3).
    pub concurrency: usize,
    /// Length of one measured run.
    pub duration: Duration,
    /// Runs per figure (the median is reported).
    pub runs: usize,
    /// Unmeasured load before a series of runs.
    pub warmup: Duration,
    /// Connections of the key-count scaling figure (2).
    pub scale_concurrency: usize,
    /// Stored API keys of figure 2.
    pub key_counts: Vec<u64>,
    /// Audit events of the organisation in figure 6 (the last is exported, 6b).
    pub audit_event_counts: Vec<u64>,
    /// Clients of the management-write figure (5), keysd and pgbench alike.
    pub write_concurrency: usize,
    /// Steady key-creation rate (4), per second.
    pub rate: f64,
    /// Length of one steady key-creation run.
    pub steady_duration: Duration,
    /// Simultaneous key creations of a burst (4).
    pub burst: usize,
    /// Worker threads of the load generator.
    pub client_threads: usize,
    /// Time budget for pre-signing the distinct RS256 tokens (3).
    pub rs256_signing_budget: Duration,
    /// `openssl speed -seconds`.
    pub openssl_seconds: u32,
    /// Keys of the generated file `keysd import` reads (8).
    pub import_keys: u64,
    /// Runs of the import figure (8), each on a fresh database.
    pub import_runs: usize,
    /// Keys with a month of hourly usage counts in the table of the usage
    /// query (9), the key asked for among them.
    pub usage_keys: u64,
    /// Keys verified once each to measure the usage writer's rows and
    /// bytes (9b).
    pub usage_active_keys: u64,
    /// Where BENCHMARKS.md and benchmarks.json go.
    pub out_dir: PathBuf,
    /// Run one group of figures only, print its rows and write no file.
    pub only: Option<Only>,
}

/// The figures `--only` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// The hello baseline started and figure 10 (metering).
    Metering,
    /// Figure 11 (webhooks).
    Webhooks,
}

impl Only {
    /// The figure's number.
    pub fn figure(self) -> u32 {
        match self {
            Self::Metering => 10,
            Self::Webhooks => 11,
        }
    }
}

impl Options {
    fn defaults(quick: bool) -> Self {
        Self {
            quick,
            concurrency: 32,
            duration: Duration::from_secs(if quick { 2 } else { 8 }),
            runs: if quick { 3 } else { 5 },
            warmup: Duration::from_millis(if quick { 500 } else { 2000 }),
            scale_concurrency: 1,
            key_counts: if quick { vec![1_000, 100_000] } else { vec![1_000, 100_000, 1_000_000] },
            audit_event_counts: if quick { vec![1_000, 100_000] } else { vec![1_000, 1_000_000] },
            write_concurrency: 16,
            rate: 5.0,
            steady_duration: Duration::from_secs(if quick { 2 } else { 12 }),
            burst: if quick { 8 } else { 16 },
            client_threads: 1,
            rs256_signing_budget: Duration::from_secs(if quick { 3 } else { 20 }),
            openssl_seconds: if quick { 1 } else { 3 },
            import_keys: if quick { 100_000 } else { 1_000_000 },
            import_runs: 3,
            usage_keys: if quick { 10_000 } else { 100_000 },
            usage_active_keys: 10_000,
            out_dir: project_root().join("docs"),
            only: None,
        }
    }

    fn parse(args: &[String]) -> Result<Self> {
        let quick = args.iter().any(|arg| arg == "--quick");
        let mut options = Self::defaults(quick);
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let mut value = || iter.next().with_context(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--quick" | "--built" => {}
                "--concurrency" | "-c" => options.concurrency = positive(value()?)?,
                "--duration" | "-d" => options.duration = seconds(value()?)?,
                "--runs" => options.runs = positive(value()?)?,
                "--warmup" => options.warmup = Duration::from_secs_f64(value()?.parse().context("--warmup")?),
                "--scale-concurrency" => options.scale_concurrency = positive(value()?)?,
                "--keys" => {
                    options.key_counts = value()?
                        .split(',')
                        .map(|count| {
                            count.trim().replace('_', "").parse::<u64>().context("--keys takes counts like 1000,100000")
                        })
                        .collect::<Result<_>>()?;
                    if options.key_counts.is_empty() || options.key_counts.contains(&0) {
                        bail!("--keys needs positive counts");
                    }
                    options.key_counts.sort_unstable();
                    options.key_counts.dedup();
                }
                "--audit-events" => {
                    options.audit_event_counts = value()?
                        .split(',')
                        .map(|count| {
                            let count = count.trim().replace('_', "");
                            count.parse::<u64>().context("--audit-events takes counts like 1000,1000000")
                        })
                        .collect::<Result<_>>()?;
                    if options.audit_event_counts.is_empty() || options.audit_event_counts.contains(&0) {
                        bail!("--audit-events needs positive counts");
                    }
                    options.audit_event_counts.sort_unstable();
                    options.audit_event_counts.dedup();
                }
                "--write-concurrency" => options.write_concurrency = positive(value()?)?,
                "--rate" => {
                    options.rate = value()?.parse().context("--rate")?;
                    if !(options.rate > 0.0 && options.rate <= 1000.0) {
                        bail!("--rate must be in (0, 1000]");
                    }
                }
                "--steady-duration" => options.steady_duration = seconds(value()?)?,
                "--burst" => options.burst = positive(value()?)?,
                "--client-threads" => options.client_threads = positive(value()?)?,
                "--import-keys" => {
                    let count = value()?.replace('_', "");
                    options.import_keys = count.parse().context("--import-keys takes a count like 1000000")?;
                    if !(1..=100_000_000).contains(&options.import_keys) {
                        bail!("--import-keys must be in 1..=100000000");
                    }
                }
                "--import-runs" => options.import_runs = positive(value()?)?,
                "--usage-keys" => options.usage_keys = count(value()?, "--usage-keys", 1_000_000)?,
                "--usage-active-keys" => {
                    options.usage_active_keys = count(value()?, "--usage-active-keys", 1_000_000)?;
                }
                "--out" => options.out_dir = PathBuf::from(value()?),
                "--only" => {
                    options.only = match value()?.as_str() {
                        "metering" => Some(Only::Metering),
                        "webhooks" => Some(Only::Webhooks),
                        other => bail!("--only takes metering or webhooks, got {other:?}"),
                    }
                }
                other => bail!("unknown flag {other}\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

fn positive(text: &str) -> Result<usize> {
    match text.parse::<usize>() {
        Ok(value) if value > 0 && value <= 10_000 => Ok(value),
        _ => bail!("expected a count in 1..=10000, got {text:?}"),
    }
}

/// A count in `1..=most`, written `100000` or `100_000`.
fn count(text: &str, flag: &str, most: u64) -> Result<u64> {
    match text.replace('_', "").parse::<u64>() {
        Ok(value) if (1..=most).contains(&value) => Ok(value),
        _ => bail!("{flag} takes a count in 1..={most}, got {text:?}"),
    }
}

fn seconds(text: &str) -> Result<Duration> {
    match text.trim_end_matches('s').parse::<u64>() {
        Ok(value) if (1..=3600).contains(&value) => Ok(Duration::from_secs(value)),
        _ => bail!("expected whole seconds in 1..=3600, got {text:?}"),
    }
}

pub const USAGE: &str = "\
usage: cargo xtask bench [--quick] [flags]
  --quick                 a fast check (under 2 minutes): short runs, key counts up to 100k
  -c, --concurrency N     connections of the throughput runs (default 32)
  -d, --duration S        seconds per measured run (default 8, quick 2)
  --runs N                runs per figure, the median is reported (default 5, quick 3)
  --warmup S              unmeasured load before each series (default 2, quick 0.5)
  --scale-concurrency N   connections of the key-count scaling runs (default 1)
  --keys A,B,C            stored API keys of the scaling figure (default 1000,100000,1000000)
  --audit-events A,B      audit events of the audit-page figure (default 1000,1000000, quick 1000,100000)
  --write-concurrency N   clients of the management-write figure, keysd and pgbench (default 16)
  --rate R                steady key-creation rate per second (default 5)
  --steady-duration S     seconds per steady key-creation run (default 12, quick 2)
  --burst N               simultaneous key creations of a burst (default 16, quick 8)
  --client-threads N      load generator threads (default 1)
  --import-keys N         keys of the file `keysd import` reads (default 1000000, quick 100000)
  --import-runs N         runs of the import figure, each on a fresh database (default 3)
  --usage-keys N          keys with a month of hourly usage in the usage-query figure (default 100000, quick 10000)
  --usage-active-keys N   keys verified once each to measure the usage writer's rows and bytes (default 10000)
  --out DIR               where BENCHMARKS.md and benchmarks.json go (default docs/)
  --only metering         only the hello baseline and figure 10 (metering); prints its rows, writes no file
  --only webhooks         only figure 11 (webhooks); prints its rows, writes no file";

/// `cargo xtask bench ARGS`: builds in release, then runs the release build
/// of this tool (a debug load generator would measure itself).
pub fn main(args: &[String]) -> Result<()> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let options = Options::parse(args)?;
    if !args.iter().any(|arg| arg == "--built") {
        let mut build = cargo();
        build.args(["build", "--release", "--package", "keysd", "--package", "xtask"]);
        run(build)?;
        let exe = target_dir().join("release").join("xtask");
        let mut inner = Command::new(&exe);
        inner.arg("bench").arg("--built").args(args).current_dir(project_root());
        let status = inner.status().with_context(|| format!("starting {}", exe.display()))?;
        if !status.success() {
            bail!("the benchmark failed ({status})");
        }
        return Ok(());
    }
    if cfg!(debug_assertions) {
        eprintln!("bench: warning: this is a debug build of xtask; the load generator will be slow");
    }
    crate::ensure_postgres()?;
    let keysd = std::env::current_exe()
        .context("locating xtask")?
        .parent()
        .map(|dir| dir.join("keysd"))
        .filter(|path| path.exists())
        .context("target/release/keysd not found next to xtask (run `cargo xtask bench`, which builds it)")?;
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.client_threads)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if let Some(only) = options.only {
        let results = runtime.block_on(figures::run_only(&options, &keysd, only))?;
        drop(runtime);
        report::print_only(&options, &results, only);
        eprintln!("bench: done in {:.0} s; --only writes no file", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let results = runtime.block_on(figures::run_all(&options, &keysd))?;
    drop(runtime);
    let elapsed = started.elapsed();
    report::write(&options, &results, elapsed)?;
    eprintln!(
        "bench: done in {:.0} s; wrote {} and {}",
        elapsed.as_secs_f64(),
        options.out_dir.join("BENCHMARKS.md").display(),
        options.out_dir.join("benchmarks.json").display()
    );
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| project_root().join("target"), PathBuf::from)
}

/// The PostgreSQL server to create scratch databases on.
fn admin_url() -> String {
    std::env::var("KEYSD_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("KEYSD_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A short random hex string for scratch names.
fn random_suffix() -> String {
    use rand_core::RngCore;
    format!("{:012x}", rand_core::OsRng.next_u64() & 0xffff_ffff_ffff)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|value| !value.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn display(path: &Path) -> String {
    path.strip_prefix(project_root()).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn quick_and_flags_parse() {
        let options =
            Options::parse(&args(&["--quick", "-c", "8", "--duration", "3", "--keys", "1000,10_000"])).expect("parses");
        assert!(options.quick);
        assert_eq!(options.concurrency, 8);
        assert_eq!(options.duration, Duration::from_secs(3));
        assert_eq!(options.key_counts, vec![1_000, 10_000]);
        assert_eq!(options.runs, 3);
        let full = Options::parse(&[]).expect("parses");
        assert_eq!(full.key_counts, vec![1_000, 100_000, 1_000_000]);
        assert_eq!((full.import_keys, options.import_keys), (1_000_000, 100_000));
        let import = Options::parse(&args(&["--import-keys", "10_000", "--import-runs", "1"])).expect("parses");
        assert_eq!((import.import_keys, import.import_runs), (10_000, 1));
        assert!(Options::parse(&args(&["--import-keys", "0"])).is_err());
        assert_eq!((full.usage_keys, options.usage_keys), (100_000, 10_000));
        assert_eq!((full.usage_active_keys, options.usage_active_keys), (10_000, 10_000));
        let usage = Options::parse(&args(&["--usage-keys", "1_000", "--usage-active-keys", "500"])).expect("parses");
        assert_eq!((usage.usage_keys, usage.usage_active_keys), (1_000, 500));
        assert!(Options::parse(&args(&["--usage-keys", "0"])).is_err());
        assert!(Options::parse(&args(&["--concurrency", "0"])).is_err());
        assert!(Options::parse(&args(&["--bogus"])).is_err());
        assert!(Options::parse(&args(&["--duration"])).is_err());
        assert_eq!((full.only, options.only), (None, None));
        let only = Options::parse(&args(&["--quick", "--only", "metering"])).expect("parses");
        assert_eq!(only.only, Some(Only::Metering));
        let only = Options::parse(&args(&["--quick", "--only", "webhooks"])).expect("parses");
        assert_eq!(only.only, Some(Only::Webhooks));
        assert!(Options::parse(&args(&["--only", "usage"])).is_err());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
