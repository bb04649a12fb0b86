//! The rows of figure 8: `keysd import` beside `COPY` of the same rows,
//! the rerun of the same file (every key skipped), and 8b, the import's
//! peak resident memory beside the `COPY` client's.

use serde_json::{json, Value};

use super::row::{mib, ratio_text, thousands, Row};
use crate::bench::figures::{keys_per_second, paired_ratios, round, CliRun, Import, Results};
use crate::bench::median;

/// Keys a command got through: all of the file when it succeeded, else
/// what the workspace held when it stopped (for a rerun, the keys it
/// skipped before it stopped).
fn keys_through(import: &Import, cli: &CliRun) -> u64 {
    if cli.error.is_none() {
        import.keys
    } else {
        cli.stored
    }
}

fn rate(import: &Import, cli: &CliRun) -> f64 {
    keys_per_second(keys_through(import, cli), cli.seconds)
}

fn cli_json(import: &Import, cli: &CliRun) -> Value {
    json!({
        "seconds": round(cli.seconds, 3),
        "keys_per_s": round(rate(import, cli), 1),
        "peak_rss_kib": cli.peak_rss_kib,
        "imported": cli.imported,
        "skipped": cli.skipped,
        "stored_after": cli.stored,
        "error": cli.error,
    })
}

/// What a figure's cell says when some run of the command failed: the
/// first failure, and how far the command got before it.
fn failure_note(import: &Import, pick: impl Fn(&crate::bench::figures::ImportRun) -> &CliRun) -> Option<String> {
    let failed: Vec<&CliRun> = import.runs.iter().map(pick).filter(|cli| cli.error.is_some()).collect();
    let first = failed.first()?;
    Some(format!(
        "**failed** in {} of {} runs ({}), after {} of {} keys in {:.1} s",
        failed.len(),
        import.runs.len(),
        first.error.as_deref().unwrap_or("?").replace('|', "/"),
        thousands(keys_through(import, first) as f64),
        thousands(import.keys as f64),
        first.seconds
    ))
}

