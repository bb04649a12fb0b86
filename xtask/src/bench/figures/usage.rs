//! The usage figures on PostgreSQL, each on a scratch database and keysd of
//! its own: 9, one key's 30 days of hourly counts read through keysd, with
//! the key's rows alone in `usage_counts` and then among a month of hourly
//! rows of many keys (bulk-inserted below the store); 9b, what the usage
//! writer adds to `usage_counts` when many keys are each verified once,
//! measured, from which the report computes rows per minute and bytes per
//! day.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use serde_json::{json, Value};

use super::drive::{memory_of, progress, scratch_keysd, series_at, text};
use super::import::ForeignKeys;
use super::results::{Results, UsageQuery, UsageWrites};
use crate::bench::load::{self, Api, Bodies, Expect};
use crate::bench::procs::{self, ScratchDatabase, TempDir};
use crate::bench::{random_suffix, Options};

/// Hours in the window of figure 9: 30 days.
pub const WINDOW_HOURS: u64 = 30 * 24;

/// Rows of a synthetic key: counted in 4 hours of each of the 30 days.
pub const SYNTHETIC_ROWS_PER_KEY: u64 = 4 * 30;

/// Synthetic keys per synthetic workspace (as in `crates/keys-store/EXPLAIN.md`).
const SYNTHETIC_KEYS_PER_WORKSPACE: u64 = 1_000;

/// Synthetic keys per bulk `INSERT` (1.2 M rows), one progress line each.
const SYNTHETIC_KEYS_PER_INSERT: u64 = 10_000;

/// The outcomes the key asked for is counted under, every hour of the
/// window: granted, and refused for the caller's origin.
const KEY_OUTCOMES: [&str; 2] = ["valid", "origin_not_allowed"];

/// Rows of one answer of figure 9: every hour of the window, each outcome.
pub const ROWS_PER_ANSWER: usize = (WINDOW_HOURS as usize) * KEY_OUTCOMES.len();

/// Buckets a key used every minute of a day is counted in, per outcome:
/// 1,440 minutes, 24 hours and the day.
pub const BUCKETS_PER_KEY_PER_DAY: u64 = 24 * 60 + 24 + 1;

/// Buckets a key used every minute holds at keysd's default retention
/// (`keys_core::usage::UsageRetention::DEFAULT`: 48 hours of minutes, 90
/// days of hours, 730 days of days), per outcome.
pub const RETAINED_BUCKETS_PER_KEY: u64 = 48 * 60 + 90 * 24 + 730;

/// Keys per `POST /v1/staging/ws_api_key/import/`, the most it takes.
const IMPORT_BATCH: u64 = 1_000;

/// Figure 9: `GET /v1/staging/usage/?granularity=hour&key_id=…` over the 30
/// days before the current hour, at one connection: first with the key's
/// 1,440 rows alone in the table (the baseline), then after
/// `options.usage_keys - 1` synthetic keys' months of hourly rows.
pub(super) async fn usage_query(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    let keys = options.usage_keys;
    progress(&format!("9. a 30-day hourly usage query for one key among {keys} keys on PostgreSQL"));
    let (database, server) = scratch_keysd(keysd, admin, temp, "usage")?;
    let api = Api::new(server.addr, &server.token);
    let created = api.expect("POST", "/v1/staging/ws_api_key/", Some(&json!({"name": "bench usage"})), 201).await?;
    let key_id = text(&created.json, "id")?.to_owned();
    let workspace = database.psql("SELECT uid FROM workspaces WHERE slug = 'staging'")?;
    if !workspace.starts_with("wksp_") {
        bail!("no staging workspace in the usage database: {workspace:?}");
    }
    // The window ends at the start of the current hour, so that every
    // answer holds the same whole hours however long the figure takes.
    let until = hour_start(super::drive::unix_now())?;
    let since = until - time::Duration::hours(WINDOW_HOURS as i64);
    let (since, until) = (rfc3339(since)?, rfc3339(until)?);
    database.psql(&key_usage_sql(&workspace, &key_id, &since)?)?;
    database.psql("VACUUM (ANALYZE) usage_counts")?;
    let path = format!("/v1/staging/usage/?granularity=hour&key_id={key_id}&since={since}&until={until}");
    let make = load::requests(server.addr, &server.token, "GET", &path, Bodies::Same(Bytes::new()));
    // Every row of an answer names its outcome once.
    let expect = Expect::counted("\"outcome\":", ROWS_PER_ANSWER);
    let alone = series_at(options, &server, 1, &make, expect, "the key's rows alone", true).await?;

    let synthetic = keys.saturating_sub(1);
    let started = Instant::now();
    let mut first = 1;
    while first <= synthetic {
        let last = (first + SYNTHETIC_KEYS_PER_INSERT - 1).min(synthetic);
        progress(&format!(
            "  inserting {} rows into usage_counts (keys {first}..={last} of {synthetic})",
            (last - first + 1) * SYNTHETIC_ROWS_PER_KEY
        ));
        database.psql(&bulk_usage_sql(first, last, &since))?;
        first = last + 1;
    }
    database.psql("VACUUM (ANALYZE) usage_counts")?;
    let insert_seconds = started.elapsed().as_secs_f64();
    let (rows, table_bytes) = table_rows_and_bytes(&database)?;
    progress(&format!(
        "  {rows} rows, {:.0} MiB with indexes, in {insert_seconds:.0} s",
        table_bytes as f64 / (1024.0 * 1024.0)
    ));
    let series = series_at(options, &server, 1, &make, expect, &format!("{rows} rows"), true).await?;
    results.usage_query = UsageQuery {
        keys: synthetic + 1,
        rows,
        table_bytes,
        insert_seconds,
        rows_per_answer: ROWS_PER_ANSWER,
        since,
        until,
        alone,
        series,
    };
    results.loaded.push(memory_of(&server, "9. usage query")?);
    drop(server);
    drop(database);
    Ok(())
}

