//! The rows of figure 9: one key's 30 days of hourly usage read through
//! keysd among a month of many keys' rows, beside the same query with the
//! key's rows alone; and 9b, the usage writer's rows and bytes, measured
//! for keys verified once each, and from them the rows per minute and the
//! bytes per day of keys verified every minute, computed.

use serde_json::json;

use super::row::{ratio_text, thousands, throughput, Row};
use crate::bench::figures::{round, Results, UsageWrites, BUCKETS_PER_KEY_PER_DAY, RETAINED_BUCKETS_PER_KEY};

/// The keys of the target of figure 9: the p99 target applies to a
/// table of this many keys' months.
const TARGET_KEYS: u64 = 100_000;

/// The active keys 9b computes its per-minute and per-day figures for.
pub(super) const ACTIVE_KEYS: u64 = 10_000;

/// 9b's figures, measured and computed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WriteFigures {
    /// Measured: rows added per key verified once (a bucket of each width).
    rows_per_key: f64,
    /// Measured: growth of `usage_counts` (indexes included) per row added.
    bytes_per_row: f64,
    /// Computed for [`ACTIVE_KEYS`] keys each verified once a minute (one
    /// outcome): the rows each minute's write touches.
    rows_per_minute: f64,
    /// Computed: rows and bytes added per day (every minute a new minute
    /// row, every hour a new hour row, every day a new day row).
    rows_per_day: f64,
    bytes_per_day: f64,
    /// Computed: what the table holds once keysd's default retention
    /// prunes as much as it adds.
    rows_retained: f64,
    bytes_retained: f64,
}

impl WriteFigures {
    fn of(writes: &UsageWrites) -> Self {
        let per = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { f64::NAN };
        let rows_per_key = per(writes.rows_added as f64, writes.verified as f64);
        let bytes_per_row = per(writes.bytes_added as f64, writes.rows_added as f64);
        let keys = ACTIVE_KEYS as f64;
        let rows_per_day = keys * BUCKETS_PER_KEY_PER_DAY as f64;
        let rows_retained = keys * RETAINED_BUCKETS_PER_KEY as f64;
        Self {
            rows_per_key,
            bytes_per_row,
            rows_per_minute: keys * rows_per_key,
            rows_per_day,
            bytes_per_day: rows_per_day * bytes_per_row,
            rows_retained,
            bytes_retained: rows_retained * bytes_per_row,
        }
    }
}

