//! The rows of figure 6: keysd's resident memory idle and after the
//! heaviest load, beside hello.

use serde_json::{json, Value};

use super::row::{mib, Row};
use crate::bench::figures::{round, MemorySample, Results};

pub(super) fn rows(rows: &mut Vec<Row>, results: &Results) {
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
}
