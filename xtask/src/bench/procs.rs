//! The processes of a bench run: keysd servers, the hello server, a scratch
//! PostgreSQL database. Every one is owned by a guard that stops (or drops)
//! it when the guard goes out of scope, on success and on error alike.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    /// The bootstrap service token (keysd only).
    pub token: String,
    /// The bootstrap organisation id (keysd only).
    pub organisation_id: String,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }

    /// Resident memory now and at its peak, in KiB, from `/proc/PID/status`.
    pub fn memory_kib(&self) -> Result<Memory> {
        memory_kib(self.pid())
    }

    /// CPU time (user + system) consumed so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        cpu_time(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Starts a server and waits for its `… listening on http://ADDR` line,
/// collecting the keysd bootstrap lines on the way.
fn spawn_server(name: &str, mut command: Command, log: &Path) -> Result<Server> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log_file);
    let mut child = command.spawn().with_context(|| format!("starting {name}: {command:?}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _killed = child.kill();
        bail!("{name}: no stdout");
    };
    let (lines_tx, lines_rx) = mpsc::channel::<String>();
    // Reads stdout to the end (the pipe must never fill up); ends when the
    // process exits.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                // Nobody listens any more; keep draining.
            }
        }
    });
    let mut server = Server {
        name: name.to_owned(),
        addr: "127.0.0.1:0".parse()?,
        child,
        token: String::new(),
        organisation_id: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            bail!("{name} did not report its address within 120 s (log: {})", log.display());
        }
        let line = match lines_rx.recv_timeout(remaining.min(Duration::from_millis(200))) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(status)) = server.child.try_wait() {
                    bail!("{name} exited with {status} before listening; log {}:\n{}", log.display(), tail(log));
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{name} closed its stdout before listening; log {}:\n{}", log.display(), tail(log));
            }
        };
        if let Some(token) = line.split("store it now): ").nth(1) {
            server.token = token.trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("keysd bootstrapped organisation 'default' (") {
            server.organisation_id = rest.split(')').next().unwrap_or_default().to_owned();
        } else if let Some(address) = line.split("listening on http://").nth(1) {
            server.addr = address.trim().parse().with_context(|| format!("{name}: bad address line {line:?}"))?;
            return Ok(server);
        }
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// `keysd serve` on a free loopback port; on an empty database it prints a
/// service token, which is required here.
pub fn start_keysd(binary: &Path, name: &str, database_url: &str, log: &Path) -> Result<Server> {
    start_keysd_with(binary, name, database_url, log, &[])
}

/// The cap of keys per workspace every keysd of the bench runs with: the
/// creates of figure 5 and the imports of figure 8 put more than the
/// default 10,000 into one workspace. Counting against a cap costs the same
/// whatever its value.
pub const BENCH_KEYS_PER_WORKSPACE: &str = "100000000";

/// `keysd serve` on an empty database with these extra flags.
pub fn start_keysd_with(binary: &Path, name: &str, database_url: &str, log: &Path, flags: &[&str]) -> Result<Server> {
    let mut command = Command::new(binary);
    command.args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url]).args(flags);
    command.args(["--max-keys-per-workspace", BENCH_KEYS_PER_WORKSPACE]);
    command.env_remove("KEYSD_LISTEN").env_remove("KEYSD_DATABASE_URL");
    let server = spawn_server(name, command, log)?;
    if server.token.is_empty() || server.organisation_id.is_empty() {
        bail!("{name}: keysd did not bootstrap (the database was not empty?)");
    }
    Ok(server)
}

/// A further replica: `keysd serve` on the database `first` bootstrapped.
/// It prints no token (it does not bootstrap), so it is called with
/// `first`'s.
pub fn start_keysd_replica(
    binary: &Path,
    name: &str,
    first: &Server,
    database_url: &str,
    log: &Path,
) -> Result<Server> {
    start_keysd_replica_with(binary, name, first, database_url, log, &[])
}

/// [`start_keysd_replica`] with these extra flags.
pub fn start_keysd_replica_with(
    binary: &Path,
    name: &str,
    first: &Server,
    database_url: &str,
    log: &Path,
    flags: &[&str],
) -> Result<Server> {
    let mut command = Command::new(binary);
    command.args(["serve", "--listen", "127.0.0.1:0", "--database-url", database_url]).args(flags);
    command.args(["--max-keys-per-workspace", BENCH_KEYS_PER_WORKSPACE]);
    command.env_remove("KEYSD_LISTEN").env_remove("KEYSD_DATABASE_URL");
    let mut server = spawn_server(name, command, log)?;
    if !server.token.is_empty() {
        bail!("{name}: keysd bootstrapped the database of {} again", first.name);
    }
    server.token = first.token.clone();
    server.organisation_id = first.organisation_id.clone();
    Ok(server)
}

/// The hello baseline: this very binary, `xtask bench-hello`.
pub fn start_hello(log: &Path) -> Result<Server> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let mut command = Command::new(exe);
    command.args(["bench-hello", "127.0.0.1:0"]);
    spawn_server("hello", command, log)
}

/// VmRSS and VmHWM (peak resident set), KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

pub fn memory_kib(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/PID/status")?;
    let field = |name: &str| -> Result<u64> {
        let line = status.lines().find(|line| line.starts_with(name)).ok_or_else(|| anyhow!("no {name}"))?;
        line.split_whitespace().nth(1).ok_or_else(|| anyhow!("bad {name}"))?.parse().context("parsing memory")
    };
    Ok(Memory { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:")? })
}

/// utime + stime of a process, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/PID/stat")?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).ok_or_else(|| anyhow!("bad /proc/PID/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11)
        .zip(fields.get(12))
        .map_or(Ok(0), |(user, system)| Ok::<_, anyhow::Error>(user.parse::<u64>()? + system.parse::<u64>()?))?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A scratch PostgreSQL database, dropped (with its connections) on drop.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl ScratchDatabase {
    /// Creates `keysd_bench_<random>` on the server of `admin_url`.
    pub fn create(admin_url: &str, suffix: &str) -> Result<Self> {
        let name = format!("keysd_bench_{suffix}");
        psql(admin_url, &format!("CREATE DATABASE {name}"))?;
        let url = with_database(admin_url, &name);
        Ok(Self { admin_url: admin_url.to_owned(), name, url })
    }

    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(&self.url, sql)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(error) = psql(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("bench: could not drop database {}: {error:#}", self.name);
        }
    }
}

/// `url` with its database (the path) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, query) = match rest.split_once('/') {
        Some((authority, path)) => (authority, path.split_once('?').map(|(_, query)| query)),
        None => (rest, None),
    };
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

/// Runs SQL through `psql` and returns its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> Result<String> {
    let output = Command::new("psql")
        .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!("psql failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(suffix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("keysd-bench-{suffix}"));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _removed = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_swap_the_path_only() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(with_database("postgres://u:p@h/test?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
        assert_eq!(with_database("postgres://h:5432", "x"), "postgres://h:5432/x");
    }

    #[test]
    fn reads_own_memory_and_cpu() {
        let me = std::process::id();
        let memory = memory_kib(me).expect("memory");
        assert!(memory.rss_kib > 0 && memory.peak_kib >= memory.rss_kib);
        assert!(cpu_time(me).is_ok());
    }
}
