//! The sections of [`super::CachedStore`]: one map per kind of lookup
//! (found and not-found entries, a time to live, a bounded size, and a
//! generation that drops a fill racing an invalidation), and [`Cache`],
//! which holds them all and forgets what a [`Change`] made stale.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use keys_core::{
    ApiKey, OrganisationKeyId, OrganisationSigningKey, PublicKey, SecretDigest, ServiceTokenRecord, SigningKeyUid,
    Workspace, WorkspaceSigningKey, WorkspaceUid,
};

use super::CacheConfig;
use crate::change::Change;
use crate::error::StoreResult;

/// A found entry: the value and when the lookup that read it began.
pub(super) struct Slot<V> {
    read_at: Instant,
    value: V,
}

pub(super) struct SectionState<K, V> {
    found: HashMap<K, Slot<V>>,
    missing: HashMap<K, Instant>,
    /// Bumped by every invalidation of the section.
    generation: u64,
}

/// The cache of one kind of lookup.
pub(super) struct Section<K, V> {
    state: RwLock<SectionState<K, V>>,
}

/// The answer of [`Section::get`].
pub(super) enum Cached<V> {
    /// A fresh entry: the value, or `None` for a cached "not found".
    Hit(Option<V>),
    /// Nothing fresh; a fill must present this generation.
    Miss { generation: u64 },
}

impl<K: Hash + Eq, V: Clone> Section<K, V> {
    pub(super) fn new() -> Self {
        Self { state: RwLock::new(SectionState { found: HashMap::new(), missing: HashMap::new(), generation: 0 }) }
    }

    // A panic while holding the lock cannot leave a map half-updated in a
    // way that matters (each update is one insert, remove or clear), so a
    // poisoned lock is still safe to use.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, SectionState<K, V>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> RwLockWriteGuard<'_, SectionState<K, V>> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get<Q>(&self, key: &Q, now: Instant, ttl: Duration) -> Cached<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let state = self.read();
        let fresh = |read_at: Instant| now.saturating_duration_since(read_at) < ttl;
        if let Some(slot) = state.found.get(key) {
            if fresh(slot.read_at) {
                return Cached::Hit(Some(slot.value.clone()));
            }
        } else if let Some(read_at) = state.missing.get(key) {
            if fresh(*read_at) {
                return Cached::Hit(None);
            }
        }
        Cached::Miss { generation: state.generation }
    }

    /// Stores what a lookup that began at `read_at` found, unless the
    /// section was invalidated since (`generation` moved).
    pub(super) fn fill(&self, key: K, value: Option<V>, read_at: Instant, generation: u64, config: &CacheConfig) {
        let mut state = self.write();
        if state.generation != generation {
            return;
        }
        let now = Instant::now();
        match value {
            Some(value) => {
                state.missing.remove(&key);
                make_room(&mut state.found, &key, now, config, |slot| slot.read_at);
                state.found.insert(key, Slot { read_at, value });
            }
            None => {
                state.found.remove(&key);
                make_room(&mut state.missing, &key, now, config, |read_at| *read_at);
                state.missing.insert(key, read_at);
            }
        }
    }

    pub(super) fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut state = self.write();
        state.generation += 1;
        state.found.remove(key);
        state.missing.remove(key);
    }

    /// Drops every found entry `doomed` picks and every not-found entry
    /// (the change may have created what was missing).
    pub(super) fn remove_where(&self, doomed: impl Fn(&V) -> bool) {
        let mut state = self.write();
        state.generation += 1;
        state.found.retain(|_, slot| !doomed(&slot.value));
        state.missing = HashMap::new();
    }

    pub(super) fn clear(&self) {
        let mut state = self.write();
        state.generation += 1;
        state.found = HashMap::new();
        state.missing = HashMap::new();
    }

    pub(super) fn len(&self) -> usize {
        let state = self.read();
        state.found.len() + state.missing.len()
    }
}

/// Keeps a map under its capacity before `key` is inserted: expired
/// entries go first; if the map is still full, it starts over empty (so
/// garbage presented faster than entries expire costs a refill, never
/// unbounded memory).
pub(super) fn make_room<K: Hash + Eq, T>(
    map: &mut HashMap<K, T>,
    key: &K,
    now: Instant,
    config: &CacheConfig,
    read_at: impl Fn(&T) -> Instant,
) {
    if map.len() < config.capacity || map.contains_key(key) {
        return;
    }
    map.retain(|_, entry| now.saturating_duration_since(read_at(entry)) < config.ttl);
    if map.len() >= config.capacity {
        *map = HashMap::new();
    }
}

