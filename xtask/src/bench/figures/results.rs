//! What the figures measure, as the report reads it: one run reduced
//! ([`Run`]), a series of runs and its medians ([`Series`]), and
//! [`Results`], everything measured, with the parts of it.

use serde_json::{json, Value};

use crate::bench::load::Sample;
use crate::bench::median;
use crate::bench::procs::Memory;

/// One measured run, reduced.
#[derive(Debug, Clone)]
pub struct Run {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// CPU time of the server over the run divided by its length.
    pub server_cores: Option<f64>,
}

impl Run {
    pub(super) fn from_sample(sample: &Sample, server_cores: Option<f64>) -> Self {
        Self {
            rps: sample.rps(),
            p50_ms: sample.percentile_ms(50.0),
            p99_ms: sample.percentile_ms(99.0),
            ok: sample.ok(),
            errors: sample.errors,
            first_error: sample.first_error.clone(),
            seconds: sample.elapsed.as_secs_f64(),
            server_cores,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": round(self.seconds, 3),
            "server_cores": self.server_cores.map(|cores| round(cores, 2)),
        })
    }
}

/// A series of runs of one thing; every summary is a median over runs.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub runs: Vec<Run>,
}

impl Series {
    fn stat(&self, pick: impl Fn(&Run) -> f64) -> f64 {
        median(&self.runs.iter().map(pick).collect::<Vec<_>>())
    }
    pub fn rps(&self) -> f64 {
        self.stat(|run| run.rps)
    }
    pub fn p50(&self) -> f64 {
        self.stat(|run| run.p50_ms)
    }
    pub fn p99(&self) -> f64 {
        self.stat(|run| run.p99_ms)
    }
    pub fn server_cores(&self) -> f64 {
        self.stat(|run| run.server_cores.unwrap_or(f64::NAN))
    }
    /// Server CPU time per successful request, in microseconds.
    pub fn cpu_us_per_request(&self) -> f64 {
        self.stat(|run| run.server_cores.map_or(f64::NAN, |cores| cores * 1e6 / run.rps))
    }
    pub fn errors(&self) -> u64 {
        self.runs.iter().map(|run| run.errors).sum()
    }
    pub fn ok(&self) -> u64 {
        self.runs.iter().map(|run| run.ok).sum()
    }
    pub fn first_error(&self) -> Option<&str> {
        self.runs.iter().find_map(|run| run.first_error.as_deref())
    }
    pub fn to_json(&self) -> Value {
        json!({
            "median": {
                "rps": round(self.rps(), 1),
                "p50_ms": round(self.p50(), 3),
                "p99_ms": round(self.p99(), 3),
                "server_cores_busy": round(self.server_cores(), 2),
                "server_cpu_us_per_request": round(self.cpu_us_per_request(), 1),
            },
            "ok": self.ok(),
            "errors": self.errors(),
            "runs": self.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
        })
    }
}

pub fn round(value: f64, digits: i32) -> Value {
    if value.is_finite() {
        let scale = 10f64.powi(digits);
        json!((value * scale).round() / scale)
    } else {
        Value::Null
    }
}

/// Ratios of paired runs (`numerator[i] / denominator[i]`).
pub fn paired_ratios(numerator: &[f64], denominator: &[f64]) -> Vec<f64> {
    numerator.iter().zip(denominator).map(|(top, bottom)| if *bottom > 0.0 { top / bottom } else { f64::NAN }).collect()
}

#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory_mib: u64,
    /// `/proc/loadavg` before anything of the bench started.
    pub loadavg_before: String,
}

