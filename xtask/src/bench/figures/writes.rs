//! Figure 5: management writes, API-key creates per second on PostgreSQL
//! beside pgbench's single-row INSERTs on the same database, run for run.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde_json::json;

use super::drive::{closed, log_run, progress, warm_up};
use super::results::Results;
use crate::bench::load::{self, Api, Bodies, Expect};
use crate::bench::procs::{ScratchDatabase, Server, TempDir};
use crate::bench::Options;

/// Figure 5: API-key creates per second on PostgreSQL beside pgbench's
/// single-row INSERTs into a scratch table of the same database, run after
/// run.
pub(super) async fn management_writes(
    options: &Options,
    results: &mut Results,
    server: &Server,
    database: &ScratchDatabase,
    temp: &TempDir,
) -> Result<()> {
    progress(&format!("5. management writes at {} clients, beside pgbench", options.write_concurrency));
    database.psql(
        "CREATE TABLE bench_scratch (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text NOT NULL, \
         at timestamptz NOT NULL DEFAULT now())",
    )?;
    let script = temp.path.join("insert.sql");
    std::fs::write(&script, "INSERT INTO bench_scratch (v) VALUES (md5(random()::text));\n")?;
    let names: Arc<dyn Fn(u64) -> Bytes + Send + Sync> =
        Arc::new(|n| Bytes::from(json!({"name": format!("bench write {n}")}).to_string()));
    let make = load::requests(server.addr, &server.token, "POST", "/v1/staging/ws_api_key/", Bodies::Numbered(names));
    // Diagnostic: the same creates spread over one workspace per client, to
    // show what the per-workspace lock of a create costs.
    let api = Api::new(server.addr, &server.token);
    for index in 0..options.write_concurrency {
        let slug = format!("bench-w-{index}");
        api.expect("POST", "/v1/workspace/", Some(&json!({"name": slug, "slug": slug})), 201).await?;
    }
    let spread_count = options.write_concurrency as u64;
    let spread = load::requests_by(
        server.addr,
        &server.token,
        "POST",
        Arc::new(move |n| {
            let path = format!("/v1/bench-w-{}/ws_api_key/", n % spread_count);
            (path, Bytes::from(json!({"name": format!("bench spread {n}")}).to_string()))
        }),
    );
    warm_up(server, options.write_concurrency, options.warmup, &make, Expect::status(201)).await?;
    warm_up(server, options.write_concurrency, options.warmup, &spread, Expect::status(201)).await?;
    let threads = options.write_concurrency.min(results.machine.cores.max(1));
    for index in 0..options.runs {
        let tps = pgbench(&database.url, options.write_concurrency, threads, options.duration, &script).await?;
        progress(&format!("  pgbench run {}/{}: {tps:.0} tps", index + 1, options.runs));
        results.writes_pgbench_tps.push(tps);
        let run = closed(server, options.write_concurrency, options.duration, &make, Expect::status(201), true).await?;
        log_run("keysd API-key creates", index, options.runs, &run);
        results.writes_keysd.runs.push(run);
        let run =
            closed(server, options.write_concurrency, options.duration, &spread, Expect::status(201), true).await?;
        log_run("keysd API-key creates, spread", index, options.runs, &run);
        results.writes_keysd_spread.runs.push(run);
    }
    Ok(())
}

async fn pgbench(url: &str, clients: usize, threads: usize, duration: Duration, script: &Path) -> Result<f64> {
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &threads.to_string(),
            "-T",
            &duration.as_secs().to_string(),
            "-f",
        ])
        .arg(script)
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed ({}): {}{}", output.status, stdout, String::from_utf8_lossy(&output.stderr));
    }
    parse_pgbench_tps(&stdout)
}

/// `tps = 1234.5 (without initial connection time)`.
pub fn parse_pgbench_tps(output: &str) -> Result<f64> {
    output
        .lines()
        .find(|line| line.starts_with("tps = "))
        .and_then(|line| line["tps = ".len()..].split_whitespace().next())
        .ok_or_else(|| anyhow!("no tps line in pgbench output:\n{output}"))?
        .parse()
        .context("pgbench tps")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pgbench_tps() {
        let output = "number of failed transactions: 0 (0.000%)\nlatency average = 4.1 ms\n\
                      initial connection time = 12.3 ms\ntps = 3890.123456 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(output).expect("tps"), 3890.123456);
        assert!(parse_pgbench_tps("").is_err());
    }
}
