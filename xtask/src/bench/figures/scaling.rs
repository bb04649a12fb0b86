//! The figures measured at growing sizes, on a scratch database and keysd
//! of their own, rows bulk-inserted below the store: 2, API-key
//! verification latency as the number of stored keys grows; 7, a page of
//! audit events as the organisation's trail grows, and 7b, `keysd audit
//! export` of the largest trail, its time and peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde_json::json;

use super::drive::{memory_of, progress, scaling_series, scratch_keysd, text};
use super::results::{AuditExportRun, AuditPages, Results, Scale};
use crate::bench::load::{self, Api, Bodies, Expect};
use crate::bench::procs::{self, TempDir};
use crate::bench::Options;

/// Figure 2: verification latency as the number of stored API keys grows,
/// on its own scratch database and keysd.
pub(super) async fn key_count_scaling(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    progress("2. key-count scaling on PostgreSQL");
    let (database, server) = scratch_keysd(keysd, admin, temp, "scale")?;
    let api = Api::new(server.addr, &server.token);
    let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(&json!({"name": "bench scale"})), 201).await?;
    let body = Bytes::from(json!({"api_key": text(&created.json, "api_key")?}).to_string());
    let make = load::requests(server.addr, &server.token, "POST", "/v1/verify/api_key/", Bodies::Same(body));
    let workspace = database.psql("SELECT uid FROM workspaces WHERE slug = 'staging'")?;
    if !workspace.starts_with("wksp_") {
        bail!("no staging workspace in the scale database: {workspace:?}");
    }
    // Bulk rows are numbered 1..; the real key is one more row.
    let mut inserted = 0u64;
    for &keys in &options.key_counts {
        let target = keys.saturating_sub(1);
        let started = Instant::now();
        if target > inserted {
            progress(&format!("  inserting {} rows into api_keys (to {keys} keys)", target - inserted));
            database.psql(&bulk_insert_sql(&workspace, inserted + 1, target))?;
            database.psql("VACUUM (ANALYZE) api_keys")?;
            inserted = target;
        }
        let insert_seconds = started.elapsed().as_secs_f64();
        let stored: u64 = database.psql("SELECT count(*) FROM api_keys")?.parse().context("counting api_keys")?;
        let series = scaling_series(options, &server, &make, Expect::valid(), &format!("{stored} keys")).await?;
        results.scaling.push(Scale { keys: stored, insert_seconds, series });
    }
    results.loaded.push(memory_of(&server, "2. key-count scaling")?);
    drop(server);
    drop(database);
    Ok(())
}

/// Rows `first..=last` of synthetic API keys: valid-looking ids, unique
/// 32-byte digests (SHA-256 of a counter), as the store writes them.
pub fn bulk_insert_sql(workspace_uid: &str, first: u64, last: u64) -> String {
    format!(
        "INSERT INTO api_keys (id, workspace_uid, name, description, digest, masked_api_key, created_at, updated_at) \
         SELECT 'ws_apik_01BENCH' || lpad(g::text, 19, '0'), '{workspace_uid}', 'bench key ' || g, NULL, \
         sha256(convert_to('keysd-bench-' || g::text, 'UTF8')), 'SS.bench00*****', now() - interval '1 day', \
         now() - interval '1 day' FROM generate_series({first}::bigint, {last}::bigint) AS g"
    )
}

/// Figure 7: `GET /v1/audit_event/?limit=50` as the organisation's trail
/// grows to each of `options.audit_event_counts` (rows bulk-inserted below
/// the store), then 7b: `keysd audit export` of the largest trail, its time
/// and its peak RSS.
pub(super) async fn audit_trail(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    progress("7. audit trail pages and export on PostgreSQL");
    let (database, server) = scratch_keysd(keysd, admin, temp, "audit")?;
    let organisation = server.organisation_id.clone();
    let make =
        load::requests(server.addr, &server.token, "GET", "/v1/audit_event/?limit=50", Bodies::Same(Bytes::new()));
    let count = || -> Result<u64> {
        database.psql("SELECT count(*) FROM audit_events")?.parse().context("counting audit_events")
    };
    // The bootstrap wrote a few events; bulk rows are numbered after them.
    let mut inserted = 0u64;
    for &events in &options.audit_event_counts {
        let started = Instant::now();
        let target = events.saturating_sub(count()?);
        if target > 0 {
            progress(&format!("  inserting {target} rows into audit_events (to {events} events)"));
            database.psql(&bulk_audit_sql(&organisation, inserted + 1, inserted + target))?;
            database.psql("VACUUM (ANALYZE) audit_events")?;
            inserted += target;
        }
        let insert_seconds = started.elapsed().as_secs_f64();
        let stored = count()?;
        let series =
            scaling_series(options, &server, &make, Expect::status(200), &format!("{stored} audit events")).await?;
        results.audit_pages.push(AuditPages { events: stored, insert_seconds, series });
    }
    drop(server);

    // 7b. The export, alone on the database, to a counting sink.
    let events = count()?;
    progress(&format!("  keysd audit export of {events} events"));
    let started = Instant::now();
    let mut export = std::process::Command::new(keysd)
        .args(["audit", "export", "--org", &organisation, "--database-url", &database.url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting keysd audit export")?;
    let stdout = export.stdout.take().context("export stdout")?;
    let counter = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).split(b'\n').filter(Result::is_ok).count() as u64
    });
    let pid = export.id();
    let mut peak_rss_kib = 0;
    let status = loop {
        if let Ok(memory) = procs::memory_kib(pid) {
            peak_rss_kib = peak_rss_kib.max(memory.peak_kib);
        }
        if let Some(status) = export.try_wait().context("waiting for the export")? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let lines = counter.join().map_err(|_| anyhow!("the line counter panicked"))?;
    if !status.success() || lines != events {
        bail!("keysd audit export: {status}, {lines} lines for {events} events");
    }
    progress(&format!("  exported {lines} events in {seconds:.1} s, peak RSS {} MiB", peak_rss_kib / 1024));
    results.audit_export = AuditExportRun { events, seconds, peak_rss_kib };
    drop(database);
    Ok(())
}

/// Audit events `first..=last` of `organisation`, as the pipeline writes
/// them (an API key generated, by a token, in a request), one microsecond
/// apart, two days ago.
pub fn bulk_audit_sql(organisation: &str, first: u64, last: u64) -> String {
    format!(
        "INSERT INTO audit_events (organisation_id, actor_name, actor_email, token_id, request_id, action, \
         target_id, at) SELECT '{organisation}', 'System User', 'bench@systemuser.keysd.local', \
         'st_01BENCH0000000000000000000', 'bench-' || g, 'api_key.generated', \
         'ws_apik_01BENCH' || lpad(g::text, 19, '0'), now() - interval '2 days' + g * interval '1 microsecond' \
         FROM generate_series({first}::bigint, {last}::bigint) AS g"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_rows_look_like_the_stores() {
        let sql = bulk_insert_sql("wksp_X", 1, 999);
        assert!(sql.contains("generate_series(1::bigint, 999::bigint)"));
        // 'ws_apik_' + a 26-character ULID-shaped body.
        assert_eq!("01BENCH".len() + 19, 26);
    }

    #[test]
    fn bulk_audit_rows_look_like_the_pipelines() {
        let sql = bulk_audit_sql("01ORG", 2, 1_000_000);
        assert!(sql.contains("generate_series(2::bigint, 1000000::bigint)"));
        // A token id keys-core parses: 'st_' + 26 Crockford characters.
        let token = "01BENCH0000000000000000000";
        assert!(sql.contains(&format!("'st_{token}'")) && token.len() == 26);
    }
}
