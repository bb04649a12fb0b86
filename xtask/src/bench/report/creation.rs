//! The rows of figure 4: key creation, steady and in bursts, beside key
//! generation alone in the bench process.

use serde_json::json;

use super::row::{latency, ms, percentile, ratio_text, Row};
use crate::bench::figures::{round, Results, RSA_POOL_SIZE};
use crate::bench::{median, Options};

pub(super) fn rows(rows: &mut Vec<Row>, options: &Options, results: &Results) {
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
}