pub(super) fn rows(rows: &mut Vec<Row>, results: &Results) {
    let import = &results.import;
    if import.runs.is_empty() {
        return;
    }
    let keys = thousands(import.keys as f64);
    let copy_rates: Vec<f64> = import.runs.iter().map(|run| keys_per_second(import.keys, run.copy_seconds)).collect();
    let copy_seconds = median(&import.runs.iter().map(|run| run.copy_seconds).collect::<Vec<_>>());
    let copy_rate = median(&copy_rates);
    let baseline_json = json!({
        "name": "psql \\copy of the same rows (CSV) into a scratch table of the same database with api_keys' main \
                 columns, primary key, unique digest and listing index",
        "rows_per_s_per_run": copy_rates.iter().map(|rate| round(*rate, 1)).collect::<Vec<_>>(),
        "rows_per_s": round(copy_rate, 1),
        "seconds": round(copy_seconds, 3),
    });
    let runs_json: Vec<Value> = import
        .runs
        .iter()
        .map(|run| {
            json!({
                "copy_seconds": round(run.copy_seconds, 3),
                "copy_rows_per_s": round(keys_per_second(import.keys, run.copy_seconds), 1),
                "copy_peak_rss_kib": run.copy_peak_rss_kib,
                "import": cli_json(import, &run.import),
                "rerun": cli_json(import, &run.rerun),
            })
        })
        .collect();
    let copy_cell = format!(
        "`psql \\copy` of the same rows into a scratch table shaped like `api_keys`: {} rows/s ({:.2} s)",
        thousands(copy_rate),
        copy_seconds
    );

    // 8. The import beside COPY.
    let import_rates: Vec<f64> = import.runs.iter().map(|run| rate(import, &run.import)).collect();
    let import_seconds = median(&import.runs.iter().map(|run| run.import.seconds).collect::<Vec<_>>());
    let ratios = paired_ratios(&import_rates, &copy_rates);
    let ratio = median(&ratios);
    let import_failure = failure_note(import, |run| &run.import);
    rows.push(Row {
        number: "8",
        id: "import_api_keys_postgres".to_owned(),
        figure: format!("`keysd import` of {keys} foreign keys (NDJSON, the whole command), PostgreSQL"),
        keysd: match &import_failure {
            None => format!("{} keys/s ({:.2} s)", thousands(median(&import_rates)), import_seconds),
            Some(note) => format!("{note}: {} keys/s until it stopped", thousands(median(&import_rates))),
        },
        baseline: copy_cell.clone(),
        ratio: if import_failure.is_none() { ratio_text(ratio) } else { format!("{} (partial)", ratio_text(ratio)) },
        target: "≥ 0.30 of COPY's rows/s".to_owned(),
        met: Some(import_failure.is_none() && ratio >= 0.3),
        json: json!({
            "keys": import.keys,
            "keysd": {
                "keys_per_s": round(median(&import_rates), 1),
                "keys_per_s_per_run": import_rates.iter().map(|rate| round(*rate, 1)).collect::<Vec<_>>(),
                "seconds": round(import_seconds, 3),
                "failed_runs": import.runs.iter().filter(|run| run.import.error.is_some()).count(),
            },
            "baseline": baseline_json,
            "ratio": round(ratio, 3),
            "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
            "runs": runs_json,
        }),
    });

    // 8, the rerun: every key is already in the workspace.
    let rerun_rates: Vec<f64> = import.runs.iter().map(|run| rate(import, &run.rerun)).collect();
    let rerun_seconds = median(&import.runs.iter().map(|run| run.rerun.seconds).collect::<Vec<_>>());
    let rerun_ratios = paired_ratios(&rerun_rates, &copy_rates);
    let rerun_failure = failure_note(import, |run| &run.rerun);
    rows.push(Row {
        number: "8",
        id: "import_api_keys_postgres_rerun".to_owned(),
        figure: format!("the rerun of the same {keys}-key file, every key skipped"),
        keysd: match &rerun_failure {
            None => format!("{} keys/s ({:.2} s)", thousands(median(&rerun_rates)), rerun_seconds),
            Some(note) => format!("{note}: {} keys/s until it stopped", thousands(median(&rerun_rates))),
        },
        baseline: "COPY, the same runs as above".to_owned(),
        ratio: if rerun_failure.is_none() {
            ratio_text(median(&rerun_ratios))
        } else {
            format!("{} (partial)", ratio_text(median(&rerun_ratios)))
        },
        target: "(reported)".to_owned(),
        met: None,
        json: json!({
            "keys": import.keys,
            "keysd": {
                "keys_per_s": round(median(&rerun_rates), 1),
                "keys_per_s_per_run": rerun_rates.iter().map(|rate| round(*rate, 1)).collect::<Vec<_>>(),
                "seconds": round(rerun_seconds, 3),
                "failed_runs": import.runs.iter().filter(|run| run.rerun.error.is_some()).count(),
            },
            "ratio": round(median(&rerun_ratios), 3),
            "ratio_per_run": rerun_ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
        }),
    });

    // 8b. The import's peak memory: the largest of its runs.
    let peak_kib = import.runs.iter().map(|run| run.import.peak_rss_kib).max().unwrap_or(0);
    let copy_peak_kib = import.runs.iter().map(|run| run.copy_peak_rss_kib).max().unwrap_or(0);
    let measured = peak_kib > 0;
    rows.push(Row {
        number: "8b",
        id: "import_api_keys_peak_memory".to_owned(),
        figure: format!("`keysd import` of {keys} foreign keys, peak resident memory (largest of its runs)"),
        keysd: match (&import_failure, measured) {
            (_, false) => "not measured".to_owned(),
            (None, true) => format!("{:.1} MiB", mib(peak_kib)),
            (Some(_), true) => format!("{:.1} MiB, until it stopped (see row 8)", mib(peak_kib)),
        },
        baseline: if copy_peak_kib > 0 {
            format!("`psql \\copy` of the same rows: {:.1} MiB", mib(copy_peak_kib))
        } else {
            "—".to_owned()
        },
        ratio: "—".to_owned(),
        target: "peak RSS < 100 MB".to_owned(),
        met: (measured && import_failure.is_none()).then_some(peak_kib * 1024 < 100_000_000),
        json: json!({
            "keys": import.keys,
            "peak_rss_kib": peak_kib,
            "peak_rss_kib_per_run": import.runs.iter().map(|run| run.import.peak_rss_kib).collect::<Vec<_>>(),
            "rerun_peak_rss_kib_per_run": import.runs.iter().map(|run| run.rerun.peak_rss_kib).collect::<Vec<_>>(),
            "baseline": {"name": "psql \\copy of the same rows", "peak_rss_kib": copy_peak_kib},
            "method": import.peak_method,
            "target_bytes": 100_000_000,
        }),
    });
}
