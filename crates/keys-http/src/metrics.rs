//! Prometheus metrics, written by hand in the text exposition format.
//!
//! Four families: request counts by route pattern, method and status; a
//! latency histogram by route pattern; verification outcomes by kind and
//! reason; connections refused because `--max-connections` was reached, and
//! connections closed early (evicted from a full table, or stalled). Labels only ever hold route templates, methods, status codes and
//! the fixed reason strings, so their number is bounded and nothing
//! client-controlled (or secret) reaches them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use keys_core::verify::Denial;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The verification kinds, as labelled.
pub const VERIFICATION_KINDS: [&str; 3] = ["api_key", "public_key", "jwt"];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct Families {
    requests: BTreeMap<(&'static str, &'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    verifications: BTreeMap<(&'static str, &'static str), u64>,
}

/// The process's metrics.
#[derive(Debug)]
pub struct Metrics {
    families: Mutex<Families>,
    /// Counted on the accept path, which takes no lock.
    refused_connections: AtomicU64,
    /// Connections closed early, by [`ConnectionClosed`].
    evicted_connections: AtomicU64,
    stalled_connections: AtomicU64,
}

/// Why keysd closed a connection early (see `crate::connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionClosed {
    /// A new connection took its place in a full table.
    Evicted,
    /// It held response bytes its peer did not take: over a budget, or past
    /// the stall timeout.
    Stalled,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics with every verification outcome pre-registered at zero, so
    /// dashboards see the series before the first denial.
    pub fn new() -> Self {
        let mut families = Families::default();
        for kind in VERIFICATION_KINDS {
            families.verifications.insert((kind, "valid"), 0);
            for denial in Denial::ALL {
                families.verifications.insert((kind, denial.reason()), 0);
            }
        }
        Self {
            families: Mutex::new(families),
            refused_connections: AtomicU64::new(0),
            evicted_connections: AtomicU64::new(0),
            stalled_connections: AtomicU64::new(0),
        }
    }

    fn with<R>(&self, action: impl FnOnce(&mut Families) -> R) -> R {
        // A panic while holding the lock cannot leave the maps inconsistent
        // (every update is a single insert or add), so a poisoned lock is
        // still safe to use.
        let mut guard = self.families.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        action(&mut guard)
    }

    /// Records one finished request.
    pub fn observe_request(&self, route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.with(|families| {
            *families.requests.entry((route, method, status)).or_default() += 1;
            let histogram = families.latency.entry(route).or_default();
            histogram.count += 1;
            histogram.sum += seconds;
            for (index, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    histogram.counts[index] += 1;
                }
            }
        });
    }

    /// Records one verification outcome (`valid` or a denial reason).
    pub fn observe_verification(&self, kind: &'static str, outcome: &'static str) {
        self.with(|families| *families.verifications.entry((kind, outcome)).or_default() += 1);
    }

    /// Records one connection closed at accept because the server was full.
    pub fn observe_refused_connection(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one connection closed early.
    pub fn observe_connection_closed(&self, reason: ConnectionClosed) {
        let counter = match reason {
            ConnectionClosed::Evicted => &self.evicted_connections,
            ConnectionClosed::Stalled => &self.stalled_connections,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.with(|families| {
            let mut out = String::new();
            out.push_str("# HELP keysd_http_requests_total HTTP requests by route pattern, method and status.\n");
            out.push_str("# TYPE keysd_http_requests_total counter\n");
            for ((route, method, status), count) in &families.requests {
                let _ = writeln!(
                    out,
                    "keysd_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {count}"
                );
            }
            out.push_str("# HELP keysd_http_request_duration_seconds HTTP request latency by route pattern.\n");
            out.push_str("# TYPE keysd_http_request_duration_seconds histogram\n");
            for (route, histogram) in &families.latency {
                for (index, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "keysd_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                        histogram.counts[index]
                    );
                }
                let _ = writeln!(
                    out,
                    "keysd_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    histogram.count
                );
                let _ = writeln!(out, "keysd_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", histogram.sum);
                let _ =
                    writeln!(out, "keysd_http_request_duration_seconds_count{{route=\"{route}\"}} {}", histogram.count);
            }
            out.push_str("# HELP keysd_verifications_total Verification outcomes by kind and reason.\n");
            out.push_str("# TYPE keysd_verifications_total counter\n");
            for ((kind, outcome), count) in &families.verifications {
                let _ = writeln!(out, "keysd_verifications_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {count}");
            }
            out.push_str(
                "# HELP keysd_connections_refused_total Connections closed at accept: --max-connections reached.\n",
            );
            out.push_str("# TYPE keysd_connections_refused_total counter\n");
            let _ =
                writeln!(out, "keysd_connections_refused_total {}", self.refused_connections.load(Ordering::Relaxed));
            out.push_str(
                "# HELP keysd_connections_closed_total Connections keysd closed early: evicted (a new connection took \
                 the place of one that served nobody) or stalled (response bytes its peer did not take).\n",
            );
            out.push_str("# TYPE keysd_connections_closed_total counter\n");
            for (reason, counter) in [("evicted", &self.evicted_connections), ("stalled", &self.stalled_connections)] {
                let _ = writeln!(
                    out,
                    "keysd_connections_closed_total{{reason=\"{reason}\"}} {}",
                    counter.load(Ordering::Relaxed)
                );
            }
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics.observe_request("/health", "GET", 200, Duration::from_millis(3));
        metrics.observe_request("/health", "GET", 200, Duration::from_millis(30));
        metrics.observe_verification("api_key", "key_deleted");
        let text = metrics.render();
        assert!(text.contains("keysd_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"} 2"));
        assert!(text.contains("keysd_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.005\"} 1"));
        assert!(text.contains("keysd_http_request_duration_seconds_bucket{route=\"/health\",le=\"+Inf\"} 2"));
        assert!(text.contains("keysd_verifications_total{kind=\"api_key\",outcome=\"key_deleted\"} 1"));
        assert!(text.contains("keysd_verifications_total{kind=\"jwt\",outcome=\"valid\"} 0"));
    }
}