#[derive(Debug, Clone, Default)]
pub struct OpenSsl {
    pub version: String,
    pub seconds: u32,
    pub ecdsap256_verify_per_s: f64,
    pub rsa2048_verify_per_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Scale {
    pub keys: u64,
    pub insert_seconds: f64,
    pub series: Series,
}

#[derive(Debug, Clone, Default)]
pub struct Jwt {
    pub series: Series,
    pub tokens_per_run: usize,
    pub signing_seconds: f64,
    /// keys-crypto in this process, one thread: `jwt::verify` with a parsed
    /// key, and `VerificationKey::from_pem` + `jwt::verify` (what keysd does
    /// per request besides I/O), per second.
    pub library_verify_per_s: f64,
    pub library_pem_verify_per_s: f64,
}

#[derive(Debug, Clone, Default)]
pub struct MemorySample {
    pub server: String,
    pub after: String,
    pub memory: Memory,
}

/// Figure 1d: how the `last_used_at` writer copes with many distinct keys.
#[derive(Debug, Clone, Default)]
pub struct Flush {
    pub keys: u64,
    /// Seconds from the end of the uses until every key had its
    /// `last_used_at` (at `--last-used-interval-seconds 1`, so at most one
    /// interval of waiting is in it).
    pub written_after_seconds: f64,
    pub verify_rps: f64,
}

/// Everything measured.
#[derive(Debug, Clone, Default)]
pub struct Results {
    pub machine: Machine,
    /// When the measured `keysd` binary was built (its mtime, RFC 3339).
    pub keysd_built: String,
    pub openssl: OpenSsl,
    pub hello: Series,
    pub verify_sqlite: Series,
    pub verify_postgres: Series,
    pub scaling: Vec<Scale>,
    pub jwt_es256: Jwt,
    /// The same ES256 path with tokens that carry no `kid` (SuprSend's
    /// recipe), one active signing key.
    pub jwt_es256_kidless: Series,
    pub jwt_rs256: Jwt,
    /// API-key forward authentication (`/v1/auth/forward`) on PostgreSQL,
    /// interleaved with the hello runs of figure 1.
    pub forward_postgres: Series,
    /// Figure 1's PostgreSQL verification on a keysd that records no
    /// `last_used_at` (`--last-used-interval-seconds 0`), interleaved.
    pub verify_postgres_unrecorded: Series,
    /// Writing `last_used_at` of distinct keys used once each.
    pub flush: Flush,
    pub create_workspace_steady: Series,
    pub create_workspace_burst: Series,
    pub create_organisation_steady: Series,
    pub create_organisation_burst: Series,
    /// Organisation keys at a steady 1 create/s (the target's rate).
    pub create_organisation_steady_slow: Series,
    /// 3c. The warm path: a few tokens sent again and again, ES256 and
    /// RS256, each run beside a hello run.
    pub jwt_es256_warm: Series,
    pub jwt_rs256_warm: Series,
    pub hello_warm: Series,
    /// 3d. What the warm path's memory costs when full.
    pub warm_memory: WarmMemory,
    /// SHA-256 of one API key in this process, µs (the crypto floor of
    /// figure 1).
    pub sha256_api_key_us: f64,
    pub writes_keysd: Series,
    /// The same creates spread round-robin over one workspace per client.
    pub writes_keysd_spread: Series,
    pub writes_pgbench_tps: Vec<f64>,
    /// In-process key generation with keys-crypto (the floor of figure 4), ms.
    pub keygen_p256_ms: Vec<f64>,
    pub keygen_rsa_ms: Vec<f64>,
    pub idle: Vec<MemorySample>,
    pub loaded: Vec<MemorySample>,
    /// 7. A page of 50 audit events as the organisation's trail grows.
    pub audit_pages: Vec<AuditPages>,
    /// 7b. `keysd audit export` of the largest trail.
    pub audit_export: AuditExportRun,
    /// 1f. Figure 1's PostgreSQL verification with an imported key of a
    /// foreign format (`sk_live_…`), interleaved with the keysd-format runs.
    pub verify_postgres_foreign: Series,
    /// 8. `keysd import` beside `COPY`, its rerun, and (8b) its peak memory.
    pub import: Import,
    /// 1g. Figure 1's PostgreSQL verification on a keysd that counts no
    /// usage (`--usage-interval-seconds 0`), interleaved.
    pub verify_postgres_uncounted: Series,
    /// 9. One key's 30 days of hourly usage, read through keysd.
    pub usage_query: UsageQuery,
    /// 9b. The rows and bytes the usage writer adds for many active keys.
    pub usage_writes: UsageWrites,
    /// Figure 10, metering: a metered key beside an unmetered one, the database
    /// work per metered verification, the memory per metered key, and two
    /// replicas sharing a limit and a balance.
    pub metering: Metering,
    /// Figure 11, webhooks: the deliverer draining a backlog, one endpoint's
    /// cost to a management write, and a busy deliverer beside
    /// verification.
    pub webhooks: Webhooks,
}

/// Figure 11: what webhook delivery achieves and what it costs.
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    /// 11a. One backlog drained per bound of attempts in flight and count
    /// of replicas.
    pub drains: Vec<WebhookDrain>,
    /// 11b. Sequential API-key PATCHes without and with one endpoint, per
    /// store.
    pub patch: Vec<PatchLatency>,
    /// 11c. Verification beside the writer at `writer_rate`, with one
    /// endpoint (busy) and with none (idle), run for run in the same
    /// rounds; the writer's PATCHes of each run.
    pub busy: Series,
    pub idle: Series,
    pub busy_writes: Series,
    pub idle_writes: Series,
    /// Events the receiver had during each busy run's verifications, and
    /// the deliveries pending at its end.
    pub busy_delivered: Vec<u64>,
    pub busy_pending_after: Vec<u64>,
    /// The mean and longest `duration_ms` of the busy endpoint's attempts,
    /// per run (keysd's own timing of each POST).
    pub busy_attempt_ms: Vec<f64>,
    pub busy_attempt_max_ms: Vec<u64>,
    pub writer_rate: f64,
}

