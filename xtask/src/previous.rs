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
    // The directory names the layout of the unpacked tree too (`-v2`: its
    // crates carry their own version), so an older unpacking is not reused.
    let source = target_dir().join("previous-release").join(format!("{}-v2", &PREVIOUS_RELEASE[..12]));
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
    set_version(&partial)?;
    std::fs::rename(&partial, source)?;
    Ok(())
}

/// The previous release's own version, so that its crates never share
/// build artifacts with this tree's. Cargo names a path crate's artifacts
/// by its name, version and path relative to its workspace root, which are
/// the same in both trees: built into one target directory, each build
/// would find the other's `keys-core` fresh (its fingerprint lists the
/// other tree's unchanged files) and link it. Dependencies from crates.io
/// keep their names, so they are still shared.
const VERSION: &str = "0.1.0-previous";

fn set_version(tree: &std::path::Path) -> Result<()> {
    let root = tree.join("Cargo.toml");
    let text = std::fs::read_to_string(&root)?;
    let members = workspace_members(&text);
    let Some((head, tail)) = text.split_once("[workspace.package]\nversion = \"") else {
        bail!("the previous release's Cargo.toml has no [workspace.package] version");
    };
    let Some((_, rest)) = tail.split_once('"') else {
        bail!("the previous release's workspace version is not a string");
    };
    std::fs::write(&root, format!("{head}[workspace.package]\nversion = \"{VERSION}\"{rest}"))?;
    // Its lock file says the same, so that `--locked` still holds.
    let lock = tree.join("Cargo.lock");
    let text = std::fs::read_to_string(&lock)?;
    let mut out = String::with_capacity(text.len());
    let mut ours = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("name = \"").and_then(|rest| rest.strip_suffix('"')) {
            ours = members.iter().any(|member| member == name);
        }
        if ours && line.starts_with("version = \"") {
            out.push_str(&format!("version = \"{VERSION}\""));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    std::fs::write(&lock, out)?;
    Ok(())
}

/// The package names of the workspace's members (`crates/<name>`, `xtask`).
fn workspace_members(manifest: &str) -> Vec<String> {
    let Some(list) = manifest.split_once("members = [").and_then(|(_, rest)| rest.split_once(']')) else {
        return Vec::new();
    };
    list.0
        .split(',')
        .filter_map(|member| member.trim().trim_matches('"').rsplit('/').next().map(str::to_owned))
        .filter(|name| !name.is_empty())
        .collect()
}