/// Figure 9b: `options.usage_active_keys` API keys imported through the
/// API, each verified once through a keysd that writes usage every second;
/// the rows added to `usage_counts` and the growth of its
/// `pg_total_relation_size` once every verification is written.
pub(super) async fn usage_writes(
    options: &Options,
    results: &mut Results,
    keysd: &Path,
    admin: &str,
    temp: &TempDir,
) -> Result<()> {
    let keys = options.usage_active_keys;
    progress(&format!("9b. usage rows and bytes of {keys} API keys verified once each, written every second"));
    let database = ScratchDatabase::create(admin, &format!("{}_usagewrites", random_suffix()))?;
    let server = procs::start_keysd_with(
        keysd,
        "keysd-postgres-usage-writes",
        &database.url,
        &temp.path.join("keysd-usage-writes.log"),
        &["--usage-interval-seconds", "1"],
    )?;
    let api = Api::new(server.addr, &server.token);
    let mut generator = ForeignKeys::new();
    let mut bodies = Vec::with_capacity(usize::try_from(keys).unwrap_or(0));
    let mut imported = 0;
    while imported < keys {
        let batch: Vec<String> = (0..(keys - imported).min(IMPORT_BATCH)).map(|_| generator.next_key()).collect();
        let entries: Vec<Value> = batch.iter().map(|key| json!({"key": key, "name": "k"})).collect();
        api.expect("POST", "/v1/staging/ws_api_key/import/", Some(&json!({"keys": entries})), 201).await?;
        bodies.extend(batch.iter().map(|key| Bytes::from(json!({"api_key": key}).to_string())));
        imported += batch.len() as u64;
    }
    let before = written(&database)?;
    let make =
        load::requests(server.addr, &server.token, "POST", "/v1/verify/api_key/", Bodies::Each(Arc::new(bodies)));
    // The run ends when every key has been verified once.
    let sample =
        load::closed_loop(server.addr, options.concurrency, Duration::from_secs(600), make, Expect::valid()).await?;
    let ended = Instant::now();
    let verified = sample.ok();
    if verified == 0 {
        bail!("no verification of the imported keys succeeded: {}", sample.first_error.unwrap_or_default());
    }
    // The minute rows' counts add up to the verifications written.
    let counted_sql = "SELECT coalesce(sum(count), 0) FROM usage_counts WHERE granularity = 'minute'";
    loop {
        let counted: u64 = database.psql(counted_sql)?.parse().context("summing the minute counts")?;
        if counted >= verified {
            break;
        }
        if ended.elapsed() > Duration::from_secs(60) {
            bail!("only {counted} of {verified} verifications were counted in usage_counts after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let written_after_seconds = ended.elapsed().as_secs_f64();
    // Two more intervals, so that nothing is left pending (a verification
    // the load generator counted as an error, say) when the table is read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = written(&database)?;
    results.usage_writes = UsageWrites {
        keys,
        verified,
        errors: sample.errors,
        verify_rps: sample.rps(),
        written_after_seconds,
        rows_added: after.rows.saturating_sub(before.rows),
        bytes_added: after.bytes.saturating_sub(before.bytes),
        batches: after.batches.saturating_sub(before.batches),
    };
    let writes = &results.usage_writes;
    progress(&format!(
        "  {verified} keys verified at {:.0} req/s ({} errors); all counted {written_after_seconds:.2} s later: \
         {} rows, {} bytes added in {} batches",
        writes.verify_rps, writes.errors, writes.rows_added, writes.bytes_added, writes.batches
    ));
    drop(server);
    drop(database);
    Ok(())
}

/// What `usage_counts` and `usage_batches` hold at one moment.
struct Written {
    rows: u64,
    bytes: u64,
    batches: u64,
}

fn written(database: &ScratchDatabase) -> Result<Written> {
    let line = database.psql(
        "SELECT (SELECT count(*) FROM usage_counts), pg_total_relation_size('usage_counts'), \
         (SELECT count(*) FROM usage_batches)",
    )?;
    let fields: Vec<u64> = line
        .split('|')
        .map(|field| field.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading usage_counts' rows and size from {line:?}"))?;
    match fields[..] {
        [rows, bytes, batches] => Ok(Written { rows, bytes, batches }),
        _ => bail!("expected rows|bytes|batches, got {line:?}"),
    }
}

fn table_rows_and_bytes(database: &ScratchDatabase) -> Result<(u64, u64)> {
    let Written { rows, bytes, .. } = written(database)?;
    Ok((rows, bytes))
}

/// The start of the UTC hour holding `unix` (seconds).
fn hour_start(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix - unix.rem_euclid(3600)).context("the current hour")
}

fn rfc3339(at: time::OffsetDateTime) -> Result<String> {
    at.format(&time::format_description::well_known::Rfc3339).context("formatting a timestamp")
}

/// Whether `text` can go into SQL between quotes as it is (an id keysd
/// made, an RFC 3339 timestamp).
fn plain(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_-:.+".contains(&byte))
}

/// The rows of the key asked for: every hour of the 30 days from `since`,
/// under each of [`KEY_OUTCOMES`], as the usage writer files them.
pub fn key_usage_sql(workspace_uid: &str, key_id: &str, since: &str) -> Result<String> {
    if !(plain(workspace_uid) && plain(key_id) && plain(since)) {
        bail!("unexpected characters in {workspace_uid:?}, {key_id:?} or {since:?}");
    }
    let outcomes = KEY_OUTCOMES.map(|outcome| format!("'{outcome}'")).join(", ");
    Ok(format!(
        "INSERT INTO usage_counts (granularity, bucket, workspace_uid, key_id, outcome, count) \
         SELECT 'hour', '{since}'::timestamptz + make_interval(hours => h), '{workspace_uid}', '{key_id}', \
         outcome, 1 + h % 13 FROM generate_series(0, {last}) AS h, unnest(ARRAY[{outcomes}]) AS outcome",
        last = WINDOW_HOURS - 1
    ))
}

/// Synthetic keys `first..=last`, each counted `valid` in 4 hours of every
/// day of the 30 from `since` (hours `k % 6`, `+ 6`, `+ 12`, `+ 18` of key
/// `k`): store-shaped ids, 1,000 keys to a workspace, rows generated in the
/// primary key's order.
pub fn bulk_usage_sql(first: u64, last: u64, since: &str) -> String {
    let per_key = SYNTHETIC_ROWS_PER_KEY;
    format!(
        "INSERT INTO usage_counts (granularity, bucket, workspace_uid, key_id, outcome, count) \
         SELECT 'hour', '{since}'::timestamptz + make_interval(days => ((n % {per_key}) / 4)::int, \
         hours => (k % 6 + 6 * (n % 4))::int), 'wksp_01BENCH' || lpad((k / {SYNTHETIC_KEYS_PER_WORKSPACE})::text, 19, '0'), \
         'ws_apik_01BENCH' || lpad(k::text, 19, '0'), 'valid', 1 + (k + n) % 97 \
         FROM (SELECT n, {first} + n / {per_key} AS k FROM generate_series(0::bigint, {rows}::bigint) AS n) AS numbered",
        rows = (last + 1 - first) * per_key - 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_add_up() {
        assert_eq!(ROWS_PER_ANSWER, 1_440);
        assert_eq!(BUCKETS_PER_KEY_PER_DAY, 1_465);
        assert_eq!(RETAINED_BUCKETS_PER_KEY, 5_770);
        // 10^5 keys: 99,999 synthetic ones and the key asked for.
        assert_eq!(99_999 * SYNTHETIC_ROWS_PER_KEY + ROWS_PER_ANSWER as u64, 12_001_320);
        assert_eq!(rfc3339(hour_start(1_796_672_551).expect("hour")).expect("text"), "2026-12-07T19:00:00Z");
    }

    #[test]
    fn bulk_rows_are_numbered_per_key() {
        let sql = bulk_usage_sql(10_001, 20_000, "2026-11-07T19:00:00Z");
        assert!(sql.contains("generate_series(0::bigint, 1199999::bigint)"), "{sql}");
        assert!(sql.contains("10001 + n / 120 AS k"));
        let key = key_usage_sql("wksp_01J", "ws_apik_01J", "2026-11-07T19:00:00Z").expect("plain values");
        assert!(key.contains("generate_series(0, 719)") && key.contains("'valid', 'origin_not_allowed'"));
        assert!(key_usage_sql("wksp_'; DROP", "ws_apik_01J", "2026-11-07T19:00:00Z").is_err());
    }
}
