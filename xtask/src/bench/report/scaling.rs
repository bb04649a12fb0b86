//! The rows of the figures measured at growing sizes, each level beside the
//! smallest: 2, verification as stored keys grow; 7, a page of audit events
//! as the trail grows, and 7b, the export of the largest trail.

use serde_json::json;

use super::row::{ms, ratio_text, thousands, throughput, Row};
use crate::bench::figures::{round, Results, Series};

/// One level of a scaling figure: how many (keys, events), the seconds the
/// bulk insert took, the series measured there.
type Level<'a> = (u64, f64, &'a Series);

/// The rows of a figure measured at growing sizes (2: stored keys, 7: audit
/// events): each level beside the smallest one's p99, the target at 10^6.
/// `name` gives each level's id and title.
fn scaling_rows(
    rows: &mut Vec<Row>,
    (number, noun): (&'static str, &str),
    levels: &[Level<'_>],
    name: impl Fn(u64) -> (String, String),
) {
    let Some(&(first, _, reference)) = levels.first() else { return };
    let largest = levels.last().map_or(0, |level| level.0);
    for &(count, insert_seconds, series) in levels {
        let ratio = series.p99() / reference.p99();
        let is_reference = count == first;
        let is_target = count >= 1_000_000 && !is_reference;
        let (id, figure) = name(count);
        rows.push(Row {
            number,
            id,
            figure,
            keysd: throughput(series, "req/s"),
            baseline: if is_reference {
                "(the reference of this figure)".to_owned()
            } else {
                format!("{} {noun}: p99 {}", thousands(first as f64), ms(reference.p99()))
            },
            ratio: if is_reference { "1.00".to_owned() } else { format!("{} (p99)", ratio_text(ratio)) },
            target: if is_target {
                "p99 ≤ 1.3 × p99 at 1,000".to_owned()
            } else if largest < 1_000_000 && count == largest && !is_reference {
                "(1M not measured in this mode)".to_owned()
            } else {
                "—".to_owned()
            },
            met: if is_target { Some(ratio <= 1.3) } else { None },
            json: json!({
                noun: count,
                "insert_seconds": round(insert_seconds, 1),
                "keysd": series.to_json(),
                "baseline": {"name": format!("{first} {noun}"), "p99_ms": round(reference.p99(), 3)},
                "ratio_p99": round(ratio, 3),
            }),
        });
    }
}

/// 2. Key-count scaling.
pub(super) fn key_count_rows(rows: &mut Vec<Row>, results: &Results, connections: &str) {
    let levels: Vec<Level<'_>> =
        results.scaling.iter().map(|scale| (scale.keys, scale.insert_seconds, &scale.series)).collect();
    scaling_rows(rows, ("2", "keys"), &levels, |keys| {
        (
            format!("verify_api_key_postgres_{keys}_keys"),
            format!("API-key verification latency, {} keys in PostgreSQL, {connections}", thousands(keys as f64)),
        )
    });
}

/// 7. A page of audit events as the trail grows, and its export.
pub(super) fn audit_rows(rows: &mut Vec<Row>, results: &Results, connections: &str) {
    if !results.audit_pages.is_empty() {
        let levels: Vec<Level<'_>> =
            results.audit_pages.iter().map(|pages| (pages.events, pages.insert_seconds, &pages.series)).collect();
        scaling_rows(rows, ("7", "events"), &levels, |events| {
            (
                format!("audit_event_page_postgres_{events}_events"),
                format!(
                    "`GET /v1/audit_event/?limit=50`, {} events in the organisation, PostgreSQL, {connections}",
                    thousands(events as f64)
                ),
            )
        });
        let export = &results.audit_export;
        let peak_mib = export.peak_rss_kib as f64 / 1024.0;
        rows.push(Row {
            number: "7b",
            id: "audit_export_postgres".to_owned(),
            figure: format!("`keysd audit export` of {} events (NDJSON), PostgreSQL", thousands(export.events as f64)),
            keysd: format!(
                "{:.1} s ({} events/s), peak RSS {peak_mib:.1} MiB",
                export.seconds,
                thousands(export.events as f64 / export.seconds.max(1e-9))
            ),
            baseline: "—".to_owned(),
            ratio: "—".to_owned(),
            target: "peak RSS < 50 MB".to_owned(),
            met: Some(export.peak_rss_kib * 1024 < 50_000_000),
            json: json!({
                "events": export.events,
                "seconds": round(export.seconds, 2),
                "peak_rss_kib": export.peak_rss_kib,
            }),
        });
    }
}
