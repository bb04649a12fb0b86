//! Writes `BENCHMARKS.md` (the table) and `benchmarks.json` (everything):
//! the rows of each group of figures, each beside its baseline, in
//! [`verification`], [`scaling`], [`jwt`], [`creation`], [`writes`],
//! [`memory`], [`import`], [`usage`], [`metering`] and [`webhooks`]; how a
//! row is written in [`row`]; the two files in [`markdown`] and [`json`].

mod creation;
mod import;
mod json;
mod jwt;
mod markdown;
mod memory;
mod metering;
mod row;
mod scaling;
mod usage;
mod verification;
mod webhooks;
mod writes;

use std::time::Duration;

use anyhow::{Context, Result};

use super::figures::Results;
use super::{display, Only, Options};
use row::{Row, Stamp};

fn rows(options: &Options, results: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    let hello_rps: Vec<f64> = results.hello.runs.iter().map(|run| run.rps).collect();
    let connections =
        format!("{} connection{}", options.scale_concurrency, if options.scale_concurrency == 1 { "" } else { "s" });
    verification::api_key_rows(&mut rows, options, results, &hello_rps);
    scaling::key_count_rows(&mut rows, results, &connections);
    jwt::rows(&mut rows, options, results);
    verification::forward_rows(&mut rows, options, results, &hello_rps);
    creation::rows(&mut rows, options, results);
    writes::rows(&mut rows, options, results);
    memory::rows(&mut rows, results);
    scaling::audit_rows(&mut rows, results, &connections);
    import::rows(&mut rows, results);
    usage::rows(&mut rows, results);
    metering::rows(&mut rows, options, results);
    webhooks::rows(&mut rows, options, results);
    rows
}

/// `--only`: the rows of its figure, printed; no file is written.
pub fn print_only(options: &Options, results: &Results, only: Only) {
    let mut rows = Vec::new();
    match only {
        Only::Metering => metering::rows(&mut rows, options, results),
        Only::Webhooks => webhooks::rows(&mut rows, options, results),
    }
    print(&rows);
}

fn print(rows: &[Row]) {
    for row in rows {
        let [number, figure, keysd, baseline, ratio, target, met] = row.cells();
        eprintln!("bench: [{number}] {figure}: {keysd} | {baseline} | ratio {ratio} | {target} {met}");
    }
}

pub fn write(options: &Options, results: &Results, elapsed: Duration) -> Result<()> {
    let rows = rows(options, results);
    let now = time::OffsetDateTime::now_utc();
    let date = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let stamp = Stamp { date, commit: git_commit(), elapsed };

    let md = markdown::markdown(options, results, &rows, &stamp);
    let json = json::document(options, results, &rows, &stamp);

    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("creating {}", options.out_dir.display()))?;
    let md_path = options.out_dir.join("BENCHMARKS.md");
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", display(&md_path)))?;
    let json_path = options.out_dir.join("benchmarks.json");
    let mut text = serde_json::to_string_pretty(&json)?;
    text.push('\n');
    std::fs::write(&json_path, text).with_context(|| format!("writing {}", display(&json_path)))?;
    print(&rows);
    Ok(())
}

fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(crate::project_root())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(commit) = run(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".to_owned() };
    match run(&["status", "--porcelain"]) {
        Some(status) if !status.is_empty() => format!("{commit}+dirty"),
        _ => commit,
    }
}
