//! The injected sources of a `keys_service::Service` under test: a clock
//! the test moves and deterministic entropy.

use std::sync::Mutex;

use keys_service::{Clock, Entropy};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRngCore, RngCore, SeedableRng};
use time::{Duration, OffsetDateTime};

/// A clock that moves only when the test says so.
#[derive(Debug)]
pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    /// A clock standing at `unix_seconds`.
    pub fn at(unix_seconds: i64) -> Self {
        Self(Mutex::new(OffsetDateTime::from_unix_timestamp(unix_seconds).expect("valid")))
    }

    pub fn advance(&self, seconds: i64) {
        let mut now = self.0.lock().expect("clock");
        *now += Duration::seconds(seconds);
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().expect("clock")
    }
}

/// Deterministic randomness: each use case gets a generator seeded from
/// one seeded stream.
#[derive(Debug)]
pub struct SeededEntropy(Mutex<ChaCha20Rng>);

impl SeededEntropy {
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(ChaCha20Rng::seed_from_u64(seed)))
    }
}

impl Entropy for SeededEntropy {
    fn generator(&self) -> Box<dyn CryptoRngCore + Send> {
        let seed = self.0.lock().expect("entropy").next_u64();
        Box::new(ChaCha20Rng::seed_from_u64(seed))
    }
}