/// Bytes in MiB, or in GiB from 1 GiB on.
fn size(bytes: f64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if !bytes.is_finite() {
        "n/a".to_owned()
    } else if bytes >= 1024.0 * MIB {
        format!("{:.2} GiB", bytes / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", bytes / MIB)
    }
}

pub(super) fn rows(rows: &mut Vec<Row>, results: &Results) {
    // 9. One key's 30 days of hours among many keys' months.
    let query = &results.usage_query;
    if !query.series.runs.is_empty() {
        let (series, alone) = (&query.series, &query.alone);
        let ratio = series.p99() / alone.p99();
        let at_target_size = query.keys >= TARGET_KEYS;
        let clean = series.errors() == 0;
        rows.push(Row {
            number: "9",
            id: "usage_key_30_days_hourly_postgres".to_owned(),
            figure: format!(
                "`GET /v1/staging/usage/?granularity=hour&key_id=…` over 30 days ({} rows an answer), one key among \
                 {} keys with a month of hourly counts ({} rows, {} with indexes), PostgreSQL, 1 connection",
                thousands(query.rows_per_answer as f64),
                thousands(query.keys as f64),
                thousands(query.rows as f64),
                size(query.table_bytes as f64)
            ),
            keysd: throughput(series, "req/s"),
            baseline: format!(
                "the key's {} rows alone in the table: {}",
                thousands(query.rows_per_answer as f64),
                throughput(alone, "req/s")
            ),
            ratio: format!("{} (p99)", ratio_text(ratio)),
            target: if at_target_size {
                "p99 < 20 ms".to_owned()
            } else {
                format!("p99 < 20 ms at {} keys (not measured in this mode)", thousands(TARGET_KEYS as f64))
            },
            met: at_target_size.then_some(clean && series.p99() < 20.0),
            json: json!({
                "keys": query.keys,
                "rows": query.rows,
                "table_bytes": query.table_bytes,
                "insert_seconds": round(query.insert_seconds, 1),
                "rows_per_answer": query.rows_per_answer,
                "since": query.since,
                "until": query.until,
                "connections": 1,
                "keysd": series.to_json(),
                "baseline": {
                    "name": format!("the same query with the key's {} rows alone in usage_counts", query.rows_per_answer),
                    "series": alone.to_json(),
                },
                "ratio_p99": round(ratio, 3),
                "target_p99_ms": 20,
                "target_keys": TARGET_KEYS,
            }),
        });
    }

    // 9b. The usage writer's rows and bytes.
    let writes = &results.usage_writes;
    if writes.verified > 0 {
        let figures = WriteFigures::of(writes);
        let keys = thousands(ACTIVE_KEYS as f64);
        rows.push(Row {
            number: "9b",
            id: "usage_rows_and_bytes_postgres".to_owned(),
            figure: format!(
                "Usage rows written per minute and `usage_counts` growth per day, {keys} API keys each verified \
                 every minute, PostgreSQL"
            ),
            keysd: format!(
                "measured: verifying {} keys once each added {} rows ({:.2} a key) and {} to `usage_counts` with \
                 its indexes, {:.0} bytes a row; computed for {keys} keys: {} rows written a minute, {} rows and {} \
                 added a day ({} rows a key), {} rows and {} held at the default retention",
                thousands(writes.verified as f64),
                thousands(writes.rows_added as f64),
                figures.rows_per_key,
                size(writes.bytes_added as f64),
                figures.bytes_per_row,
                thousands(figures.rows_per_minute),
                thousands(figures.rows_per_day),
                size(figures.bytes_per_day),
                thousands(BUCKETS_PER_KEY_PER_DAY as f64),
                thousands(figures.rows_retained),
                size(figures.bytes_retained)
            ),
            baseline: format!(
                "the uses: {} verifications/s{}; all counted {:.2} s after the last, at `--usage-interval-seconds 1`",
                thousands(writes.verify_rps),
                if writes.errors > 0 { format!(" (**{} errors**)", writes.errors) } else { String::new() },
                writes.written_after_seconds
            ),
            ratio: "—".to_owned(),
            target: "(reported)".to_owned(),
            met: None,
            json: json!({
                "measured": {
                    "keys": writes.keys,
                    "verified": writes.verified,
                    "errors": writes.errors,
                    "verify_rps": round(writes.verify_rps, 1),
                    "written_after_seconds": round(writes.written_after_seconds, 3),
                    "batches": writes.batches,
                    "rows_added": writes.rows_added,
                    "bytes_added": writes.bytes_added,
                    "rows_per_key": round(figures.rows_per_key, 3),
                    "bytes_per_row": round(figures.bytes_per_row, 1),
                },
                "computed": {
                    "active_keys": ACTIVE_KEYS,
                    "rows_written_per_minute": round(figures.rows_per_minute, 0),
                    "rows_per_key_per_day": BUCKETS_PER_KEY_PER_DAY,
                    "bytes_per_key_per_day": round(BUCKETS_PER_KEY_PER_DAY as f64 * figures.bytes_per_row, 0),
                    "rows_added_per_day": round(figures.rows_per_day, 0),
                    "bytes_added_per_day": round(figures.bytes_per_day, 0),
                    "rows_per_key_retained": RETAINED_BUCKETS_PER_KEY,
                    "rows_retained": round(figures.rows_retained, 0),
                    "bytes_retained": round(figures.bytes_retained, 0),
                    "retention": "48 h of minutes, 90 days of hours, 730 days of days (keysd's defaults)",
                },
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_figures_scale_the_measured_row() {
        let writes = UsageWrites { verified: 10_000, rows_added: 30_000, bytes_added: 4_500_000, ..Default::default() };
        let figures = WriteFigures::of(&writes);
        assert_eq!((figures.rows_per_key, figures.bytes_per_row), (3.0, 150.0));
        assert_eq!(figures.rows_per_minute, 30_000.0);
        assert_eq!(figures.rows_per_day, 14_650_000.0);
        assert_eq!(figures.bytes_per_day, 14_650_000.0 * 150.0);
        assert_eq!(figures.rows_retained, 57_700_000.0);
        assert!(WriteFigures::of(&UsageWrites::default()).bytes_per_row.is_nan());
        assert_eq!(size(4_500_000.0), "4.3 MiB");
        assert_eq!(size(3.3e9), "3.07 GiB");
        assert_eq!(size(f64::NAN), "n/a");
    }
}
