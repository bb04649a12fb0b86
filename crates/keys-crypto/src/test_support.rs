//! Shared fixtures for the unit tests: RSA generation is slow, so each test
//! binary makes its RSA keys once.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use time::OffsetDateTime;

use crate::keypair::{EcKeyPair, RsaKeyPair};

/// A deterministic RNG for a test.
pub(crate) fn seeded(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The same P-256 pair for the same seed.
pub(crate) fn ec_key(seed: u64) -> EcKeyPair {
    EcKeyPair::generate(&mut seeded(seed))
}

/// One RSA-2048 pair per test binary.
pub(crate) fn rsa_key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(&mut seeded(0x5253_4131)))
}

/// A second, different RSA-2048 pair, for wrong-key tests.
pub(crate) fn other_rsa_key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(&mut seeded(0x5253_4132)))
}

/// A fixed "now" for time-window tests: 2023-11-14T22:13:20Z.
pub(crate) const NOW: i64 = 1_700_000_000;

pub(crate) fn at(unix_seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap()
}