/// Figure 11a: `events` audit events inserted in one transaction while
/// `replicas` keysd with `--webhook-in-flight-per-endpoint in_flight` ran,
/// delivered to the receiver.
#[derive(Debug, Clone, Default)]
pub struct WebhookDrain {
    pub store: String,
    pub replicas: usize,
    pub in_flight: u32,
    pub events: u64,
    /// The insert (psql, one statement).
    pub insert_seconds: f64,
    /// From the insert's commit until the receiver had the last event.
    pub seconds: f64,
    /// What the receiver counted: requests, distinct `webhook-id`s, and
    /// requests without one.
    pub requests: u64,
    pub distinct: u64,
    pub without_id: u64,
    /// The backlog's deliveries as the database has them afterwards, and
    /// the attempts recorded for them.
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
    pub attempts: u64,
    /// The mean of the attempts' `duration_ms` (keysd's own timing of
    /// each POST, whole milliseconds).
    pub attempt_ms: f64,
    /// CPU time of each replica over the drain.
    pub replica_cpu_seconds: Vec<f64>,
    /// Why the drain did not finish.
    pub error: Option<String>,
}

impl WebhookDrain {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.distinct as f64 / self.seconds
        } else {
            f64::NAN
        }
    }

    /// Requests beyond the first of each id.
    pub fn duplicates(&self) -> u64 {
        self.requests.saturating_sub(self.distinct + self.without_id)
    }
}

/// Figure 11b on one store: the PATCH runs without and with one endpoint,
/// alternating, and the events the receiver had during each run with one.
#[derive(Debug, Clone, Default)]
pub struct PatchLatency {
    pub store: String,
    pub without: Series,
    pub with: Series,
    pub delivered: Vec<u64>,
    pub pending_after: Vec<u64>,
}

/// Figure 10: what metering costs and how closely two replicas hold a
/// shared limit and a shared balance.
#[derive(Debug, Clone, Default)]
pub struct Metering {
    /// Figure 10: a metered key (one auto-applied limit that never refuses, a
    /// balance that never runs out) and an unmetered key on the same
    /// keysd, run for run in the same rounds.
    pub metered: Series,
    pub unmetered: Series,
    /// 10b. The keysd database's work over the rounds of figure 10.
    pub transactions: MeterTransactions,
    /// 10c. Resident memory per metered key held by a replica.
    pub memory: MeterMemory,
    /// 10d (i). A shared limit under a steady open-loop overload.
    pub steady: SharedLimit,
    /// 10d (ii). A burst at a shared limit's full bucket.
    pub burst: SharedLimit,
    /// 10d (iii). A shared balance spent from both replicas.
    pub credits: SharedCredits,
}

/// Figure 10b: what `pg_stat_database` and `pg_stat_user_tables` count
/// for the keysd database over the life of the keysd of figure 10's runs
/// (its start, warm-ups, rounds and graceful stop).
#[derive(Debug, Clone, Default)]
pub struct MeterTransactions {
    /// Transactions committed in the keysd database (`xact_commit`), the
    /// bench's own first read taken away; every writer of keysd included.
    pub xact_commits: u64,
    /// Rows inserted or updated in `meters` and `ratelimit_counters`.
    pub row_writes: u64,
    /// Verifications of the metered key admitted meanwhile, warm-up
    /// included.
    pub verifications: u64,
    pub warmup_verifications: u64,
    /// From the keysd's start to its stop.
    pub seconds: f64,
}

