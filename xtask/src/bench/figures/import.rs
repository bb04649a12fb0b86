//! Figure 8: `keysd import` of generated foreign keys on PostgreSQL, the
//! whole command timed, against `COPY` of the same rows into a scratch
//! table of the same database (`psql \copy`, the whole command timed too),
//! and the rerun of the same file, every key skipped; 8b, the import's peak
//! resident memory. Each run has a scratch database and keysd bootstrap of
//! its own, so every run imports into an empty workspace.
//!
//! A command that fails (or prints counts other than the file's) is
//! recorded, with what it stored before it stopped, and reported; it does
//! not stop the bench, since the other figures still stand.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand_core::RngCore;
use serde_json::json;

use super::drive::{progress, scratch_keysd};
use super::results::{CliRun, ImportRun, Results};
use crate::bench::procs::{self, TempDir};
use crate::bench::Options;

/// The scratch table of the baseline: the main columns of `api_keys`, with
/// its primary key, its unique digest and its listing index.
const COPY_TABLE: &str = "CREATE TABLE bench_import_copy (id text COLLATE \"C\" PRIMARY KEY, \
     workspace_uid text COLLATE \"C\" NOT NULL, digest bytea NOT NULL UNIQUE, masked text NOT NULL, \
     name text NOT NULL, created_at timestamptz NOT NULL); \
     CREATE INDEX bench_import_copy_workspace_created_idx ON bench_import_copy (workspace_uid, created_at DESC, id DESC)";

/// How long one command may take before it is stopped.
const COMMAND_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Where GNU time lives; `-v` reports the child's peak resident set from
/// `wait4`, exact where sampling `/proc` could miss the last milliseconds.
const GNU_TIME: &str = "/usr/bin/time";

/// Figure 8: `options.import_runs` runs, each on a fresh database: the
/// `COPY`, the import, the rerun.
pub(super) async fn import(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    let keys = options.import_keys;
    progress(&format!("8. keysd import of {keys} foreign keys on PostgreSQL, beside COPY of the same rows"));
    let started = Instant::now();
    let keys_file = temp.path.join("import-keys.ndjson");
    let copy_file = temp.path.join("import-copy.csv");
    write_files(keys, &keys_file, &copy_file)?;
    progress(&format!(
        "  wrote {} ({:.1} MiB) and {} ({:.1} MiB) in {:.1} s",
        keys_file.display(),
        file_mib(&keys_file),
        copy_file.display(),
        file_mib(&copy_file),
        started.elapsed().as_secs_f64()
    ));
    let wrapped = Path::new(GNU_TIME).exists();
    results.import.keys = keys;
    results.import.peak_method = if wrapped {
        "`/usr/bin/time -v` (the process's maximum resident set, from wait4)".to_owned()
    } else {
        "VmHWM of /proc/PID/status, read every 10 ms until the process exits".to_owned()
    };
    for index in 0..options.import_runs {
        let figure = format!("import{index}");
        let (database, server) = scratch_keysd(keysd, admin, temp, &figure)?;
        let organisation = server.organisation_id.clone();
        // The import is an operator command on the database; no server
        // runs beside it (its cache would follow the import's changes).
        drop(server);
        let workspace = database.psql("SELECT uid FROM workspaces WHERE slug = 'staging'")?;
        let stored_sql = format!("SELECT count(*) FROM api_keys WHERE workspace_uid = '{workspace}'");
        let stored = || -> Result<u64> { database.psql(&stored_sql)?.parse().context("counting imported keys") };
        database.psql(COPY_TABLE)?;

        checkpoint(&database.url);
        let copy_sql = format!(
            "\\copy bench_import_copy (id, workspace_uid, digest, masked, name, created_at) FROM '{}' \
             WITH (FORMAT csv)",
            copy_file.display()
        );
        let mut copy = tokio::process::Command::new("psql");
        copy.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &database.url, "-c", &copy_sql]);
        let copied = measured(copy, wrapped, &temp.path.join(format!("{figure}-copy"))).await?;
        let copied_rows: u64 =
            database.psql("SELECT count(*) FROM bench_import_copy")?.parse().context("counting copied rows")?;
        if !copied.status.success() || copied_rows != keys {
            anyhow::bail!("psql \\copy: {}, {copied_rows} rows of {keys}: {}", copied.status, copied.stderr_tail);
        }

        let before = stored()?;
        checkpoint(&database.url);
        let import = import_command(keysd, &database.url, &organisation, &keys_file);
        let first = measured(import, wrapped, &temp.path.join(format!("{figure}-first"))).await?;
        let first = cli_run(first, (keys, 0), stored()?.saturating_sub(before));

        checkpoint(&database.url);
        let import = import_command(keysd, &database.url, &organisation, &keys_file);
        let again = measured(import, wrapped, &temp.path.join(format!("{figure}-rerun"))).await?;
        let again = cli_run(again, (0, keys), stored()?.saturating_sub(before));

        let run =
            ImportRun { copy_seconds: copied.seconds, copy_peak_rss_kib: copied.peak_kib, import: first, rerun: again };
        log_import_run(index, options.import_runs, keys, &run);
        results.import.runs.push(run);
        drop(database);
    }
    Ok(())
}

