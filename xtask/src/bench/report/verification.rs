//! The rows of figure 1: API-key verification beside hello, forward
//! authentication (1b), `last_used_at` recording on against off (1c), its
//! writer with many keys (1d), CPU per request against its floor (1e), an
//! imported foreign-format key against a keysd-format one (1f), and usage
//! counting on against off (1g).

use serde_json::json;

use super::row::{ratio_text, thousands, throughput, Row};
use crate::bench::figures::{paired_ratios, round, Results, Series};
use crate::bench::{median, Options};

pub(super) fn api_key_rows(rows: &mut Vec<Row>, options: &Options, results: &Results, hello_rps: &[f64]) {
    // 1. API-key verification beside hello.
    for (store, series) in [("SQLite", &results.verify_sqlite), ("PostgreSQL", &results.verify_postgres)] {
        let keysd_rps: Vec<f64> = series.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&keysd_rps, hello_rps);
        let ratio = median(&ratios);
        rows.push(Row {
            number: "1",
            id: format!("verify_api_key_{}", store.to_lowercase()),
            figure: format!("API-key verification, {store}, {} connections", options.concurrency),
            keysd: throughput(series, "req/s"),
            baseline: format!("hello: {}", throughput(&results.hello, "req/s")),
            ratio: ratio_text(ratio),
            target: "≥ 0.70 of hello's req/s".to_owned(),
            met: Some(ratio >= 0.70),
            json: json!({
                "keysd": series.to_json(),
                "baseline": {"name": "hello (minimal hyper server)", "series": results.hello.to_json()},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
                "server_cores_busy": round(series.server_cores(), 2),
                "baseline_server_cores_busy": round(results.hello.server_cores(), 2),
            }),
        });
    }

    // 1c. `last_used_at` recording on (the default) against off.
    rows.push(on_against_off(
        ("1c", "verify_api_key_postgres_last_used_recording"),
        format!(
            "API-key verification, PostgreSQL, `last_used_at` recorded (default), {} connections",
            options.concurrency
        ),
        (&results.verify_postgres, &results.verify_postgres_unrecorded),
        ("--last-used-interval-seconds 0", "recording off"),
    ));

    // 1d. The `last_used_at` writer with many distinct keys.
    {
        let flush = &results.flush;
        // At the default interval every key in use is written once a
        // minute, in one transaction.
        let per_second_at_default = flush.keys as f64 / 60.0;
        rows.push(Row {
            number: "1d",
            id: "last_used_flush".to_owned(),
            figure: format!(
                "`last_used_at` of {} distinct keys used in one interval, PostgreSQL",
                thousands(flush.keys as f64)
            ),
            keysd: format!(
                "every key written {:.2} s after its last use at `--last-used-interval-seconds 1` (one \
                 transaction per interval); at the default 60 s: {:.0} row updates/s, 1 transaction/min",
                flush.written_after_seconds, per_second_at_default
            ),
            baseline: format!("the uses: {} verifications/s", thousands(flush.verify_rps)),
            ratio: "—".to_owned(),
            target: "no database write on the verify path".to_owned(),
            met: None,
            json: json!({
                "keys": flush.keys,
                "written_after_seconds": round(flush.written_after_seconds, 3),
                "row_updates_per_second_at_60s": round(per_second_at_default, 1),
                "verify_rps": round(flush.verify_rps, 1),
            }),
        });
    }

    // 1e. CPU per request against what a request must cost: hello's CPU
    // per request plus the crypto alone.
    {
        let hello_us = results.hello.cpu_us_per_request();
        let floors = [
            (
                "api_key_postgres",
                "API-key verification, PostgreSQL",
                &results.verify_postgres,
                results.sha256_api_key_us,
                "SHA-256 of the key in-process",
                1.2,
            ),
            (
                "es256_cold",
                "cold ES256 user-token verification",
                &results.jwt_es256.series,
                1e6 / results.openssl.ecdsap256_verify_per_s,
                "`openssl speed` ecdsap256 verify, 1 core",
                1.25,
            ),
            (
                "rs256_cold",
                "cold RS256 JWT verification",
                &results.jwt_rs256.series,
                1e6 / results.openssl.rsa2048_verify_per_s,
                "`openssl speed` rsa2048 verify, 1 core",
                1.3,
            ),
        ];
        for (id, name, series, crypto_us, crypto_name, target) in floors {
            let keysd_us = series.cpu_us_per_request();
            let floor = hello_us + crypto_us;
            let ratio = keysd_us / floor;
            rows.push(Row {
                number: "1e",
                id: format!("cpu_per_request_{id}"),
                figure: format!("keysd CPU per request, {name}"),
                keysd: format!("{keysd_us:.1} µs"),
                baseline: format!("floor {floor:.1} µs = hello {hello_us:.1} µs + {crypto_name} {crypto_us:.2} µs"),
                ratio: ratio_text(ratio),
                target: format!("≤ {target:.2} × the floor"),
                met: Some(ratio <= target),
                json: json!({
                    "keysd_us": round(keysd_us, 2),
                    "hello_us": round(hello_us, 2),
                    "crypto_us": round(crypto_us, 3),
                    "crypto": crypto_name,
                    "ratio": round(ratio, 3),
                    "target": target,
                }),
            });
        }
    }

    // 1f. An imported key of a foreign format against a keysd-format key,
    // the same server, run for run.
    {
        let foreign = &results.verify_postgres_foreign;
        let native = &results.verify_postgres;
        let foreign_rps: Vec<f64> = foreign.runs.iter().map(|run| run.rps).collect();
        let native_rps: Vec<f64> = native.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&foreign_rps, &native_rps);
        let ratio = median(&ratios);
        rows.push(Row {
            number: "1f",
            id: "verify_api_key_postgres_foreign_format".to_owned(),
            figure: format!(
                "API-key verification, PostgreSQL, an imported key of a foreign format (`sk_live_…`), {} connections",
                options.concurrency
            ),
            keysd: throughput(foreign, "req/s"),
            baseline: format!("a keysd-format key (`SS.…`), same server: {}", throughput(native, "req/s")),
            ratio: ratio_text(ratio),
            target: "≥ 0.95 of the keysd-format key's req/s".to_owned(),
            met: Some(ratio >= 0.95),
            json: json!({
                "keysd": foreign.to_json(),
                "baseline": {"name": "the same verification with a keysd-format key (figure 1, PostgreSQL)", "series": native.to_json()},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
                "server_cores_busy": round(foreign.server_cores(), 2),
                "baseline_server_cores_busy": round(native.server_cores(), 2),
            }),
        });
    }

    // 1g. Usage counting on (the default) against off.
    rows.push(on_against_off(
        ("1g", "verify_api_key_postgres_usage_counting"),
        format!(
            "API-key verification, PostgreSQL, usage counted (default, written every 60 s), {} connections",
            options.concurrency
        ),
        (&results.verify_postgres, &results.verify_postgres_uncounted),
        ("--usage-interval-seconds 0", "counting off"),
    ));
}

