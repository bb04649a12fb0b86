//! Micro-benchmarks of keys-crypto, on one thread, without criterion (too
//! heavy to build on a two-core machine): a small `Instant` harness.
//!
//! `cargo bench -p keys-crypto` (cargo passes `--bench`) measures each
//! operation over several batches after a warm-up and prints, per operation,
//! the median and p99 of the single-operation times (nearest rank, all
//! batches together) and the operations per second of each batch by the
//! wall clock (median, lowest and highest). On Linux it also prints the
//! rate per second of this thread's CPU time over all batches (from
//! `/proc/thread-self/schedstat`, which advances in scheduler ticks of a few
//! milliseconds, hence over all batches rather than per batch): that is what
//! `openssl speed` reports, and other work on a busy machine disturbs it much
//! less than the wall clock. Extra arguments
//! that do not start with `-` keep only the operations whose name contains
//! one of them.
//!
//! Without `--bench`, as `cargo test --all-targets` runs it, every operation
//! runs once as a smoke test and RSA key generation is skipped (one RSA key
//! is still made, to sign and verify RS256), so the run stays short.
//!
//! Verification uses distinct tokens (each its own `jti` and subject), signed
//! before the clock starts, and a `VerificationKey` parsed once; the
//! `+ from_pem` rows parse the public PEM for every token too, as keysd does
//! per request.

use std::hint::black_box;
use std::time::{Duration, Instant};

use keys_crypto::jwt::{verify, Algorithm, VerificationKey};
use keys_crypto::mint::sign;
use keys_crypto::{ApiKeySecret, EcKeyPair, RsaKeyPair};
use rand_core::OsRng;
use serde_json::json;
use time::OffsetDateTime;

/// 2023-11-14T22:13:20Z; tokens expire an hour later.
const NOW: i64 = 1_700_000_000;

/// How much of an operation to run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Unmeasured runs first (caches, branch predictors, lazy statics).
    warm_up: usize,
    /// Measured batches; each gives one operations-per-second figure.
    batches: usize,
    /// Operations per batch, each also timed on its own.
    batch_size: usize,
}

impl Plan {
    /// A single run, for the smoke test.
    const ONCE: Self = Self { warm_up: 0, batches: 1, batch_size: 1 };

    /// How many distinct inputs (tokens) the plan consumes.
    fn operations(self) -> usize {
        self.warm_up + self.batches * self.batch_size
    }
}

/// What was measured for one operation.
#[derive(Debug)]
struct Measurement {
    /// Every single-operation time, sorted.
    samples: Vec<Duration>,
    /// Operations per second of each batch, sorted.
    batch_rates: Vec<f64>,
    /// Operations per second of this thread's CPU time, over all batches;
    /// `None` where the CPU time cannot be read.
    cpu_rate: Option<f64>,
}

impl Measurement {
    /// Nearest-rank percentile of the single-operation times.
    fn percentile(&self, percent: usize) -> Duration {
        let rank = (self.samples.len() * percent).div_ceil(100).max(1);
        self.samples[rank - 1]
    }

    fn median_rate(&self) -> f64 {
        self.batch_rates[self.batch_rates.len() / 2]
    }
}

/// Shortest CPU time from which a rate is reported (several scheduler
/// ticks).
const MIN_CPU_NANOS: u64 = 20_000_000;

/// CPU time this thread has run, in nanoseconds (Linux; `None` elsewhere).
fn thread_cpu_nanos() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Operations per second of `elapsed`, kept finite if it rounds to zero.
fn rate(operations: usize, elapsed: Duration) -> f64 {
    operations as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Runs `operation(i)` for `i` in `0..plan.operations()`, the first
/// `plan.warm_up` unmeasured, the rest timed one by one and per batch.
fn measure(plan: Plan, mut operation: impl FnMut(usize)) -> Measurement {
    for index in 0..plan.warm_up {
        operation(index);
    }
    let mut samples = Vec::with_capacity(plan.batches * plan.batch_size);
    let mut batch_rates = Vec::with_capacity(plan.batches);
    let mut index = plan.warm_up;
    let cpu_started = thread_cpu_nanos();
    for _ in 0..plan.batches {
        let batch_started = Instant::now();
        for _ in 0..plan.batch_size {
            let started = Instant::now();
            operation(index);
            samples.push(started.elapsed());
            index += 1;
        }
        batch_rates.push(rate(plan.batch_size, batch_started.elapsed()));
    }
    let cpu_rate = match (cpu_started, thread_cpu_nanos()) {
        // The counter advances in ticks of a few milliseconds: shorter runs
        // (the smoke test) cannot be read with it.
        (Some(started), Some(ended)) if ended.saturating_sub(started) >= MIN_CPU_NANOS => {
            Some(rate(samples.len(), Duration::from_nanos(ended - started)))
        }
        _ => None,
    };
    samples.sort_unstable();
    batch_rates.sort_unstable_by(f64::total_cmp);
    Measurement { samples, batch_rates, cpu_rate }
}

/// Formats a duration with a unit that keeps three significant digits.
fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_secs_f64() * 1e9;
    if nanos < 1e3 {
        format!("{nanos:.0} ns")
    } else if nanos < 1e6 {
        format!("{:.1} µs", nanos / 1e3)
    } else if nanos < 1e9 {
        format!("{:.2} ms", nanos / 1e6)
    } else {
        format!("{:.2} s", nanos / 1e9)
    }
}

/// The command line: benchmark mode and name filters.
#[derive(Debug)]
struct Options {
    bench: bool,
    filters: Vec<String>,
}

impl Options {
    fn from_args() -> Self {
        let mut options = Self { bench: false, filters: Vec::new() };
        for argument in std::env::args().skip(1) {
            if argument == "--bench" {
                options.bench = true;
            } else if !argument.starts_with('-') {
                options.filters.push(argument);
            }
        }
        options
    }

