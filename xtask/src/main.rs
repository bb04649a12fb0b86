//! xtask: the project's chores, as `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: formatting, clippy and the whole test suite, with the
//!   local PostgreSQL started first if it is installed but stopped. This is
//!   the README's test command and what `.ci/run` runs.
//! - `cargo xtask pg`: only make sure PostgreSQL is up.
//! - `cargo xtask bench [--quick]`: the benchmarks of docs/BENCHMARKS.md
//!   (see `bench/mod.rs`); `xtask bench-hello ADDR` is its baseline server.
//!
//! It calls cargo through `$CARGO`. Its dependencies beyond anyhow (tokio,
//! hyper, keys-crypto) are the bench's, already built for the workspace.

mod bench;
mod tidy;

use std::env;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("pg") => ensure_postgres(),
        Some("bench") => bench::main(&args[1..]),
        Some("bench-hello") => bench::hello::main(args.get(1).map_or("127.0.0.1:0", String::as_str)),
        _ => {
            eprintln!("usage: cargo xtask <ci|pg|bench>");
            eprintln!("  ci      fmt --check, clippy -D warnings, the whole test suite (PostgreSQL included)");
            eprintln!("  pg      start the local PostgreSQL if it is installed but stopped");
            eprintln!("  bench   build in release and write docs/BENCHMARKS.md (--quick: under 2 minutes; --help)");
            std::process::exit(2);
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command.current_dir(project_root());
    command
}

fn run(mut command: Command) -> Result<()> {
    eprintln!("$ {command:?}");
    let status = command.status().with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn ci() -> Result<()> {
    ensure_postgres()?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
    run(clippy)?;
    let mut test = cargo();
    test.args(["test", "--workspace", "--all-targets"]);
    // The PostgreSQL tests must run, never skip: they fail when the server
    // is unreachable, and this tells them CI expects them.
    test.env("KEYSD_REQUIRE_POSTGRES", "1");
    run(test)?;
    let mut doc_tests = cargo();
    doc_tests.args(["test", "--workspace", "--doc"]);
    run(doc_tests)
}

fn postgres_url() -> String {
    env::var("KEYSD_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn postgres_reachable() -> bool {
    TcpStream::connect_timeout(&"127.0.0.1:5432".parse().expect("static address"), Duration::from_secs(1)).is_ok()
}

/// Starts the local PostgreSQL cluster if it is installed but not running.
fn ensure_postgres() -> Result<()> {
    if env::var("KEYSD_TEST_DATABASE_URL").is_ok() || postgres_reachable() {
        eprintln!("postgres: reachable at {}", postgres_url());
        return Ok(());
    }
    let versions = std::fs::read_dir("/etc/postgresql")
        .context("PostgreSQL is not reachable on 127.0.0.1:5432 and not installed (no /etc/postgresql)")?;
    for version in versions.flatten() {
        let version = version.file_name().to_string_lossy().into_owned();
        eprintln!("postgres: starting cluster {version}/main");
        let mut start = Command::new("pg_ctlcluster");
        start.args(["--skip-systemctl-redirect", &version, "main", "start"]);
        let _ = run(start);
    }
    for _ in 0..30 {
        if postgres_reachable() {
            eprintln!("postgres: up");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("PostgreSQL did not come up on 127.0.0.1:5432")
}