/// A row of figure 1's PostgreSQL verification with keysd's default on
/// against the same with a recorder turned off by `flag` (1c, 1g): the
/// runs alternate in the same rounds, the ratio is the median of the
/// per-run ratios, the target 0.95.
fn on_against_off(
    (number, id): (&'static str, &str),
    figure: String,
    (on, off): (&Series, &Series),
    (flag, off_name): (&str, &str),
) -> Row {
    let on_rps: Vec<f64> = on.runs.iter().map(|run| run.rps).collect();
    let off_rps: Vec<f64> = off.runs.iter().map(|run| run.rps).collect();
    let ratios = paired_ratios(&on_rps, &off_rps);
    let ratio = median(&ratios);
    Row {
        number,
        id: id.to_owned(),
        figure,
        keysd: throughput(on, "req/s"),
        baseline: format!("the same with `{flag}`: {}", throughput(off, "req/s")),
        ratio: ratio_text(ratio),
        target: format!("≥ 0.95 of {off_name}"),
        met: Some(ratio >= 0.95),
        json: json!({
            "keysd": on.to_json(),
            "baseline": {"name": format!("keysd with {flag}"), "series": off.to_json()},
            "ratio": round(ratio, 3),
            "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
            "server_cores_busy": round(on.server_cores(), 2),
            "baseline_server_cores_busy": round(off.server_cores(), 2),
        }),
    }
}

pub(super) fn forward_rows(rows: &mut Vec<Row>, options: &Options, results: &Results, hello_rps: &[f64]) {
    // 1b. API-key forward authentication beside hello.
    {
        let forward = &results.forward_postgres;
        let forward_rps: Vec<f64> = forward.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&forward_rps, hello_rps);
        let ratio = median(&ratios);
        rows.push(Row {
            number: "1b",
            id: "forward_auth_api_key_postgres".to_owned(),
            figure: format!(
                "API-key forward authentication (`/v1/auth/forward`, `Bearer`), PostgreSQL, {} connections",
                options.concurrency
            ),
            keysd: throughput(forward, "req/s"),
            baseline: format!("hello: {}", throughput(&results.hello, "req/s")),
            ratio: ratio_text(ratio),
            target: "≥ 0.80 of hello's req/s".to_owned(),
            met: Some(ratio >= 0.8),
            json: json!({
                "keysd": forward.to_json(),
                "baseline": {"name": "hello (minimal hyper server)", "series": results.hello.to_json()},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
            }),
        });
    }
}