    fn wants(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|filter| name.contains(filter.as_str()))
    }

    /// The plan in benchmark mode, or a single run otherwise.
    fn plan(&self, bench: Plan) -> Plan {
        if self.bench {
            bench
        } else {
            Plan::ONCE
        }
    }
}

/// Runs and prints the operations the options select.
#[derive(Debug)]
struct Runner {
    options: Options,
}

impl Runner {
    fn run(&self, name: &str, plan: Plan, operation: impl FnMut(usize)) {
        if !self.options.wants(name) {
            return;
        }
        let plan = self.options.plan(plan);
        let measurement = measure(plan, operation);
        let lowest = measurement.batch_rates[0];
        let highest = measurement.batch_rates[measurement.batch_rates.len() - 1];
        let cpu_rate = measurement.cpu_rate.map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}"));
        println!(
            "{name:<44} {:>6} {:>10} {:>10} {:>10.0} {cpu_rate:>10}  ({lowest:.0}–{highest:.0} over {} batch{})",
            measurement.samples.len(),
            format_duration(measurement.percentile(50)),
            format_duration(measurement.percentile(99)),
            measurement.median_rate(),
            plan.batches,
            if plan.batches == 1 { "" } else { "es" },
        );
    }
}

/// `count` distinct tokens signed with `private_key_pem`, on every core
/// (RSA signing with the pure-Rust `sign` takes milliseconds a token).
fn tokens(algorithm: Algorithm, private_key_pem: &str, count: usize) -> Vec<String> {
    let sign_one = |n: usize| {
        let claims = json!({
            "iss": "https://versori.com/sk/01HZYBENCH",
            "sub": format!("bench-user-{n}"),
            "exp": NOW + 3600,
            "jti": n,
        });
        sign(&claims, Some("signing_key_bench"), private_key_pem, algorithm).expect("signing a bench token")
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|first| scope.spawn(move || (first..count.min(first + chunk)).map(sign_one).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a signing thread panicked")).collect()
    })
}

fn main() {
    let options = Options::from_args();
    let now = OffsetDateTime::from_unix_timestamp(NOW).expect("a fixed, valid timestamp");
    let policy = keys_core::verify::TimePolicy::default();
    println!(
        "keys-crypto, one thread, {}",
        if options.bench { "benchmark mode" } else { "smoke test (one run of each; `cargo bench` measures)" }
    );
    println!(
        "{:<44} {:>6} {:>10} {:>10} {:>10} {:>10}  (wall ops/s: lowest–highest batch)",
        "operation", "n", "median", "p99", "ops/s", "ops/cpu-s"
    );
    let runner = Runner { options };

    runner.run("P-256 key generation + PKCS#8 PEM", Plan { warm_up: 50, batches: 10, batch_size: 100 }, |_| {
        let pair = EcKeyPair::generate(&mut OsRng);
        black_box((pair.private_key_pem(), pair.public_key_pem()));
    });

    // RSA-2048 generation takes hundreds of milliseconds, and far longer
    // unoptimised: a few samples when benchmarking, none in the smoke test.
    if runner.options.bench {
        runner.run("RSA-2048 key generation + PKCS#8 PEM", Plan { warm_up: 0, batches: 8, batch_size: 1 }, |_| {
            let pair = RsaKeyPair::generate(&mut OsRng);
            black_box((pair.private_key_pem(), pair.public_key_pem()));
        });
    }

    let verify_plan = Plan { warm_up: 100, batches: 10, batch_size: 400 };
    let cases = [
        ("ES256", Algorithm::Es256, EcKeyPair::generate(&mut OsRng).private_key_pem()),
        ("RS256", Algorithm::Rs256, RsaKeyPair::generate(&mut OsRng).private_key_pem()),
    ];
    for (label, algorithm, private_key_pem) in &cases {
        let verify_name = format!("{label} verify (parsed key)");
        let parse_name = format!("{label} verify + VerificationKey::from_pem");
        if !runner.options.wants(&verify_name) && !runner.options.wants(&parse_name) {
            continue;
        }
        let signed = tokens(*algorithm, private_key_pem, runner.options.plan(verify_plan).operations());
        let public_key_pem = match algorithm {
            Algorithm::Es256 => EcKeyPair::from_pkcs8_pem(private_key_pem).expect("own key").public_key_pem(),
            Algorithm::Rs256 => RsaKeyPair::from_pkcs8_pem(private_key_pem).expect("own key").public_key_pem(),
        };
        let key = VerificationKey::from_pem(*algorithm, &public_key_pem).expect("own public key");
        runner.run(&verify_name, verify_plan, |index| {
            let claims = verify(&signed[index], &key).expect("a bench token verifies");
            // As keysd does: keys-core's time policy after the signature.
            black_box(policy.check(&claims.times(), now)).expect("a bench token is in its window");
            black_box(claims);
        });
        runner.run(&parse_name, verify_plan, |index| {
            let key = VerificationKey::from_pem(*algorithm, &public_key_pem).expect("own public key");
            let claims = verify(&signed[index], &key).expect("a bench token verifies");
            black_box(policy.check(&claims.times(), now)).expect("a bench token is in its window");
            black_box(claims);
        });
    }

    let secrets: Vec<String> = (0..1_000).map(|_| ApiKeySecret::generate(&mut OsRng).expose().to_owned()).collect();
    runner.run("ApiKeySecret::parse + digest", Plan { warm_up: 1_000, batches: 10, batch_size: 10_000 }, |index| {
        let secret = ApiKeySecret::parse(&secrets[index % secrets.len()]).expect("a generated key parses");
        black_box(secret.digest());
    });
}
