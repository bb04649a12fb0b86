//! `cargo xtask fuzz [SECONDS]`: every cargo-fuzz target of `fuzz/` for
//! SECONDS each (default 30, or `KEYSD_FUZZ_SECONDS`), starting from the
//! committed seed corpus in `fuzz/corpus/<target>`; what the run finds new
//! goes to `target/fuzz-corpus/<target>`, so the committed corpus only
//! changes when someone copies an input there. A finding fails the run and
//! libFuzzer leaves the input under `fuzz/artifacts/`. `cargo xtask ci` runs
//! it after the tests.
//!
//! cargo-fuzz is installed from crates.io when missing. It passes `-Z`
//! flags, which only a nightly compiler takes; the machine has the stable
//! toolchain alone, so the build sets `RUSTC_BOOTSTRAP=1` for this command
//! only. No sanitizer: the workspace forbids `unsafe`, and the targets look
//! for panics and broken invariants, which need none (a sanitizer would
//! double the build of the whole server).

use std::env;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::{cargo, project_root, run, succeeds};

/// The targets, as `fuzz/Cargo.toml` names them.
pub const TARGETS: [&str; 4] = ["jws", "secrets", "origins", "request_bodies"];

/// How long each target runs when nothing says otherwise.
const DEFAULT_SECONDS: u64 = 30;

pub fn main(args: &[String]) -> Result<()> {
    let seconds = match args.first() {
        Some(text) => text.parse().with_context(|| format!("SECONDS must be a whole number, not {text:?}"))?,
        None => seconds_from_env()?,
    };
    fuzz(seconds)
}

/// `KEYSD_FUZZ_SECONDS`, or the default.
pub fn seconds_from_env() -> Result<u64> {
    match env::var("KEYSD_FUZZ_SECONDS") {
        Ok(text) => text.parse().with_context(|| format!("KEYSD_FUZZ_SECONDS must be a whole number, not {text:?}")),
        Err(_) => Ok(DEFAULT_SECONDS),
    }
}

pub fn fuzz(seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    let target_dir = env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| project_root().join("target"));
    for target in TARGETS {
        let found = target_dir.join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&found).with_context(|| format!("cannot create {}", found.display()))?;
        let mut command = cargo();
        command
            .current_dir(project_root().join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            // The fuzz crate is a workspace of its own, built with cargo
            // fuzz's flags: not linted as `ci` lints the main workspace.
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            .args(["fuzz", "run", "--sanitizer", "none", "--target-dir"])
            .arg(target_dir.join("fuzz"))
            .arg(target)
            .arg(&found)
            .arg(PathBuf::from("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"));
        run(command)?;
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let mut version = cargo();
    version.args(["fuzz", "--version"]);
    if !succeeds(version) {
        eprintln!("tools: installing cargo-fuzz");
        let mut install = cargo();
        install.args(["install", "cargo-fuzz", "--locked"]);
        run(install)?;
    }
    Ok(())
}
