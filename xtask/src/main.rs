//! xtask: the project's chores, as `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: formatting, clippy, the whole test suite and the fuzz
//!   targets (30 s each), with the local PostgreSQL started first if it is
//!   installed but stopped. This is the README's test command and what
//!   `.ci/run` runs.
//! - `cargo xtask pg`: only make sure PostgreSQL is up.
//! - `cargo xtask fuzz [SECONDS]`: the fuzz targets of `fuzz/`, each for a
//!   bounded time over the committed seed corpus (see `fuzz.rs`); part of
//!   `ci`.
//! - `cargo xtask schemathesis`: schemathesis with every check against a
//!   live `keysd`, both dialects, deterministic and bounded (see
//!   `schemathesis.rs`); part of `ci`, after the tests.
//! - `cargo xtask console`: the console's browser test, headless Chromium
//!   against a live `keysd` (see `console.rs`); part of `ci`, after
//!   schemathesis.
//! - `cargo xtask previous-release`: the previous release's `keysd`, built
//!   once from its recorded commit, for the upgrade test (see
//!   `previous.rs`); part of `ci`, before the tests.
//! - `cargo xtask bench [--quick]`: the benchmarks of docs/BENCHMARKS.md
//!   (see `bench/mod.rs`); `xtask bench-hello ADDR` is its baseline server.
//!
//! It calls cargo through `$CARGO`. Its dependencies beyond anyhow (tokio,
//! hyper, keys-crypto) are the bench's, already built for the workspace.

mod bench;
mod console;
mod fuzz;
mod previous;
mod schemathesis;
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
        Some("fuzz") => fuzz::main(&args[1..]),
        Some("schemathesis") => schemathesis::main(&args[1..]),
        Some("console") => console::run(),
        Some("previous-release") => previous::build().map(|binary| println!("{}", binary.display())),
        Some("bench-hello") => bench::hello::main(args.get(1).map_or("127.0.0.1:0", String::as_str)),
        _ => {
            eprintln!("usage: cargo xtask <ci|pg|bench|fuzz|schemathesis|console>");
            eprintln!("  ci      fmt --check, clippy -D warnings, the whole test suite (PostgreSQL included)");
            eprintln!("  pg      start the local PostgreSQL if it is installed but stopped");
            eprintln!("  bench   build in release and write docs/BENCHMARKS.md (--quick: under 2 minutes; --help)");
            eprintln!("  fuzz    every fuzz target for SECONDS each (default 30, KEYSD_FUZZ_SECONDS)");
            eprintln!("  schemathesis  schemathesis --checks all against a live keysd, both dialects");
            eprintln!("  console  the console's browser test: headless Chromium against a live keysd");
            eprintln!(
                "  previous-release  build the previous release's keysd (for the upgrade test) and print its path"
            );
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
    let mut phases = Phases::default();
    ensure_postgres()?;
    let python = phases.time("tools", ensure_test_tools)?;
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    phases.time("fmt", || run(fmt))?;
    // Clippy lints the workspace while it is built for the tests, instead
    // of a `cargo check` of every crate of its own: every later cargo call
    // builds with clippy-driver as the workspace's rustc and `-D warnings`
    // (what `cargo clippy` does), so the suite's build is the lint. Without
    // clippy-driver, `cargo clippy` runs first, as before.
    match clippy_driver() {
        Some(driver) => {
            env::set_var("RUSTC_WORKSPACE_WRAPPER", driver);
            env::set_var("CLIPPY_ARGS", "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__");
        }
        None => {
            let mut clippy = cargo();
            clippy.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]);
            phases.time("clippy", || run(clippy))?;
        }
    }
    phases.time("test", || test(&python))?;
    let mut doc_tests = cargo();
    doc_tests.args(["test", "--workspace", "--doc"]);
    phases.time("doc tests", || run(doc_tests))?;
    phases.time("schemathesis", || schemathesis::run(&python))?;
    phases.time("console", console::run)?;
    phases.time("fuzz", || fuzz::fuzz(fuzz::seconds_from_env()?))?;
    phases.report();
    Ok(())
}

/// The clippy-driver of the toolchain that runs cargo, if it has one.
fn clippy_driver() -> Option<PathBuf> {
    let output = Command::new("rustup").args(["which", "clippy-driver"]).output().ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && path.exists()).then_some(path)
}