/// Every section, and the configuration they share.
pub(super) struct Cache {
    pub(super) config: CacheConfig,
    // The two lookups of every API-key verification keep their values
    // shared, so a hit costs a reference count, not a copy.
    pub(super) service_tokens: Section<SecretDigest, Arc<ServiceTokenRecord>>,
    pub(super) api_keys: Section<SecretDigest, Arc<(ApiKey, Workspace)>>,
    pub(super) public_keys: Section<String, (PublicKey, Workspace)>,
    pub(super) signing_keys: Section<SigningKeyUid, WorkspaceSigningKey>,
    pub(super) live_signing_keys: Section<WorkspaceUid, Vec<WorkspaceSigningKey>>,
    pub(super) organisation_keys: Section<OrganisationKeyId, OrganisationSigningKey>,
    /// Bumped by `Change::Everything`; with a workspace's own count (bumped
    /// by `Change::Meters`), what keys-service's metering compares to know
    /// that workspace's meters are current.
    pub(super) meter_generation: std::sync::atomic::AtomicU64,
    pub(super) workspace_meter_generations: std::sync::Mutex<std::collections::HashMap<WorkspaceUid, u64>>,
}

impl Cache {
    pub(super) fn new(config: CacheConfig) -> Self {
        Self {
            config,
            service_tokens: Section::new(),
            api_keys: Section::new(),
            public_keys: Section::new(),
            signing_keys: Section::new(),
            live_signing_keys: Section::new(),
            organisation_keys: Section::new(),
            meter_generation: std::sync::atomic::AtomicU64::new(0),
            workspace_meter_generations: std::sync::Mutex::default(),
        }
    }

    /// Forgets whatever `change` may have made stale.
    pub(super) fn apply(&self, change: &Change) {
        match change {
            Change::Everything => {
                self.meter_generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            Change::Meters(workspace) | Change::Workspace(workspace) => {
                let mut generations =
                    self.workspace_meter_generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                *generations.entry(workspace.clone()).or_default() += 1;
            }
            _ => {}
        }
        match change {
            Change::Everything => {
                self.service_tokens.clear();
                self.api_keys.clear();
                self.public_keys.clear();
                self.signing_keys.clear();
                self.live_signing_keys.clear();
                self.organisation_keys.clear();
            }
            // Organisations only gain workspaces and keys, which announce
            // themselves; no cached lookup answers differently after this.
            Change::Organisation(_) => {}
            // A created workspace holds nothing yet; a patched one was
            // cached beside its keys.
            Change::Workspace(workspace) => {
                self.api_keys.remove_where(|found| &found.1.uid == workspace);
                self.public_keys.remove_where(|(_, held)| &held.uid == workspace);
            }
            Change::ServiceToken(digest) => self.service_tokens.remove(digest),
            Change::ApiKey(digest) => self.api_keys.remove(digest),
            // What was found stays true; what was missing may be stored now.
            Change::ApiKeysImported(_) => self.api_keys.remove_where(|_| false),
            Change::PublicKeys(workspace) => self.public_keys.remove_where(|(key, _)| &key.workspace == workspace),
            Change::SigningKeys(workspace) => {
                self.signing_keys.remove_where(|key| &key.workspace == workspace);
                self.live_signing_keys.remove(workspace);
            }
            Change::OrganisationKey(id) => self.organisation_keys.remove(id),
            // Nothing cached here depends on meters.
            Change::Meters(_) => {}
        }
    }

    pub(super) fn len(&self) -> usize {
        self.service_tokens.len()
            + self.api_keys.len()
            + self.public_keys.len()
            + self.signing_keys.len()
            + self.live_signing_keys.len()
            + self.organisation_keys.len()
    }

    /// The cached answer for `key`, or the inner store's (then cached).
    /// `lookup` is only called on a miss.
    pub(super) async fn through<K, V, Q, F>(
        &self,
        section: &Section<K, V>,
        key: &Q,
        lookup: impl FnOnce() -> F,
    ) -> StoreResult<Option<V>>
    where
        K: Borrow<Q> + Hash + Eq,
        Q: ToOwned<Owned = K> + Hash + Eq + ?Sized,
        V: Clone,
        F: Future<Output = StoreResult<Option<V>>>,
    {
        if !self.config.is_enabled() {
            return lookup().await;
        }
        let started = Instant::now();
        let generation = match section.get(key, started, self.config.ttl) {
            Cached::Hit(value) => return Ok(value),
            Cached::Miss { generation } => generation,
        };
        let value = lookup().await?;
        section.fill(key.to_owned(), value.clone(), started, generation, &self.config);
        Ok(value)
    }
}
