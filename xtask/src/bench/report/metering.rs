//! The rows of figure 10, metering: a metered key's verification beside
//! an unmetered key's (10), the database transactions per metered
//! verification (10b), the memory per metered key (10c), and two replicas
//! sharing a limit under overload and under a burst, and a balance (10d).

use serde_json::json;

use super::row::{mib, ratio_text, thousands, throughput, Row};
use crate::bench::figures::{paired_ratios, round, Results, SharedLimit};
use crate::bench::{median, Options};

/// The most transactions a metered verification may cost (10b).
const TRANSACTIONS_TARGET: f64 = 0.01;

pub(super) fn rows(rows: &mut Vec<Row>, options: &Options, results: &Results) {
    let metering = &results.metering;

    // 10. A metered key against an unmetered key, the same server, run for run.
    let (metered, unmetered) = (&metering.metered, &metering.unmetered);
    if !metered.runs.is_empty() {
        let metered_rps: Vec<f64> = metered.runs.iter().map(|run| run.rps).collect();
        let unmetered_rps: Vec<f64> = unmetered.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&metered_rps, &unmetered_rps);
        let ratio = median(&ratios);
        rows.push(Row {
            number: "10",
            id: "verify_api_key_postgres_metered".to_owned(),
            figure: format!(
                "API-key verification, PostgreSQL, a metered key (one auto-applied limit of 10⁹ per s, 10¹² \
                 credits), {} connections",
                options.concurrency
            ),
            keysd: throughput(metered, "req/s"),
            baseline: format!("an unmetered key, same server, same rounds: {}", throughput(unmetered, "req/s")),
            ratio: ratio_text(ratio),
            target: "≥ 0.90 of the unmetered key's req/s".to_owned(),
            met: Some(ratio >= 0.90 && metered.errors() == 0),
            json: json!({
                "keysd": metered.to_json(),
                "baseline": {"name": "the same verification of an unmetered key on the same keysd", "series": unmetered.to_json()},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
                "server_cores_busy": round(metered.server_cores(), 2),
                "baseline_server_cores_busy": round(unmetered.server_cores(), 2),
                "target": 0.90,
            }),
        });
    }

    // 10b. Database transactions per metered verification.
    let transactions = &metering.transactions;
    if transactions.verifications > 0 {
        let verifications = transactions.verifications as f64;
        let per_verification = transactions.xact_commits as f64 / verifications;
        let writes_per_verification = transactions.row_writes as f64 / verifications;
        rows.push(Row {
            number: "10b",
            id: "metering_transactions_per_verification_postgres".to_owned(),
            figure:
                "Database transactions per metered API-key verification over figure 10's warm-up and runs, PostgreSQL"
                    .to_owned(),
            keysd: format!(
                "{per_verification:.4} transactions a verification ({} committed in the keysd database in {:.0} s, \
                 {:.0}/s, every writer of keysd included: an upper bound); {writes_per_verification:.4} row writes \
                 to `meters` and `ratelimit_counters` a verification ({})",
                thousands(transactions.xact_commits as f64),
                transactions.seconds,
                transactions.xact_commits as f64 / transactions.seconds,
                thousands(transactions.row_writes as f64)
            ),
            baseline: format!(
                "the metered verifications admitted meanwhile (figure 10's runs and warm-up): {}, {}/s",
                thousands(verifications),
                thousands(verifications / transactions.seconds)
            ),
            ratio: "—".to_owned(),
            target: format!("≤ {TRANSACTIONS_TARGET} transactions a verification"),
            met: Some(per_verification <= TRANSACTIONS_TARGET),
            json: json!({
                "xact_commits": transactions.xact_commits,
                "meter_row_writes": transactions.row_writes,
                "verifications": transactions.verifications,
                "warmup_verifications": transactions.warmup_verifications,
                "seconds": round(transactions.seconds, 1),
                "transactions_per_second": round(transactions.xact_commits as f64 / transactions.seconds, 1),
                "transactions_per_verification": round(per_verification, 6),
                "meter_row_writes_per_verification": round(writes_per_verification, 6),
                "target_transactions_per_verification": TRANSACTIONS_TARGET,
            }),
        });
    }

    // 10c. Memory per metered key.
    let memory = &metering.memory;
    if memory.keys > 0 {
        let keys = memory.keys as f64;
        let bytes = |from: u64, to: u64| (to as f64 - from as f64) * 1024.0 / keys;
        let metered_bytes = bytes(memory.unmetered_after.rss_kib, memory.after.rss_kib);
        let unmetered_bytes = bytes(memory.before.rss_kib, memory.unmetered_after.rss_kib);
        let errors = match memory.errors {
            0 => String::new(),
            errors => format!(" · **{errors} errors** ({})", memory.first_error.as_deref().unwrap_or("?")),
        };
        rows.push(Row {
            number: "10c",
            id: "metering_memory_per_key".to_owned(),
            figure: format!(
                "Resident memory per metered key held by a replica, {} keys each verified once, {}",
                thousands(keys),
                memory.store
            ),
            keysd: format!(
                "{metered_bytes:.0} bytes a metered key (VmRSS {:.1} → {:.1} MiB){errors}",
                mib(memory.unmetered_after.rss_kib),
                mib(memory.after.rss_kib)
            ),
            baseline: format!(
                "{} unmetered keys verified once each before, same server: {unmetered_bytes:.0} bytes a key \
                 (VmRSS {:.1} → {:.1} MiB); metering's share {:.0} bytes",
                thousands(keys),
                mib(memory.before.rss_kib),
                mib(memory.unmetered_after.rss_kib),
                metered_bytes - unmetered_bytes
            ),
            ratio: "—".to_owned(),
            target: "(reported)".to_owned(),
            met: None,
            json: json!({
                "keys": memory.keys,
                "store": memory.store,
                "rss_kib_before": memory.before.rss_kib,
                "rss_kib_after_unmetered": memory.unmetered_after.rss_kib,
                "rss_kib_after_metered": memory.after.rss_kib,
                "bytes_per_metered_key": round(metered_bytes, 0),
                "bytes_per_unmetered_key": round(unmetered_bytes, 0),
                "metering_bytes_per_key": round(metered_bytes - unmetered_bytes, 0),
                "metered_verified": memory.metered_verified,
                "unmetered_verified": memory.unmetered_verified,
                "errors": memory.errors,
                "first_error": memory.first_error,
            }),
        });
    }

    // 10d. Two replicas on one PostgreSQL database.
    let steady = &metering.steady;
    if steady.requests > 0 {
        let (bucket, bound) = (steady.bucket_bound(), steady.replica_bound());
        let ratio = steady.admitted as f64 / bound;
        rows.push(Row {
            number: "10d",
            id: "metering_replicas_steady_overload".to_owned(),
            figure: format!(
                "Two replicas, one PostgreSQL: a limit of {} per {} s under a steady {:.0} req/s ({:.0}× the limit, \
                 alternating replicas, open loop) for {:.0} s",
                thousands(steady.limit as f64),
                steady.duration_seconds,
                steady.rate,
                steady.rate * steady.duration_seconds as f64 / steady.limit as f64,
                steady.seconds
            ),
            keysd: format!(
                "{} admitted, {} refused{}",
                thousands(steady.admitted as f64),
                thousands(steady.refused as f64),
                shared_errors(steady)
            ),
            baseline: format!(
                "one counter's bound L·(w+D)/D = {}: {:.3} of it; across replicas L·(w+h+D)/D = {} (h = {} s)",
                thousands(bucket),
                steady.admitted as f64 / bucket,
                thousands(bound),
                steady.horizon_seconds
            ),
            ratio: ratio_text(ratio),
            target: "≤ 1.00 of L·(w+h+D)/D".to_owned(),
            met: Some(ratio <= 1.0 && steady.errors == 0),
            json: shared_json(steady, json!({"ratio_to_replica_bound": round(ratio, 4)})),
        });
    }
    let burst = &metering.burst;
    if burst.requests > 0 {
        let ratio = burst.admitted as f64 / burst.limit as f64;
        let target = 1.0 + burst.horizon_seconds / burst.duration_seconds as f64;
        rows.push(Row {
            number: "10d",
            id: "metering_replicas_burst".to_owned(),
            figure: format!(
                "Two replicas, one PostgreSQL: {} verifications at once ({} connections over both) of a fresh key \
                 limited to {} per {} s",
                thousands(burst.requests as f64),
                burst.connections,
                thousands(burst.limit as f64),
                burst.duration_seconds
            ),
            keysd: format!(
                "{} admitted, {} refused in {:.2} s{}",
                thousands(burst.admitted as f64),
                thousands(burst.refused as f64),
                burst.seconds,
                shared_errors(burst)
            ),
            baseline: format!(
                "the limit, {}; the bound over the burst's length L·(w+h+D)/D = {}",
                thousands(burst.limit as f64),
                thousands(burst.replica_bound())
            ),
            ratio: format!("{ratio:.3}"),
            target: format!("≤ {target:.2} (1 + h/D) of the limit"),
            met: Some(ratio <= target + 1e-9 && burst.errors == 0),
            json: shared_json(
                burst,
                json!({
                    "ratio_to_limit": round(ratio, 4),
                    "ratio_to_replica_bound": round(burst.admitted as f64 / burst.replica_bound(), 4),
                    "target_ratio_to_limit": round(target, 4),
                }),
            ),
        });
    }
    let credits = &metering.credits;
    if credits.granted > 0 && credits.admitted + credits.refused + credits.errors > 0 {
        let ratio = credits.admitted as f64 / credits.granted as f64;
        let errors = match credits.errors {
            0 => String::new(),
            errors => format!(" · **{errors} errors** ({})", credits.first_error.as_deref().unwrap_or("?")),
        };
        rows.push(Row {
            number: "10d",
            id: "metering_replicas_credits".to_owned(),
            figure: format!(
                "Two replicas, one PostgreSQL: a balance of {} credits spent from both ({} connections) until \
                 refused for {:.0} s straight",
                thousands(credits.granted as f64),
                credits.connections,
                credits.quiet_seconds
            ),
            keysd: format!(
                "{} admitted, the last {:.2} s after the start; {} refused{errors}",
                thousands(credits.admitted as f64),
                credits.last_admitted_seconds,
                thousands(credits.refused as f64)
            ),
            baseline: format!("the credits granted: {}", thousands(credits.granted as f64)),
            ratio: format!("{ratio:.4}"),
            target: "≤ 1.00 always, ≥ 0.99".to_owned(),
            met: Some(credits.admitted <= credits.granted && ratio >= 0.99 && credits.errors == 0),
            json: json!({
                "granted": credits.granted,
                "admitted": credits.admitted,
                "refused": credits.refused,
                "errors": credits.errors,
                "first_error": credits.first_error,
                "connections": credits.connections,
                "seconds": round(credits.seconds, 3),
                "last_admitted_seconds": round(credits.last_admitted_seconds, 3),
                "quiet_seconds": credits.quiet_seconds,
                "ratio": round(ratio, 5),
                "target": {"at_most": 1.0, "at_least": 0.99},
            }),
        });
    }
}