/// The whole test suite, PostgreSQL included. With cargo-nextest (on every
/// machine of this project's kind) the test binaries run side by side, each
/// test in its own process, instead of one binary after another; the
/// examples (the e2e suite runs `embed`) are built first, and the crypto
/// benchmark runs once as a smoke test, as `cargo test --all-targets` would
/// run it. Without nextest, `cargo test --workspace --all-targets` does all
/// of it.
fn test(python: &Path) -> Result<()> {
    let suite = |mut command: Command| {
        // The PostgreSQL tests must run, never skip: they fail when the
        // server is unreachable, and this tells them CI expects them.
        command.env("KEYSD_REQUIRE_POSTGRES", "1");
        // The independent implementations the tests judge keysd with.
        command.env("KEYSD_PYTHON", python);
        command
    };
    let mut nextest = cargo();
    nextest.args(["nextest", "--version"]);
    if !succeeds(nextest) {
        let previous = previous::build()?;
        let mut test = cargo();
        test.args(["test", "--workspace", "--all-targets"]).env("KEYSD_PREVIOUS_BINARY", previous);
        return run(suite(test));
    }
    let mut examples = cargo();
    examples.args(["build", "--workspace", "--examples"]);
    run(examples)?;
    let previous = previous::build()?;
    let mut tests = cargo();
    tests.args(["nextest", "run", "--workspace", "--no-fail-fast"]).env("KEYSD_PREVIOUS_BINARY", previous);
    run(suite(tests))?;
    let mut benches = cargo();
    // `--workspace`, so that features resolve as for the suite (no rebuild).
    benches.args(["test", "--workspace", "--bench", "crypto"]);
    run(suite(benches))
}

/// How long each phase of `ci` took, reported at its end (where CI's time
/// goes, run after run).
#[derive(Debug, Default)]
struct Phases(Vec<(&'static str, std::time::Duration)>);

impl Phases {
    fn time<T>(&mut self, name: &'static str, phase: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        let result = phase();
        self.0.push((name, started.elapsed()));
        if result.is_err() {
            self.report();
        }
        result
    }

    fn report(&self) {
        let total: std::time::Duration = self.0.iter().map(|(_, took)| *took).sum();
        eprintln!("ci phases:");
        for (name, took) in &self.0 {
            eprintln!("  {name:<13} {:>6.1} s", took.as_secs_f64());
        }
        eprintln!("  {:<13} {:>6.1} s", "total", total.as_secs_f64());
    }
}

/// The Python packages the suite judges keysd with: an OpenAPI 3.1 validator
/// and JSON Schema for the generated document, PyJWT (with cryptography) as
/// an independent JOSE implementation, the Standard Webhooks library as the
/// receiver of webhook deliveries, and schemathesis against a live server.
const PYTHON_PACKAGES: [&str; 6] = [
    "openapi-spec-validator",
    "jsonschema",
    "pyjwt>=2.8",
    "cryptography>=42",
    "standardwebhooks>=1.0",
    schemathesis::PACKAGE,
];
const PYTHON_IMPORTS: &str =
    "import openapi_spec_validator, jsonschema, jwt, cryptography, standardwebhooks, schemathesis";

fn succeeds(mut command: Command) -> bool {
    command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    command.status().is_ok_and(|status| status.success())
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let mut update = Command::new("apt-get");
    update.args(["update", "-qq"]);
    run(update)?;
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive");
    run(install)
}

/// Installs what the suite needs and the machine lacks, so the test command
/// works on a fresh machine: Debian's nginx (the gateway tests), curl (the
/// HTTPS tests), and a Python venv under `target/ci-venv` with
/// [`PYTHON_PACKAGES`]. Returns the venv's interpreter.
fn ensure_test_tools() -> Result<PathBuf> {
    let nginx_present = ["/usr/sbin/nginx", "/usr/bin/nginx"].iter().any(|path| Path::new(path).exists());
    if !nginx_present {
        eprintln!("tools: installing nginx");
        apt_install(&["nginx"])?;
    }
    if !Path::new("/usr/bin/curl").exists() {
        eprintln!("tools: installing curl (the HTTPS tests' client)");
        apt_install(&["curl"])?;
    }
    let mut has_venv = Command::new("python3");
    has_venv.args(["-m", "venv", "--help"]);
    if !succeeds(has_venv) {
        eprintln!("tools: installing python3 and venv");
        apt_install(&["python3", "python3-venv"])?;
    }
    let venv = env::var("KEYSD_CI_VENV").map(PathBuf::from).unwrap_or_else(|_| project_root().join("target/ci-venv"));
    let python = venv.join("bin/python");
    let mut ready = Command::new(&python);
    ready.args(["-c", PYTHON_IMPORTS]);
    if !succeeds(ready) {
        eprintln!("tools: creating {} with {}", venv.display(), PYTHON_PACKAGES.join(", "));
        let _ = std::fs::remove_dir_all(&venv);
        let mut create = Command::new("python3");
        create.args(["-m", "venv"]).arg(&venv);
        run(create)?;
        let mut install = Command::new(&python);
        install.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]).args(PYTHON_PACKAGES);
        run(install)?;
    }
    Ok(python)
}

/// Where cargo writes what it builds: `$CARGO_TARGET_DIR`, or `target/`.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join("target"))
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
