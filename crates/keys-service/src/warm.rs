//! The warm path: a bounded memory of JWTs whose signature verified, so
//! that a token sent again (a browser's user token on every page, a
//! backend's service JWT on every call) is not parsed and checked again.
//!
//! An entry is keyed by the SHA-256 of the whole token, so only the exact
//! bytes that verified can hit it, and holds what the signature check
//! established: which key signed it and the claims the rules read. It
//! holds no decision. **Invariant:** on every hit the use case fetches the
//! key's current record from the store (the same cached lookup the cold
//! path makes, kept current by the store's change announcements) and runs
//! every keys-core `decide_*` function the cold path runs, at the clock's
//! `now`: a deleted, disabled, expired or rolled-out key, a token past its
//! `exp`, another tenant or another caller's organisation is refused on
//! the first request after the change, exactly as without the cache. Only
//! tokens that verified are remembered; a refusal is never cached.
//!
//! Bounded by entries, not time: the map is split into shards, each with
//! two generations. A shard whose current generation is full drops its
//! previous one and starts a new one, and a hit in the previous generation
//! moves the entry forward, so what is used stays and what is not ages out
//! without a clock or a background task. At most `capacity` entries are
//! held (`--verified-token-cache-entries`; 0 turns the warm path off).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, PoisonError};

use keys_core::SecretDigest;

/// Independently locked parts of the map (a power of two).
const SHARDS: usize = 16;

/// The default of `--verified-token-cache-entries`.
pub const DEFAULT_VERIFIED_TOKEN_CACHE_ENTRIES: usize = 65_536;

/// Verified tokens by the digest of the token.
pub struct VerifiedTokens<V> {
    shards: Box<[Mutex<Generations<V>>]>,
    /// Entries of one generation of one shard; 0: the cache is off.
    per_generation: usize,
}

struct Generations<V> {
    current: DigestMap<V>,
    previous: DigestMap<V>,
}

type DigestMap<V> = HashMap<[u8; 32], V, BuildHasherDefault<DigestHasher>>;

impl<V> std::fmt::Debug for VerifiedTokens<V> {
    // Entries are never printed: only how many there may be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokens").field("capacity", &(self.per_generation * 2 * SHARDS)).finish_non_exhaustive()
    }
}

impl<V: Clone> VerifiedTokens<V> {
    /// A cache of at most `capacity` tokens (0: remembers nothing).
    pub fn new(capacity: usize) -> Self {
        let per_generation = capacity / (2 * SHARDS);
        // Below 32 entries there is nothing to shard: one entry per
        // generation of each shard is the least that still works.
        let per_generation = if capacity > 0 { per_generation.max(1) } else { 0 };
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Generations { current: DigestMap::default(), previous: DigestMap::default() }))
            .collect();
        Self { shards, per_generation }
    }

    pub fn enabled(&self) -> bool {
        self.per_generation > 0
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.per_generation * 2 * SHARDS
    }

    /// What verified for the token with this digest, if it is remembered.
    pub fn get(&self, digest: &SecretDigest) -> Option<V> {
        if !self.enabled() {
            return None;
        }
        let key = digest.as_bytes();
        let mut shard = self.shard(key);
        if let Some(found) = shard.current.get(key) {
            return Some(found.clone());
        }
        // Used again: keep it through the next generation change.
        let found = shard.previous.remove(key)?;
        self.insert_into(&mut shard, *key, found.clone());
        Some(found)
    }

    /// Remembers what the token with this digest verified as.
    pub fn insert(&self, digest: &SecretDigest, value: V) {
        if !self.enabled() {
            return;
        }
        let key = digest.as_bytes();
        let mut shard = self.shard(key);
        self.insert_into(&mut shard, *key, value);
    }

    /// Forgets a token (one that will not verify again: past its `exp`).
    pub fn remove(&self, digest: &SecretDigest) {
        if !self.enabled() {
            return;
        }
        let key = digest.as_bytes();
        let mut shard = self.shard(key);
        shard.current.remove(key);
        shard.previous.remove(key);
    }

    /// How many entries it holds now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
                shard.current.len() + shard.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_into(&self, shard: &mut Generations<V>, key: [u8; 32], value: V) {
        if shard.current.len() >= self.per_generation && !shard.current.contains_key(&key) {
            shard.previous = std::mem::take(&mut shard.current);
            shard.current.reserve(self.per_generation.min(1024));
        }
        shard.current.insert(key, value);
    }

    fn shard(&self, key: &[u8; 32]) -> std::sync::MutexGuard<'_, Generations<V>> {
        // A panic while holding the lock cannot leave a shard half updated
        // (each change is one insert, remove or swap), so a poisoned lock
        // still guards a consistent map.
        self.shards[usize::from(key[31]) % SHARDS].lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hashes a SHA-256 digest by taking eight of its bytes: they are already
/// uniform, and only a token that verified can become a key, so there is
/// no flood of chosen keys to defend against with a keyed hash.
#[derive(Debug, Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its length, then its bytes.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, _length: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(index: u32) -> SecretDigest {
        keys_crypto::secret::sha256_digest(&index.to_le_bytes())
    }

    #[test]
    fn remembers_what_was_inserted_and_forgets_what_was_removed() {
        let cache = VerifiedTokens::new(1024);
        assert_eq!(cache.get(&digest(1)), None);
        cache.insert(&digest(1), "one");
        cache.insert(&digest(2), "two");
        assert_eq!(cache.get(&digest(1)), Some("one"));
        assert_eq!(cache.get(&digest(2)), Some("two"));
        cache.remove(&digest(1));
        assert_eq!(cache.get(&digest(1)), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        let cache = VerifiedTokens::new(1000);
        for index in 0..100_000 {
            cache.insert(&digest(index), index);
        }
        assert!(cache.len() <= cache.capacity(), "{} > {}", cache.len(), cache.capacity());
        assert!(cache.capacity() <= 1000);
        // The newest entries are there.
        assert_eq!(cache.get(&digest(99_999)), Some(99_999));
        assert_eq!(cache.get(&digest(0)), None);
    }

    #[test]
    fn what_is_used_survives_while_the_rest_ages_out() {
        let cache = VerifiedTokens::new(64);
        cache.insert(&digest(0), 0);
        for index in 1..10_000 {
            cache.insert(&digest(index), index);
            // A token sent between every other token stays warm.
            assert_eq!(cache.get(&digest(0)), Some(0), "lost after {index} inserts");
        }
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let cache = VerifiedTokens::new(0);
        cache.insert(&digest(1), 1);
        assert!(!cache.enabled());
        assert_eq!(cache.get(&digest(1)), None);
        assert!(cache.is_empty());
    }
}
