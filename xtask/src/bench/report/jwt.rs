//! The rows of figure 3: cold JWT verification beside `openssl speed`,
//! without `kid` (3b), the warm path beside hello (3c) and its memory (3d).

use serde_json::json;

use super::row::{mib, ratio_text, thousands, throughput, Row};
use crate::bench::figures::{paired_ratios, round, Results};
use crate::bench::{median, Options};

pub(super) fn rows(rows: &mut Vec<Row>, options: &Options, results: &Results) {
    // 3. Cold JWT verification beside openssl speed.
    let cores = results.machine.cores as f64;
    for (name, jwt, single, endpoint, openssl_name) in [
        (
            "ES256 user tokens (secure mode)",
            &results.jwt_es256,
            results.openssl.ecdsap256_verify_per_s,
            "/v1/verify/public_key/",
            "ecdsap256",
        ),
        (
            "RS256 organisation tokens",
            &results.jwt_rs256,
            results.openssl.rsa2048_verify_per_s,
            "/v1/verify/jwt/",
            "rsa2048",
        ),
    ] {
        let bound = single * cores;
        let ratio = jwt.series.rps() / bound;
        let busy = jwt.series.server_cores();
        let per_core = jwt.series.rps() / busy;
        rows.push(Row {
            number: "3",
            id: format!("verify_jwt_cold_{}", openssl_name),
            figure: format!("Cold JWT verification, {name}, `{endpoint}`, {} connections", options.concurrency),
            keysd: format!(
                "{} · keysd busy {:.2} cores ({} verifications/s per busy core)",
                throughput(&jwt.series, "req/s"),
                busy,
                thousands(per_core)
            ),
            baseline: format!(
                "`openssl speed` {openssl_name} verify: {}/s on 1 core × {} cores = {}/s (keys-crypto in-process, \
                 1 thread: {}/s; {}/s with the PEM parse keysd does per request)",
                thousands(single),
                results.machine.cores,
                thousands(bound),
                thousands(jwt.library_verify_per_s),
                thousands(jwt.library_pem_verify_per_s)
            ),
            ratio: ratio_text(ratio),
            target: "≥ 0.50 of the openssl bound".to_owned(),
            met: Some(ratio >= 0.5),
            json: json!({
                "keysd": jwt.series.to_json(),
                "tokens_per_run": jwt.tokens_per_run,
                "token_signing_seconds": round(jwt.signing_seconds, 1),
                "server_cores_busy": round(busy, 2),
                "rps_per_busy_core": round(per_core, 1),
                "baseline": {
                    "name": format!("openssl speed -seconds {} {openssl_name}", results.openssl.seconds),
                    "single_core_verify_per_s": round(single, 1),
                    "cores": results.machine.cores,
                    "bound_per_s": round(bound, 1),
                },
                "library_baseline": {
                    "name": "keys-crypto jwt::verify in the bench process, one thread",
                    "verify_per_s": round(jwt.library_verify_per_s, 1),
                    "pem_parse_and_verify_per_s": round(jwt.library_pem_verify_per_s, 1),
                },
                "ratio": round(ratio, 3),
                "ratio_per_busy_core": round(per_core / single, 3),
            }),
        });
    }

    // 3b. Kid-less ES256 user tokens beside the kid path.
    {
        let kidless = &results.jwt_es256_kidless;
        let kid = &results.jwt_es256.series;
        let ratio = kidless.rps() / kid.rps();
        rows.push(Row {
            number: "3b",
            id: "verify_jwt_cold_es256_kidless".to_owned(),
            figure: format!(
                "Cold ES256 user tokens without `kid` (SuprSend's recipe), one active key, {} connections",
                options.concurrency
            ),
            keysd: throughput(kidless, "req/s"),
            baseline: format!("the same tokens with `kid`: {}", throughput(kid, "req/s")),
            ratio: ratio_text(ratio),
            target: "≥ 0.90 of the kid path".to_owned(),
            met: Some(ratio >= 0.9),
            json: json!({
                "keysd": kidless.to_json(),
                "baseline": {"name": "ES256 with kid", "series": kid.to_json()},
                "ratio": round(ratio, 3),
            }),
        });
    }

    // 3c. The warm path beside hello, run for run.
    let hello_warm_rps: Vec<f64> = results.hello_warm.runs.iter().map(|run| run.rps).collect();
    let (es_hello, rs_hello) = hello_warm_rps.split_at(hello_warm_rps.len() / 2);
    for (name, id, series, cold, hello_rps) in [
        ("ES256 user tokens", "es256", &results.jwt_es256_warm, &results.jwt_es256.series, es_hello),
        ("RS256 organisation tokens", "rs256", &results.jwt_rs256_warm, &results.jwt_rs256.series, rs_hello),
    ] {
        let keysd_rps: Vec<f64> = series.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&keysd_rps, hello_rps);
        let ratio = median(&ratios);
        rows.push(Row {
            number: "3c",
            id: format!("verify_jwt_warm_{id}"),
            figure: format!(
                "Warm JWT verification, {name}, 64 tokens sent again and again, {} connections",
                options.concurrency
            ),
            keysd: format!(
                "{} · {:.1} µs CPU/request (cold: {} req/s, {:.1} µs)",
                throughput(series, "req/s"),
                series.cpu_us_per_request(),
                thousands(cold.rps()),
                cold.cpu_us_per_request()
            ),
            baseline: format!("hello, same requests: {} req/s", thousands(median(hello_rps))),
            ratio: ratio_text(ratio),
            target: "≥ 0.80 of hello's req/s".to_owned(),
            met: Some(ratio >= 0.8),
            json: json!({
                "keysd": series.to_json(),
                "cold": cold.to_json(),
                "baseline": {"name": "hello (minimal hyper server), the same requests", "rps_per_run": hello_rps},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
            }),
        });
    }
    {
        let warm = &results.warm_memory;
        let grown_kib = warm.after.rss_kib.saturating_sub(warm.before.rss_kib);
        let per_entry = grown_kib as f64 * 1024.0 / (warm.entries.max(1) as f64);
        rows.push(Row {
            number: "3d",
            id: "warm_path_memory".to_owned(),
            figure: format!(
                "Warm-path memory, {} distinct ES256 tokens verified once into `--verified-token-cache-entries {}`, SQLite",
                thousands(warm.entries as f64),
                warm.entries
            ),
            keysd: format!(
                "RSS {:.1} → {:.1} MiB (+{:.1} MiB, {:.0} bytes per entry; at the default 65,536 entries ≈ {:.1} MiB)",
                mib(warm.before.rss_kib),
                mib(warm.after.rss_kib),
                mib(grown_kib),
                per_entry,
                per_entry * 65_536.0 / 1_048_576.0
            ),
            baseline: format!("the same keysd after its first 1,000 tokens; verified at {} req/s", thousands(warm.verify_rps)),
            ratio: "—".to_owned(),
            target: "(reported; the default stays < 100 MB loaded)".to_owned(),
            met: None,
            json: json!({
                "entries": warm.entries,
                "rss_before_kib": warm.before.rss_kib,
                "rss_after_kib": warm.after.rss_kib,
                "bytes_per_entry": round(per_entry, 1),
                "verify_rps": round(warm.verify_rps, 1),
            }),
        });
    }
}
