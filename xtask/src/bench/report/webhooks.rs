//! The rows of figure 11, webhooks: the deliverer draining a backlog to a
//! local receiver from one and two replicas (11a), the latency one
//! subscribed endpoint adds to a management write (11b), and verification
//! beside a busy deliverer against an idle one (11c).

use serde_json::json;

use super::row::{latency, ms, ratio_text, thousands, throughput, Row};
use crate::bench::figures::{paired_ratios, round, Results, Series};
use crate::bench::{median, Options};

/// 11b: the most one endpoint may add to a write's latency, p50 and p99.
const LATENCY_TARGET: f64 = 1.10;
/// 11c: the least verification throughput beside a busy deliverer, of
/// that beside an idle one.
const THROUGHPUT_TARGET: f64 = 0.95;

pub(super) fn rows(rows: &mut Vec<Row>, options: &Options, results: &Results) {
    let webhooks = &results.webhooks;

    // 11a. Backlogs drained, each beside the one replica's at its bound.
    for drain in &webhooks.drains {
        let single = webhooks
            .drains
            .iter()
            .find(|other| other.replicas == 1 && other.in_flight == drain.in_flight && other.store == drain.store);
        let (baseline, ratio) = match single {
            Some(single) if drain.replicas > 1 => (
                format!("one replica, same bound: {} deliveries/s", thousands(single.per_second())),
                drain.per_second() / single.per_second(),
            ),
            _ => ("—".to_owned(), f64::NAN),
        };
        let complete = drain.error.is_none() && drain.distinct == drain.events && drain.delivered == drain.events;
        let error = match &drain.error {
            Some(error) => format!(" · **{error}**"),
            None => String::new(),
        };
        let replicas =
            if drain.replicas == 1 { "one replica".to_owned() } else { format!("{} replicas", drain.replicas) };
        rows.push(Row {
            number: "11a",
            id: format!(
                "webhooks_deliveries_per_second_{}_{}_replica{}_in_flight_{}",
                drain.store.to_lowercase(),
                drain.replicas,
                if drain.replicas == 1 { "" } else { "s" },
                drain.in_flight
            ),
            figure: format!(
                "Webhook deliveries per second to a local receiver, a backlog of {} events, {replicas} on one {}, \
                 `--webhook-in-flight-per-endpoint {}`",
                thousands(drain.events as f64),
                drain.store,
                drain.in_flight
            ),
            keysd: format!(
                "{} deliveries/s ({} in {:.2} s) · {} duplicates · {} attempts, {} failed{error}",
                thousands(drain.per_second()),
                thousands(drain.distinct as f64),
                drain.seconds,
                drain.duplicates(),
                thousands(drain.attempts as f64),
                drain.failed
            ),
            baseline,
            ratio: ratio_text(ratio),
            target: "every event once, 0 duplicates (the rate is reported)".to_owned(),
            met: Some(complete && drain.duplicates() == 0 && drain.without_id == 0),
            json: json!({
                "store": drain.store,
                "replicas": drain.replicas,
                "in_flight_per_endpoint": drain.in_flight,
                "events": drain.events,
                "insert_seconds": round(drain.insert_seconds, 3),
                "seconds": round(drain.seconds, 3),
                "deliveries_per_second": round(drain.per_second(), 1),
                "requests": drain.requests,
                "distinct_webhook_ids": drain.distinct,
                "requests_without_webhook_id": drain.without_id,
                "duplicates": drain.duplicates(),
                "delivered": drain.delivered,
                "failed": drain.failed,
                "pending": drain.pending,
                "attempts": drain.attempts,
                "attempt_ms_mean": round(drain.attempt_ms, 2),
                "replica_cpu_seconds": drain.replica_cpu_seconds.iter().map(|cpu| round(*cpu, 2)).collect::<Vec<_>>(),
                "ratio_to_one_replica": round(ratio, 3),
                "error": drain.error,
            }),
        });
    }

    // 11b. A write's latency with one endpoint, against none.
    for patch in &webhooks.patch {
        if patch.with.runs.is_empty() {
            continue;
        }
        let ratios = |pick: fn(&Series) -> Vec<f64>| median(&paired_ratios(&pick(&patch.with), &pick(&patch.without)));
        let p50 = ratios(|series| series.runs.iter().map(|run| run.p50_ms).collect());
        let p99 = ratios(|series| series.runs.iter().map(|run| run.p99_ms).collect());
        let errors = patch.with.errors() + patch.without.errors();
        let delivered: u64 = patch.delivered.iter().sum();
        let seconds: f64 = patch.with.runs.iter().map(|run| run.seconds).sum();
        rows.push(Row {
            number: "11b",
            id: format!("webhooks_write_latency_{}", patch.store.to_lowercase()),
            figure: format!(
                "API-key PATCH latency, {}, one connection, with one endpoint subscribed to every event (its \
                 receiver answers 200)",
                patch.store
            ),
            keysd: format!(
                "{} · {} PATCH/s · {} delivered meanwhile ({}/s), at most {} pending at a run's end",
                latency(&patch.with),
                thousands(patch.with.rps()),
                thousands(delivered as f64),
                thousands(delivered as f64 / seconds),
                patch.pending_after.iter().max().copied().unwrap_or(0)
            ),
            baseline: format!(
                "no endpoint, same server, alternate runs: {} · {} PATCH/s",
                latency(&patch.without),
                thousands(patch.without.rps())
            ),
            ratio: format!("p50 {} · p99 {}", ratio_text(p50), ratio_text(p99)),
            target: format!("≤ {LATENCY_TARGET:.2} at p50 and p99"),
            met: Some(p50 <= LATENCY_TARGET && p99 <= LATENCY_TARGET && errors == 0),
            json: json!({
                "store": patch.store,
                "keysd": patch.with.to_json(),
                "baseline": {"name": "the same PATCHes with no endpoint, same server, alternate runs", "series": patch.without.to_json()},
                "ratio_p50": round(p50, 3),
                "ratio_p99": round(p99, 3),
                "delivered_per_run": patch.delivered,
                "pending_after_run": patch.pending_after,
                "target": LATENCY_TARGET,
            }),
        });
    }

    // 11c. Verification beside a busy deliverer, against an idle one.
    let (busy, idle) = (&webhooks.busy, &webhooks.idle);
    if !busy.runs.is_empty() {
        let busy_rps: Vec<f64> = busy.runs.iter().map(|run| run.rps).collect();
        let idle_rps: Vec<f64> = idle.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&busy_rps, &idle_rps);
        let ratio = median(&ratios);
        let delivered: u64 = webhooks.busy_delivered.iter().sum();
        let seconds: f64 = busy.runs.iter().map(|run| run.seconds).sum();
        let write_errors = webhooks.busy_writes.errors() + webhooks.idle_writes.errors();
        let writes_note = match write_errors {
            0 => String::new(),
            errors => format!(" · **{errors} write errors**"),
        };
        rows.push(Row {
            number: "11c",
            id: "webhooks_verify_api_key_postgres_busy_deliverer".to_owned(),
            figure: format!(
                "API-key verification, PostgreSQL, {} connections, beside {:.0} PATCHes/s, each event delivered to \
                 one endpoint (the deliverer busy)",
                options.concurrency, webhooks.writer_rate
            ),
            keysd: format!(
                "{} · {} delivered during the runs ({}/s); PATCH p99 {}{writes_note}",
                throughput(busy, "req/s"),
                thousands(delivered as f64),
                thousands(delivered as f64 / seconds),
                ms(webhooks.busy_writes.p99())
            ),
            baseline: format!(
                "no endpoint (the deliverer idle), the same PATCHes, same server, same rounds: {}; PATCH p99 {}",
                throughput(idle, "req/s"),
                ms(webhooks.idle_writes.p99())
            ),
            ratio: ratio_text(ratio),
            target: format!("≥ {THROUGHPUT_TARGET:.2} of the idle deliverer's req/s"),
            met: Some(ratio >= THROUGHPUT_TARGET && busy.errors() == 0 && write_errors == 0),
            json: json!({
                "keysd": busy.to_json(),
                "baseline": {"name": "the same verification and PATCHes with no endpoint, same server, same rounds", "series": idle.to_json()},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
                "server_cores_busy": round(busy.server_cores(), 2),
                "baseline_server_cores_busy": round(idle.server_cores(), 2),
                "writer_rate_per_second": webhooks.writer_rate,
                "writes_busy": webhooks.busy_writes.to_json(),
                "writes_idle": webhooks.idle_writes.to_json(),
                "delivered_per_run": webhooks.busy_delivered,
                "pending_after_run": webhooks.busy_pending_after,
                "attempt_ms_mean_per_run": webhooks.busy_attempt_ms.iter().map(|ms| round(*ms, 2)).collect::<Vec<_>>(),
                "attempt_ms_max_per_run": webhooks.busy_attempt_max_ms,
                "target": THROUGHPUT_TARGET,
            }),
        });
    }
}