/// `keysd import` of `file` into the bootstrap's `staging` workspace.
fn import_command(keysd: &Path, url: &str, organisation: &str, file: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(keysd);
    command.args(["import", "--database-url", url, "--org", organisation, "--workspace", "staging"]).arg(file);
    command.args(["--max-keys-per-workspace", crate::bench::procs::BENCH_KEYS_PER_WORKSPACE]);
    command.env_remove("KEYSD_DATABASE_URL").env_remove("KEYSD_CONFIG").env_remove("KEYSD_LOG_FORMAT");
    command
}

/// A `CHECKPOINT`, so that one timed phase does not pay for flushing the
/// pages the one before it dirtied (a superuser's right: skipped quietly
/// without it).
fn checkpoint(url: &str) {
    let _flushed = procs::psql(url, "CHECKPOINT");
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |metadata| metadata.len() as f64 / (1024.0 * 1024.0))
}

fn log_import_run(index: usize, runs: usize, keys: u64, run: &ImportRun) {
    let rate = |count: u64, seconds: f64| keys_per_second(count, seconds);
    let outcome = |cli: &CliRun, expected: (u64, u64)| match &cli.error {
        None => format!("{:.0} keys/s", rate(keys, cli.seconds)),
        Some(error) => format!(
            "FAILED after storing {} ({:.0} keys/s until then; expected imported {}, skipped {}): {error}",
            cli.stored,
            rate(cli.stored, cli.seconds),
            expected.0,
            expected.1
        ),
    };
    progress(&format!(
        "  run {}/{runs}: COPY {:.2} s ({:.0} rows/s); import {:.2} s, {}, peak RSS {:.1} MiB; rerun {:.2} s, {}",
        index + 1,
        run.copy_seconds,
        rate(keys, run.copy_seconds),
        run.import.seconds,
        outcome(&run.import, (keys, 0)),
        run.import.peak_rss_kib as f64 / 1024.0,
        run.rerun.seconds,
        outcome(&run.rerun, (0, keys)),
    ));
}

/// Keys (or rows) per second; NaN for a run that took no time.
pub fn keys_per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        f64::NAN
    }
}

/// A finished command: its exit, its wall time from spawn to exit, its
/// peak resident set, what it printed.
struct Measured {
    status: ExitStatus,
    seconds: f64,
    peak_kib: u64,
    stdout: String,
    stderr_tail: String,
}

