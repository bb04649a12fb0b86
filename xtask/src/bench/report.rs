//! Writes `BENCHMARKS.md` (the table) and `benchmarks.json` (everything).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::figures::{paired_ratios, round, MemorySample, Results, Series, RSA_POOL_SIZE};
use super::{display, median, Options};

/// One row of the table and its JSON twin.
struct Row {
    number: &'static str,
    id: String,
    figure: String,
    keysd: String,
    baseline: String,
    ratio: String,
    target: String,
    met: Option<bool>,
    json: Value,
}

fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (index, character) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 && character != '-' {
            out.push(',');
        }
        out.push(character);
    }
    out
}

fn ms(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value >= 100.0 {
        format!("{value:.0} ms")
    } else if value >= 10.0 {
        format!("{value:.1} ms")
    } else {
        format!("{value:.2} ms")
    }
}

fn ratio_text(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.2}")
    } else {
        "n/a".to_owned()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn errors_note(series: &Series) -> String {
    match series.errors() {
        0 => String::new(),
        errors => format!(" · **{errors} errors** ({})", series.first_error().unwrap_or("?").replace('|', "/")),
    }
}

fn throughput(series: &Series, unit: &str) -> String {
    format!(
        "{} {unit} · p50 {} · p99 {}{}",
        thousands(series.rps()),
        ms(series.p50()),
        ms(series.p99()),
        errors_note(series)
    )
}

fn latency(series: &Series) -> String {
    format!("p50 {} · p99 {}{}", ms(series.p50()), ms(series.p99()), errors_note(series))
}

fn yes_no(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

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

fn rows(options: &Options, results: &Results) -> Vec<Row> {
    let mut rows = Vec::new();
    let hello_rps: Vec<f64> = results.hello.runs.iter().map(|run| run.rps).collect();

    // 1. API-key verification beside hello.
    for (store, series) in [("SQLite", &results.verify_sqlite), ("PostgreSQL", &results.verify_postgres)] {
        let keysd_rps: Vec<f64> = series.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&keysd_rps, &hello_rps);
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
    {
        let on = &results.verify_postgres;
        let off = &results.verify_postgres_unrecorded;
        let on_rps: Vec<f64> = on.runs.iter().map(|run| run.rps).collect();
        let off_rps: Vec<f64> = off.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&on_rps, &off_rps);
        let ratio = median(&ratios);
        rows.push(Row {
            number: "1c",
            id: "verify_api_key_postgres_last_used_recording".to_owned(),
            figure: format!(
                "API-key verification, PostgreSQL, `last_used_at` recorded (default), {} connections",
                options.concurrency
            ),
            keysd: throughput(on, "req/s"),
            baseline: format!("the same with `--last-used-interval-seconds 0`: {}", throughput(off, "req/s")),
            ratio: ratio_text(ratio),
            target: "≥ 0.95 of recording off".to_owned(),
            met: Some(ratio >= 0.95),
            json: json!({
                "keysd": on.to_json(),
                "baseline": {"name": "keysd with --last-used-interval-seconds 0", "series": off.to_json()},
                "ratio": round(ratio, 3),
                "ratio_per_run": ratios.iter().map(|ratio| round(*ratio, 3)).collect::<Vec<_>>(),
            }),
        });
    }

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

    // 2. Key-count scaling.
    let connections =
        format!("{} connection{}", options.scale_concurrency, if options.scale_concurrency == 1 { "" } else { "s" });
    let levels: Vec<Level<'_>> =
        results.scaling.iter().map(|scale| (scale.keys, scale.insert_seconds, &scale.series)).collect();
    scaling_rows(&mut rows, ("2", "keys"), &levels, |keys| {
        (
            format!("verify_api_key_postgres_{keys}_keys"),
            format!("API-key verification latency, {} keys in PostgreSQL, {connections}", thousands(keys as f64)),
        )
    });

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

    // 1b. API-key forward authentication beside hello.
    {
        let forward = &results.forward_postgres;
        let forward_rps: Vec<f64> = forward.runs.iter().map(|run| run.rps).collect();
        let ratios = paired_ratios(&forward_rps, &hello_rps);
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

    // 4. Key creation beside in-process key generation.
    for (name, id, steady, burst, keygen) in [
        (
            "a workspace signing key (P-256)",
            "create_workspace_signing_key",
            &results.create_workspace_steady,
            &results.create_workspace_burst,
            &results.keygen_p256_ms,
        ),
        (
            "an organisation key (RSA-2048)",
            "create_organisation_key",
            &results.create_organisation_steady,
            &results.create_organisation_burst,
            &results.keygen_rsa_ms,
        ),
    ] {
        let keygen_p50 = median(keygen);
        let keygen_p99 = percentile(keygen, 99.0);
        let baseline = format!(
            "key generation + PEM alone, in-process, 1 thread ({} samples): p50 {} · p99 {}",
            keygen.len(),
            ms(keygen_p50),
            ms(keygen_p99)
        );
        let keygen_json = json!({
            "name": "keys-crypto generate + PEM encode, in the bench process, one at a time",
            "samples": keygen.len(),
            "p50_ms": round(keygen_p50, 3),
            "p99_ms": round(keygen_p99, 3),
        });
        let organisation = id == "create_organisation_key";
        if organisation {
            let slow = &results.create_organisation_steady_slow;
            rows.push(Row {
                number: "4",
                id: format!("{id}_steady_1"),
                figure: format!("Create {name}, steady 1 req/s, PostgreSQL"),
                keysd: latency(slow),
                baseline: baseline.clone(),
                ratio: format!("{} (p99)", ratio_text(slow.p99() / keygen_p99)),
                target: "p99 < 20 ms".to_owned(),
                met: Some(slow.p99() < 20.0),
                json: json!({"keysd": slow.to_json(), "rate_per_s": 1, "baseline": keygen_json}),
            });
        }
        rows.push(Row {
            number: "4",
            id: format!("{id}_steady"),
            figure: format!("Create {name}, steady {} req/s, PostgreSQL", options.rate),
            keysd: latency(steady),
            baseline: baseline.clone(),
            ratio: format!("{} (p99)", ratio_text(steady.p99() / keygen_p99)),
            target: if organisation { "(reported)".to_owned() } else { "p99 < 20 ms".to_owned() },
            met: if organisation { None } else { Some(steady.p99() < 20.0) },
            json: json!({
                "keysd": steady.to_json(),
                "rate_per_s": options.rate,
                "seconds_per_run": options.steady_duration.as_secs(),
                "baseline": keygen_json,
            }),
        });
        rows.push(Row {
            number: "4",
            id: format!("{id}_burst"),
            figure: if organisation {
                format!(
                    "Create {name}, burst of {RSA_POOL_SIZE} at once (the pool's size, after it refilled), PostgreSQL"
                )
            } else {
                format!("Create {name}, burst of {} at once, PostgreSQL", options.burst)
            },
            keysd: latency(burst),
            baseline,
            ratio: format!("{} (p99)", ratio_text(burst.p99() / keygen_p99)),
            target: if organisation { "p99 < 20 ms".to_owned() } else { "(reported)".to_owned() },
            met: if organisation { Some(burst.p99() < 20.0) } else { None },
            json: json!({"keysd": burst.to_json(), "burst": options.burst, "baseline": keygen_json}),
        });
    }

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

    // 6. Memory beside hello.
    let find = |list: &[MemorySample], server: &str| list.iter().find(|sample| sample.server == server).cloned();
    let hello_idle = find(&results.idle, "hello");
    let hello_loaded = find(&results.loaded, "hello");
    let idle_keysd: Vec<&MemorySample> =
        results.idle.iter().filter(|sample| sample.server.starts_with("keysd")).collect();
    let idle_max = idle_keysd.iter().map(|sample| sample.memory.rss_kib).max().unwrap_or(0);
    let heaviest = results
        .loaded
        .iter()
        .filter(|sample| sample.server.starts_with("keysd"))
        .max_by_key(|sample| sample.memory.rss_kib);
    let peak = results
        .loaded
        .iter()
        .filter(|sample| sample.server.starts_with("keysd"))
        .map(|sample| sample.memory.peak_kib)
        .max();
    let samples_json = |list: &[MemorySample]| -> Vec<Value> {
        list.iter()
            .map(|sample| {
                json!({
                    "server": sample.server,
                    "after": sample.after,
                    "rss_mib": round(mib(sample.memory.rss_kib), 1),
                    "peak_rss_mib": round(mib(sample.memory.peak_kib), 1),
                })
            })
            .collect()
    };
    rows.push(Row {
        number: "6",
        id: "memory_idle".to_owned(),
        figure: "keysd resident memory (VmRSS), idle after start".to_owned(),
        keysd: idle_keysd
            .iter()
            .map(|sample| {
                format!("{}: {:.1} MiB", sample.server.trim_start_matches("keysd-"), mib(sample.memory.rss_kib))
            })
            .collect::<Vec<_>>()
            .join(" · "),
        baseline: hello_idle
            .as_ref()
            .map_or_else(String::new, |hello| format!("hello: {:.1} MiB", mib(hello.memory.rss_kib))),
        ratio: "—".to_owned(),
        target: "< 30 MB".to_owned(),
        met: Some(idle_max > 0 && mib(idle_max) < 30.0),
        json: json!({"keysd": samples_json(&results.idle), "target_mib": 30}),
    });
    if let Some(heaviest) = heaviest {
        rows.push(Row {
            number: "6",
            id: "memory_loaded".to_owned(),
            figure: "keysd resident memory at the end of the heaviest load".to_owned(),
            keysd: format!(
                "{:.1} MiB ({}, after {}) · peak VmHWM {:.1} MiB",
                mib(heaviest.memory.rss_kib),
                heaviest.server.trim_start_matches("keysd-"),
                heaviest.after,
                mib(peak.unwrap_or(0))
            ),
            baseline: hello_loaded.as_ref().map_or_else(String::new, |hello| {
                format!("hello after figure 1: {:.1} MiB", mib(hello.memory.rss_kib))
            }),
            ratio: "—".to_owned(),
            target: "< 100 MB".to_owned(),
            met: Some(mib(heaviest.memory.rss_kib) < 100.0),
            json: json!({"keysd": samples_json(&results.loaded), "target_mib": 100}),
        });
    }
    // 7. A page of audit events as the trail grows, and its export.
    if !results.audit_pages.is_empty() {
        let levels: Vec<Level<'_>> =
            results.audit_pages.iter().map(|pages| (pages.events, pages.insert_seconds, &pages.series)).collect();
        scaling_rows(&mut rows, ("7", "events"), &levels, |events| {
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

    rows
}

pub fn write(options: &Options, results: &Results, elapsed: Duration) -> Result<()> {
    let rows = rows(options, results);
    let now = time::OffsetDateTime::now_utc();
    let date = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let commit = git_commit();
    let mode = if options.quick { "quick (`cargo xtask bench --quick`)" } else { "full (`cargo xtask bench`)" };
    let machine = &results.machine;

    let mut md = String::new();
    let _ = writeln!(md, "# keysd benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` (xtask/src/bench/); do not edit by hand, run it again. \
         The machine-readable twin is [`benchmarks.json`](benchmarks.json).\n"
    );
    let _ = writeln!(
        md,
        "- **Run:** {date}, {mode}, commit `{commit}`, keysd binary built {}, {:.0} s in all.",
        results.keysd_built,
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "- **Machine:** {} cores ({}), {} MiB RAM, Linux {}, load average {} before the run. Servers, PostgreSQL \
         and the load generator share it (and so may anything else running there: per-run figures are in the JSON).",
        machine.cores, machine.cpu, machine.memory_mib, machine.kernel, machine.loadavg_before
    );
    let _ = writeln!(
        md,
        "- **Method:** every figure is the median of {runs} runs of {secs} s (key creation: {runs} runs of {steady} s at \
         {rate} req/s, then a burst of {burst}), after an unmeasured warm-up. Each baseline is measured in the same \
         invocation, run for run beside its figure (hello and keysd, pgbench and keysd alternate), and ratios are the \
         median of the per-run ratios. Latency is per request, from send to the last body byte, nearest-rank percentiles.",
        runs = options.runs,
        secs = options.duration.as_secs(),
        steady = options.steady_duration.as_secs(),
        rate = options.rate,
        burst = options.burst
    );
    let _ = writeln!(
        md,
        "- **Load generator:** the in-repo tokio + hyper HTTP/1.1 client (`xtask/src/bench/load.rs`), {} thread(s), \
         keep-alive connections on 127.0.0.1; closed loop for throughput, open loop (fixed schedule) for the steady \
         key creation. keysd runs its default configuration (release build, `info` logs to a file).\n",
        options.client_threads
    );
    let _ = writeln!(md, "| # | figure | keysd (median) | baseline, same run (median) | ratio | target | met |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for row in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.number,
            row.figure,
            row.keysd,
            row.baseline,
            row.ratio,
            row.target,
            yes_no(row.met)
        );
    }
    let _ = writeln!(md, "\n## Server CPU per request\n");
    let _ = writeln!(
        md,
        "keysd's CPU time over a run divided by the requests it answered (median of runs); the machine has {} cores.\n",
        machine.cores
    );
    for (label, series) in [
        ("hello (baseline of figure 1)", &results.hello),
        ("API-key verification, SQLite", &results.verify_sqlite),
        ("API-key verification, PostgreSQL (plus PostgreSQL's own CPU)", &results.verify_postgres),
        ("cold ES256 verification, PostgreSQL", &results.jwt_es256.series),
        ("cold RS256 verification, PostgreSQL", &results.jwt_rs256.series),
        ("warm ES256 verification, PostgreSQL", &results.jwt_es256_warm),
        ("warm RS256 verification, PostgreSQL", &results.jwt_rs256_warm),
        ("API-key create, PostgreSQL", &results.writes_keysd),
    ] {
        let _ = writeln!(
            md,
            "- {label}: {:.0} µs ({:.2} cores busy at {} req/s)",
            series.cpu_us_per_request(),
            series.server_cores(),
            thousands(series.rps())
        );
    }
    for (label, jwt) in [("ES256", &results.jwt_es256), ("RS256", &results.jwt_rs256)] {
        let _ = writeln!(
            md,
            "- {label} signature check alone in keys-crypto (`VerificationKey::from_pem` + `jwt::verify`): {:.0} µs",
            1e6 / jwt.library_pem_verify_per_s
        );
    }
    let _ = writeln!(md, "\n## How each figure is measured\n");
    let _ = writeln!(
        md,
        "1. `POST /v1/verify/api_key/` with one valid key (every answer checked for `\"valid\":true`), against keysd on \
         SQLite and on PostgreSQL; the baseline is `xtask bench-hello`, a minimal hyper 1 server built like keysd's \
         (hyper-util auto builder, multi-threaded tokio) that reads the body and answers a small JSON, sent the same \
         request by the same load generator.\n\
         2. A fresh PostgreSQL database and keysd; synthetic rows are bulk-inserted into `api_keys` with SQL (unique \
         SHA-256 digests, store-shaped ids), then `VACUUM ANALYZE`; one real key created through the API is verified. \
         The 1,000-key level is the baseline.\n\
         3. Every token is distinct (own `jti` and subject), signed before the run by the bench (keys-crypto): ES256 \
         user tokens (`kid` = the workspace signing key) through `/v1/verify/public_key/` with a secure-mode public key, \
         RS256 tokens (`iss = https://versori.com/sk/<key id>`) through `/v1/verify/jwt/`. A run ends after its \
         duration or when its tokens run out. The bound is `openssl speed` single-core verify/s times the machine's \
         cores; \"busy cores\" is keysd's CPU time over the run's wall time (from `/proc/PID/stat`). The in-process \
         keys-crypto rates split the crypto library's cost from the service's.\n\
         4. Only the create request is timed. A workspace holds one active signing key, so each create is followed by \
         an (untimed) delete in one of {slots} workspaces; organisation keys are deleted after each create too. The \
         baseline is the key generation alone, in the bench process.\n\
         5. `POST /v1/staging/ws_api_key/` with distinct names from {w} keep-alive connections, alternating with \
         `pgbench -n -c {w} -T {secs} -f insert.sql` (`INSERT INTO bench_scratch (v) VALUES (md5(random()::text))`, an \
         identity primary key) on the same database. On PostgreSQL a create is one autocommit statement that locks \
         its workspace's API-key count row for that statement and its commit; the diagnostic row spreads the same \
         creates over one workspace per client.\n\
         6. `VmRSS`/`VmHWM` from `/proc/PID/status`: idle is one second after start (bootstrap done, no request yet); \
         loaded is the largest `VmRSS` seen at the end of a figure's load.\n\
         7. A fresh PostgreSQL database and keysd; synthetic events of the bootstrap organisation are bulk-inserted \
         into `audit_events` with SQL (as the pipeline writes them), then `VACUUM ANALYZE`; each run asks for the \
         newest page of 50. The 1,000-event level is the baseline. 7b runs `keysd audit export` of the largest trail \
         to a line counter and reads its `VmHWM` every 20 ms until it exits.\n",
        slots = options.burst.max(8),
        w = options.write_concurrency,
        secs = options.duration.as_secs()
    );
    let _ = writeln!(
        md,
        "Added for issue 15:\n\n         - 1e. keysd's CPU per request (figures 1 and 3) against the floor of one request: hello's CPU per request          (the same load generator, the same requests) plus the crypto alone, `openssl speed`'s single-core time per          verify for JWTs and an in-process SHA-256 of the key for API keys.\n         - 3c. {warm} tokens of each kind from figure 3, cycled over {c} connections, so each is verified cold once          and then again and again from the warm path; each keysd run is beside a hello run sent the same requests.\n         - 3d. A keysd on SQLite with `--verified-token-cache-entries` as large as the figure; after 1,000 tokens          (connections and buffers warm) its `VmRSS` is read, then every other token is verified once, and `VmRSS` is          read again.\n         - 4, organisation keys: after each burst and before the next, the bench waits for keysd's pool of          {pool} to refill (one thread by default, `--rsa-pool-threads`), then creates {pool} at once; the steady 1/s          runs follow.\n",
        warm = 64,
        c = options.concurrency,
        pool = RSA_POOL_SIZE
    );
    let _ = writeln!(md, "Nothing in the test suite asserts a time; these figures are only reported.");

    let json = json!({
        "generated_at": date,
        "mode": if options.quick { "quick" } else { "full" },
        "commit": commit,
        "keysd_built": results.keysd_built,
        "elapsed_seconds": round(elapsed.as_secs_f64(), 1),
        "machine": {
            "cores": machine.cores,
            "loadavg_before": machine.loadavg_before,
            "cpu": machine.cpu,
            "memory_mib": machine.memory_mib,
            "kernel": machine.kernel,
        },
        "settings": {
            "concurrency": options.concurrency,
            "duration_seconds": options.duration.as_secs(),
            "runs": options.runs,
            "warmup_seconds": options.warmup.as_secs_f64(),
            "scale_concurrency": options.scale_concurrency,
            "key_counts": options.key_counts,
            "write_concurrency": options.write_concurrency,
            "rate_per_second": options.rate,
            "steady_duration_seconds": options.steady_duration.as_secs(),
            "burst": options.burst,
            "client_threads": options.client_threads,
        },
        "openssl": {
            "version": results.openssl.version,
            "seconds": results.openssl.seconds,
            "ecdsap256_verify_per_s": round(results.openssl.ecdsap256_verify_per_s, 1),
            "rsa2048_verify_per_s": round(results.openssl.rsa2048_verify_per_s, 1),
        },
        "figures": rows.iter().map(|row| {
            let mut value = json!({
                "figure": row.number.parse::<u32>().unwrap_or(0),
                "id": row.id,
                "title": row.figure,
                "target": row.target,
                "met": row.met,
            });
            if let (Value::Object(map), Value::Object(extra)) = (&mut value, &row.json) {
                map.extend(extra.clone());
            }
            value
        }).collect::<Vec<_>>(),
    });

    std::fs::create_dir_all(&options.out_dir).with_context(|| format!("creating {}", options.out_dir.display()))?;
    let md_path = options.out_dir.join("BENCHMARKS.md");
    std::fs::write(&md_path, md).with_context(|| format!("writing {}", display(&md_path)))?;
    let json_path = options.out_dir.join("benchmarks.json");
    let mut text = serde_json::to_string_pretty(&json)?;
    text.push('\n');
    std::fs::write(&json_path, text).with_context(|| format!("writing {}", display(&json_path)))?;
    for row in &rows {
        eprintln!(
            "bench: [{}] {}: {} | {} | ratio {} | {} {}",
            row.number,
            row.figure,
            row.keysd,
            row.baseline,
            row.ratio,
            row.target,
            yes_no(row.met)
        );
    }
    Ok(())
}

fn git_commit() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(crate::project_root())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let Some(commit) = run(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".to_owned() };
    match run(&["status", "--porcelain"]) {
        Some(status) if !status.is_empty() => format!("{commit}+dirty"),
        _ => commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(f64::NAN), "n/a");
        assert_eq!(ms(0.1234), "0.12 ms");
        assert_eq!(ms(12.34), "12.3 ms");
        assert_eq!(ms(1234.0), "1234 ms");
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 99.0), 4.0);
    }
}
