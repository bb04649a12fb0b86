//! `cargo xtask console`: the console's browser test
//! (`crates/keys-http/tests/console/console.test.mjs`), headless Debian
//! Chromium driven by playwright-core against the debug `keysd` on its own
//! SQLite file; part of `ci`, after schemathesis. Installs what it lacks on
//! a fresh machine: Debian's `chromium` (apt-get) and the test's pinned
//! npm packages (`npm ci`, from its `package-lock.json`). It writes the
//! screenshots of `docs/console/`. Node.js is a test tool only: keysd
//! neither builds nor runs with it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs Chromium and the test's npm packages when missing, builds
/// `keysd` (nothing to do after the test suite) and runs the test; fails
/// when it fails.
pub fn run() -> Result<()> {
    let started = Instant::now();
    if !Path::new(CHROMIUM).exists() {
        eprintln!("tools: installing chromium");
        crate::apt_install(&["chromium"])?;
    }
    let mut has_node = Command::new("node");
    has_node.arg("--version");
    if !crate::succeeds(has_node) {
        eprintln!("tools: installing nodejs and npm");
        crate::apt_install(&["nodejs", "npm"])?;
    }
    let directory = crate::project_root().join("crates/keys-http/tests/console");
    if !directory.join("node_modules/playwright-core").exists() {
        let mut install = Command::new("npm");
        install.args(["ci", "--no-audit", "--no-fund"]).current_dir(&directory);
        crate::run(install)?;
    }
    let mut build = crate::cargo();
    build.args(["build", "--package", "keysd", "--bin", "keysd"]);
    crate::run(build)?;
    let keysd = crate::target_dir().join("debug/keysd");
    if !keysd.exists() {
        bail!("{} was not built", keysd.display());
    }
    let mut test = Command::new("node");
    test.arg("console.test.mjs").current_dir(&directory).env("KEYSD", &keysd).env("CHROMIUM", CHROMIUM);
    crate::run(test)?;
    eprintln!("console: the browser test passed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