/// Runs `command` to its end with its output in files beside `stem`, timing
/// it from spawn to exit. Its peak resident set comes from GNU time when
/// `wrapped` (the command runs under `/usr/bin/time -v -o FILE`), else from
/// `VmHWM` read every 10 ms. A command past [`COMMAND_LIMIT`] is killed.
async fn measured(command: tokio::process::Command, wrapped: bool, stem: &Path) -> Result<Measured> {
    let with = |extension: &str| -> PathBuf { stem.with_extension(extension) };
    let (stdout_path, stderr_path, time_path) = (with("stdout"), with("stderr"), with("time"));
    let mut command = if wrapped {
        let inner = command.as_std();
        let mut outer = tokio::process::Command::new(GNU_TIME);
        outer.arg("-v").arg("-o").arg(&time_path).arg(inner.get_program()).args(inner.get_args());
        for (name, value) in inner.get_envs() {
            match value {
                Some(value) => outer.env(name, value),
                None => outer.env_remove(name),
            };
        }
        outer
    } else {
        command
    };
    command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).context("creating a stdout file")?)
        .stderr(std::fs::File::create(&stderr_path).context("creating a stderr file")?)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().with_context(|| format!("starting {:?}", command.as_std()))?;
    let pid = child.id().context("the command's pid")?;
    let mut peak_kib = 0;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for the command")?,
            () = tokio::time::sleep(Duration::from_millis(10)) => {
                if !wrapped {
                    if let Ok(memory) = procs::memory_kib(pid) {
                        peak_kib = peak_kib.max(memory.peak_kib);
                    }
                }
                if started.elapsed() > COMMAND_LIMIT {
                    // Under GNU time the command is its child: stop it first.
                    for grandchild in children(pid) {
                        let _sent = std::process::Command::new("kill").arg("-KILL").arg(grandchild.to_string()).status();
                    }
                    let _killed = child.kill().await;
                    anyhow::bail!("{:?} ran past {} s and was stopped", command.as_std(), COMMAND_LIMIT.as_secs());
                }
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    if wrapped {
        let report = std::fs::read_to_string(&time_path).unwrap_or_default();
        peak_kib = parse_gnu_time_peak(&report).unwrap_or(0);
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // GNU time adds "Command exited with non-zero status N" to its own
    // report (a file), never to the command's stderr.
    let stderr_tail = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default().to_owned();
    Ok(Measured { status, seconds, peak_kib, stdout: std::fs::read_to_string(&stdout_path)?, stderr_tail })
}

/// The children of `pid` (Linux: `/proc/PID/task/PID/children`).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// `Maximum resident set size (kbytes): 15248` of `time -v`.
pub fn parse_gnu_time_peak(report: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Maximum resident set size (kbytes):"))
        .and_then(|value| value.trim().parse().ok())
}

/// `imported N, skipped M`, the one line `keysd import` prints.
pub fn parse_import_counts(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout.lines().rev().find(|line| line.starts_with("imported "))?;
    let (imported, skipped) = line.strip_prefix("imported ")?.split_once(", skipped ")?;
    Some((imported.trim().parse().ok()?, skipped.trim().parse().ok()?))
}

/// One `keysd import` reduced: an error when it failed or its counts are
/// not `expected` (imported, skipped); `stored` is what the workspace held
/// after it, beyond what it held before the first import.
fn cli_run(measured: Measured, expected: (u64, u64), stored: u64) -> CliRun {
    let counts = parse_import_counts(&measured.stdout);
    let error = if !measured.status.success() {
        Some(format!("{}: {}", measured.status, measured.stderr_tail))
    } else if counts != Some(expected) {
        Some(format!("printed {:?}, expected imported {}, skipped {}", measured.stdout.trim(), expected.0, expected.1))
    } else {
        None
    };
    let (imported, skipped) = (counts.map(|counts| counts.0), counts.map(|counts| counts.1));
    CliRun { seconds: measured.seconds, peak_rss_kib: measured.peak_kib, imported, skipped, stored, error }
}

/// The characters of a generated foreign key's random part.
const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Keys in another system's format: `sk_live_` and 32 random alphanumerics
/// (40 characters), from the OS's generator, drawn in large blocks.
pub(super) struct ForeignKeys {
    block: Vec<u8>,
    used: usize,
}

impl ForeignKeys {
    pub(super) fn new() -> Self {
        Self { block: vec![0; 64 * 1024], used: usize::MAX }
    }

    fn random_byte(&mut self) -> u8 {
        if self.used >= self.block.len() {
            rand_core::OsRng.fill_bytes(&mut self.block);
            self.used = 0;
        }
        self.used += 1;
        self.block[self.used - 1]
    }

    pub(super) fn next_key(&mut self) -> String {
        let mut key = String::with_capacity(40);
        key.push_str("sk_live_");
        while key.len() < 40 {
            // 248 = 4 × 62: the bytes above it are dropped, so every
            // character is equally likely.
            let byte = self.random_byte();
            if byte < 248 {
                key.push(char::from(ALPHANUMERIC[usize::from(byte % 62)]));
            }
        }
        key
    }
}

/// Writes `keys` generated keys as `keysd import` reads them (`{"key":…,
/// "name":…}` a line) and the rows keysd stores for them as `COPY` reads
/// CSV: an id shaped like keysd's, a workspace uid, the SHA-256 digest, the
/// mask keysd makes (the first quarter of the text, at most 10
/// characters, then `*****`), the name, a creation time.
fn write_files(keys: u64, keys_file: &Path, copy_file: &Path) -> Result<()> {
    use std::io::Write as _;
    let create = |path: &Path| -> Result<std::io::BufWriter<std::fs::File>> {
        let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(std::io::BufWriter::with_capacity(1 << 20, file))
    };
    let (mut ndjson, mut csv) = (create(keys_file)?, create(copy_file)?);
    let workspace = "wksp_01BENCH0000000000000000000";
    let created_at = "2026-01-01 00:00:00+00";
    let mut generator = ForeignKeys::new();
    for number in 1..=keys {
        let key = generator.next_key();
        let name = format!("imported key {number}");
        writeln!(ndjson, "{}", json!({"key": key, "name": name}))?;
        let digest = keys_crypto::secret::sha256_digest(key.as_bytes()).to_hex();
        let masked = format!("{}*****", &key[..(key.len() / 4).min(10)]);
        writeln!(csv, "ws_apik_01BENCH{number:019},{workspace},\\x{digest},{masked},{name},{created_at}")?;
    }
    ndjson.flush()?;
    csv.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_keys_are_40_alphanumerics_after_the_prefix() {
        let mut generator = ForeignKeys::new();
        let first = generator.next_key();
        assert_eq!(first.len(), 40);
        assert!(first.starts_with("sk_live_"));
        assert!(first["sk_live_".len()..].bytes().all(|byte| byte.is_ascii_alphanumeric()));
        assert_ne!(first, generator.next_key());
    }

    #[test]
    fn reads_what_the_commands_print() {
        assert_eq!(parse_import_counts("imported 100000, skipped 0\n"), Some((100_000, 0)));
        assert_eq!(parse_import_counts("imported 0, skipped 7"), Some((0, 7)));
        assert_eq!(parse_import_counts(""), None);
        let report = "\tPercent of CPU this job got: 93%\n\tMaximum resident set size (kbytes): 15248\n";
        assert_eq!(parse_gnu_time_peak(report), Some(15_248));
        assert_eq!(parse_gnu_time_peak("nothing"), None);
        assert!(keys_per_second(1, 0.0).is_nan());
        assert_eq!(keys_per_second(10, 2.0), 5.0);
    }

    #[test]
    fn the_two_files_hold_the_same_keys() {
        let directory = std::env::temp_dir().join(format!("keysd-bench-import-test-{}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("directory");
        let (keys_file, copy_file) = (directory.join("keys.ndjson"), directory.join("copy.csv"));
        write_files(3, &keys_file, &copy_file).expect("written");
        let ndjson = std::fs::read_to_string(&keys_file).expect("keys");
        let csv = std::fs::read_to_string(&copy_file).expect("rows");
        std::fs::remove_dir_all(&directory).expect("removed");
        assert_eq!((ndjson.lines().count(), csv.lines().count()), (3, 3));
        for (line, row) in ndjson.lines().zip(csv.lines()) {
            let entry: serde_json::Value = serde_json::from_str(line).expect("json");
            let key = entry["key"].as_str().expect("key");
            let digest = keys_crypto::secret::sha256_digest(key.as_bytes()).to_hex();
            let columns: Vec<&str> = row.split(',').collect();
            assert_eq!(columns.len(), 6, "{row}");
            assert_eq!(columns[2], format!("\\x{digest}"));
            assert_eq!(columns[3], format!("{}*****", &key[..10]));
            assert_eq!(columns[4], entry["name"].as_str().expect("name"));
        }
    }
}
