//! The rows of figure 5: management writes beside pgbench, and the
//! diagnostic spread over one workspace per client.

use serde_json::json;

use super::row::{ratio_text, thousands, throughput, Row};
use crate::bench::figures::{paired_ratios, round, Results};
use crate::bench::{median, Options};

pub(super) fn rows(rows: &mut Vec<Row>, options: &Options, results: &Results) {
    // 5. Management writes beside pgbench.
    let keysd_rps: Vec<f64> = results.writes_keysd.runs.iter().map(|run| run.rps).collect();
    let ratios = paired_ratios(&keysd_rps, &results.writes_pgbench_tps);
    let ratio = median(&ratios);
    rows.push(Row {
        number: "5",
        id: "create_api_key_postgres".to_owned(),
        figure: format!("API-key creates, PostgreSQL, {} clients", options.write_concurrency),
        keysd: throughput(&results.writes_keysd, "creates/s"),
        baseline: format!(
            "`pgbench -c {}` single-row INSERT, same database: {} tps",
            options.write_concurrency,
            thousands(median(&results.writes_pgbench_tps))
        ),
        ratio: ratio_text(ratio),
        target: "≥ 0.50 of pgbench's rate".to_owned(),
        met: Some(ratio >= 0.5),
        json: json!({
            "keysd": results.writes_keysd.to_json(),
            "baseline": {
                "name": format!("pgbench -n -c {} -T {} -f insert.sql", options.write_concurrency, options.duration.as_secs()),
                "tps_per_run": results.writes_pgbench_tps.iter().map(|tps| round(*tps, 1)).collect::<Vec<_>>(),
                "tps": round(median(&results.writes_pgbench_tps), 1),
            },
            "ratio": round(ratio, 3),
            "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
        }),
    });

    let spread_rps: Vec<f64> = results.writes_keysd_spread.runs.iter().map(|run| run.rps).collect();
    let spread_ratios = paired_ratios(&spread_rps, &results.writes_pgbench_tps);
    let spread_ratio = median(&spread_ratios);
    rows.push(Row {
        number: "5",
        id: "create_api_key_postgres_spread".to_owned(),
        figure: format!(
            "(diagnostic) the same creates spread round-robin over {} workspaces",
            options.write_concurrency
        ),
        keysd: throughput(&results.writes_keysd_spread, "creates/s"),
        baseline: "pgbench, the same runs as above".to_owned(),
        ratio: ratio_text(spread_ratio),
        target: "— (the row above is the figure)".to_owned(),
        met: None,
        json: json!({
            "keysd": results.writes_keysd_spread.to_json(),
            "ratio": round(spread_ratio, 3),
            "ratio_per_run": spread_ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
        }),
    });
}