fn shared_errors(run: &SharedLimit) -> String {
    match run.errors {
        0 => String::new(),
        errors => format!(" · **{errors} errors** ({})", run.first_error.as_deref().unwrap_or("?").replace('|', "/")),
    }
}

fn shared_json(run: &SharedLimit, extra: serde_json::Value) -> serde_json::Value {
    let mut value = json!({
        "limit": run.limit,
        "duration_seconds": run.duration_seconds,
        "horizon_seconds": run.horizon_seconds,
        "rate_per_second": round(run.rate, 1),
        "connections": run.connections,
        "requests": run.requests,
        "seconds": round(run.seconds, 3),
        "admitted": run.admitted,
        "refused": run.refused,
        "errors": run.errors,
        "first_error": run.first_error,
        "bucket_bound": round(run.bucket_bound(), 1),
        "replica_bound": round(run.replica_bound(), 1),
    });
    if let (Some(map), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        map.extend(extra);
    }
    value
}

#[cfg(test)]
mod tests {
    use crate::bench::figures::SharedLimit;

    #[test]
    fn the_bounds_widen_with_the_horizon() {
        let run = SharedLimit {
            limit: 1_000,
            duration_seconds: 10,
            horizon_seconds: 0.5,
            seconds: 20.0,
            ..Default::default()
        };
        assert_eq!(run.bucket_bound(), 3_000.0);
        assert_eq!(run.replica_bound(), 3_050.0);
    }
}
