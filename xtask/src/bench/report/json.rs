//! `benchmarks.json`: the run, the machine, the settings, `openssl speed`
//! and every row of the table with its measurements.

use serde_json::{json, Value};

use super::row::{Row, Stamp};
use crate::bench::figures::{backlog_events, memory_keys, round, steady_windows, Results, WRITER_RATE};
use crate::bench::Options;

pub(super) fn document(options: &Options, results: &Results, rows: &[Row], stamp: &Stamp) -> Value {
    let Stamp { date, commit, elapsed } = stamp;
    let machine = &results.machine;
    json!({
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
            "import_keys": options.import_keys,
            "import_runs": options.import_runs,
            "usage_keys": options.usage_keys,
            "usage_active_keys": options.usage_active_keys,
            "metering_memory_keys": memory_keys(options.quick),
            "metering_steady_windows": steady_windows(options.quick),
            "webhook_backlog_events": backlog_events(options.quick),
            "webhook_writer_rate_per_second": WRITER_RATE,
        },
        "openssl": {
            "version": results.openssl.version,
            "seconds": results.openssl.seconds,
            "ecdsap256_verify_per_s": round(results.openssl.ecdsap256_verify_per_s, 1),
            "rsa2048_verify_per_s": round(results.openssl.rsa2048_verify_per_s, 1),
        },
        "figures": rows.iter().map(|row| {
            let mut value = json!({
                "figure": figure_number(row.number),
                "number": row.number,
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
    })
}

/// The figure a row's number belongs to: `1` of `1f`, `8` of `8b`.
fn figure_number(number: &str) -> u32 {
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_name_their_figure() {
        assert_eq!([figure_number("1"), figure_number("1f"), figure_number("8b")], [1, 1, 8]);
        assert_eq!(figure_number(""), 0);
    }
}