/// Figure 10c: a fresh keysd holding `keys` unmetered keys, then `keys`
/// metered ones, each verified once.
#[derive(Debug, Clone, Default)]
pub struct MeterMemory {
    pub keys: u64,
    pub store: String,
    /// Before any key was verified, after the unmetered keys were, after
    /// the metered keys were.
    pub before: Memory,
    pub unmetered_after: Memory,
    pub after: Memory,
    pub unmetered_verified: u64,
    pub metered_verified: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// Figure 10d (i) and (ii): verifications of one key with a limit of
/// `limit` per `duration_seconds`, spread over two replicas.
#[derive(Debug, Clone, Default)]
pub struct SharedLimit {
    pub limit: u64,
    pub duration_seconds: u64,
    /// The lease horizon h: `duration / 20`, at most 1 s.
    pub horizon_seconds: f64,
    /// Requests per second of the open loop (0 for the burst).
    pub rate: f64,
    pub connections: usize,
    pub requests: u64,
    /// From the first request sent to the last answer read (w).
    pub seconds: f64,
    pub admitted: u64,
    /// Answered `valid:false`, `rate_limited`.
    pub refused: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl SharedLimit {
    /// One counter's bound over the run: `L · (w + D) / D`.
    pub fn bucket_bound(&self) -> f64 {
        let (limit, duration) = (self.limit as f64, self.duration_seconds as f64);
        limit * (self.seconds + duration) / duration
    }

    /// The bound across replicas: `L · (w + h + D) / D`.
    pub fn replica_bound(&self) -> f64 {
        let (limit, duration) = (self.limit as f64, self.duration_seconds as f64);
        limit * (self.seconds + self.horizon_seconds + duration) / duration
    }
}

/// Figure 10d (iii): a balance of `granted` credits spent from two
/// replicas until they refused for `quiet_seconds` straight.
#[derive(Debug, Clone, Default)]
pub struct SharedCredits {
    pub granted: u64,
    pub connections: usize,
    pub quiet_seconds: f64,
    pub admitted: u64,
    /// Answered `valid:false`, `usage_exceeded`.
    pub refused: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// When the last verification was admitted, from the start.
    pub last_admitted_seconds: f64,
}

/// Figure 9: `GET /v1/staging/usage/?granularity=hour&key_id=…` over 30
/// days, first with the key's rows alone in `usage_counts`, then among a
/// month of hourly rows of many keys.
#[derive(Debug, Clone, Default)]
pub struct UsageQuery {
    /// Keys with counts in the table, the one asked for included.
    pub keys: u64,
    /// Rows of `usage_counts`, and its `pg_total_relation_size` (indexes
    /// included).
    pub rows: u64,
    pub table_bytes: u64,
    /// The bulk insert and its `VACUUM ANALYZE`.
    pub insert_seconds: f64,
    /// Rows every answer must hold (hours × outcomes).
    pub rows_per_answer: usize,
    /// The window asked for (RFC 3339, whole hours).
    pub since: String,
    pub until: String,
    /// The same query with the key's rows alone in the table.
    pub alone: Series,
    pub series: Series,
}

/// Figure 9b: each of `keys` API keys verified once through a keysd that
/// writes usage every second; what that added to `usage_counts`.
#[derive(Debug, Clone, Default)]
pub struct UsageWrites {
    pub keys: u64,
    /// Verifications answered `"valid":true` (each a distinct key).
    pub verified: u64,
    pub errors: u64,
    pub verify_rps: f64,
    /// From the last verification until the minute rows held every one.
    pub written_after_seconds: f64,
    /// Rows of `usage_counts` added, and the growth of its
    /// `pg_total_relation_size`.
    pub rows_added: u64,
    pub bytes_added: u64,
    /// Write batches recorded in `usage_batches` meanwhile.
    pub batches: u64,
}

/// Figure 3d: a keysd whose warm path was filled with distinct tokens.
#[derive(Debug, Clone, Default)]
pub struct WarmMemory {
    pub entries: u64,
    pub before: Memory,
    pub after: Memory,
    pub verify_rps: f64,
}

/// Figure 7 at one size of the trail.
#[derive(Debug, Clone, Default)]
pub struct AuditPages {
    pub events: u64,
    pub insert_seconds: f64,
    pub series: Series,
}

/// Figure 7b: one `keysd audit export`, its lines counted.
#[derive(Debug, Clone, Default)]
pub struct AuditExportRun {
    pub events: u64,
    pub seconds: f64,
    /// `VmHWM` of the export process, last read before it exited.
    pub peak_rss_kib: u64,
}

/// Figure 8: runs of `keysd import` of the same generated file, each on a
/// fresh database beside a `COPY` of the same rows.
#[derive(Debug, Clone, Default)]
pub struct Import {
    pub keys: u64,
    /// How the peak resident set was read.
    pub peak_method: String,
    pub runs: Vec<ImportRun>,
}

/// One run of figure 8: the `COPY` (`psql \copy`, the baseline), the
/// import, the rerun of the same file.
#[derive(Debug, Clone, Default)]
pub struct ImportRun {
    pub copy_seconds: f64,
    pub copy_peak_rss_kib: u64,
    pub import: CliRun,
    pub rerun: CliRun,
}

/// One `keysd import`, timed from spawn to exit.
#[derive(Debug, Clone, Default)]
pub struct CliRun {
    pub seconds: f64,
    pub peak_rss_kib: u64,
    /// What it printed (`imported N, skipped M`); `None` when it printed
    /// no such line (it failed).
    pub imported: Option<u64>,
    pub skipped: Option<u64>,
    /// Keys the workspace held after it.
    pub stored: u64,
    /// Why the run does not count: the command failed (its last line of
    /// stderr) or printed other counts than the file's.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_rounds() {
        assert_eq!(paired_ratios(&[1.0, 3.0], &[2.0, 0.0])[0], 0.5);
        assert!(paired_ratios(&[1.0], &[0.0])[0].is_nan());
        assert_eq!(round(1.23456, 2), json!(1.23));
        assert_eq!(round(f64::NAN, 2), Value::Null);
    }
}
