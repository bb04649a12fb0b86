//! `cargo xtask previous-release`: the `keysd` binary of the previous
//! release, built once from its recorded commit, for the upgrade test
//! (`crates/keysd/tests/it/upgrade.rs`), which runs it beside this tree's
//! binary on one PostgreSQL.
//!
//! The commit's tree is unpacked under `target/previous-release/<commit>`
//! (from this repository's history: a clone of main has it) and built into
//! the workspace's own target directory, so that every dependency it
//! shares with this tree is reused rather than built again; only its own
//! crates are compiled. Its binary is renamed `keysd-previous` in its
//! manifest (nothing else changes) so that it never overwrites this tree's
//! `keysd`. A second run finds it built and costs a second.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, project_root, run, target_dir};

/// The previous release: the commit of main that landed last (issue 26's
/// landing, the first release with the upgrade policy of
/// docs/OPERATIONS.md, schema 7). Move it forward at each release, to the
/// release before the one being built. Releases before this one refuse at
/// start any schema holding a migration they do not know, so this must
/// never move back behind it.
pub const PREVIOUS_RELEASE: &str = "e00717ce4ffc240900945dc1d91d5631116d9d1d";

/// What the previous release's binary is called in the target directory.
const BINARY: &str = "keysd-previous";

/// Builds (or finds) the previous release's binary and returns its path.
pub fn build() -> Result<PathBuf> {
    let source = target_dir().join("previous-release").join(&PREVIOUS_RELEASE[..12]);
    if !source.join("Cargo.toml").exists() {
        unpack(&source)?;
    }
    let mut build = cargo();
    build
        .args(["build", "--quiet", "--locked", "-p", "keysd", "--bin", BINARY, "--manifest-path"])
        .arg(source.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        // Not linted: it is another release's code, linted when it landed.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS");
    eprintln!("previous release: building keysd {}", &PREVIOUS_RELEASE[..12]);
    run(build)?;
    let binary = target_dir().join("debug").join(BINARY);
    if !binary.exists() {
        bail!("the previous release's build left no {}", binary.display());
    }
    Ok(binary)
}

/// Writes the release's tree to `source`, its binary renamed.
fn unpack(source: &std::path::Path) -> Result<()> {
    let partial = source.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial)?;
    let archive = Command::new("git")
        .current_dir(project_root())
        .args(["archive", "--format=tar", PREVIOUS_RELEASE])
        .output()
        .context("git archive")?;
    if !archive.status.success() {
        bail!(
            "git archive {PREVIOUS_RELEASE} failed (is this a clone with main's history?): {}",
            String::from_utf8_lossy(&archive.stderr)
        );
    }
    let mut tar = Command::new("tar")
        .args(["-x", "-C"])
        .arg(&partial)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("tar")?;
    std::io::Write::write_all(tar.stdin.as_mut().context("tar stdin")?, &archive.stdout)?;
    drop(tar.stdin.take());
    if !tar.wait()?.success() {
        bail!("tar failed unpacking the previous release");
    }
    let manifest = partial.join("crates/keysd/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let renamed = text.replacen("[[bin]]\nname = \"keysd\"", &format!("[[bin]]\nname = \"{BINARY}\""), 1);
    if renamed == text {
        bail!("the previous release's crates/keysd/Cargo.toml has no [[bin]] named keysd");
    }
    std::fs::write(&manifest, renamed)?;
    std::fs::rename(&partial, source)?;
    Ok(())
}
