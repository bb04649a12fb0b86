//! [`CachedStore`]: the read-only lookups of verification and of
//! authentication served from memory, without giving up the freshness the
//! service promises across processes.
//!
//! Cached: service tokens by digest, API keys by digest (with their
//! workspace), public keys by value (with their workspace), workspace
//! signing keys by uid, the live signing keys of a workspace, organisation
//! signing keys by id. "Not found" is cached too, so a flood of well-formed
//! but unknown credentials does not reach the database on every request.
//! Everything else goes straight to the inner store. The cache holds the
//! entity values the store returned, unchanged: every decision is still
//! made, per request, by keys-core on those values (a rolled key's expiry
//! is compared with the request's `now`, not with the time it was cached).
//!
//! **Freshness**, fastest first:
//! 1. A mutation made through this `CachedStore` invalidates what it touched
//!    before it returns: this process sees its own changes at once. What it
//!    touched is the [`Change`] the command itself declared and the store
//!    committed (what `Mutations::execute` returns); the cache has no list of its own.
//! 2. On PostgreSQL every mutation transaction announces its [`Change`]
//!    (`pg_notify`, delivered on commit), and a store made with
//!    [`CachedStore::following`] runs a listener task that applies every
//!    announcement as it arrives (typically within milliseconds), and clears
//!    the whole cache whenever its connection was lost, since announcements
//!    may have been missed meanwhile.
//! 3. Whatever happens, an entry is used for at most [`CacheConfig::ttl`]
//!    (500 ms by default) after the lookup that produced it began. This
//!    bounds staleness when an announcement is lost, and is the only
//!    mechanism between processes on SQLite (the CLI adding a token while
//!    `serve` runs).
//!
//! A lookup that misses races with invalidations: it may read the database
//! just before a change commits and come back after the change was applied
//! to the cache. Each section therefore counts its invalidations, and a
//! fill whose lookup began before the latest invalidation is dropped.
//!
//! **Bounded**: each section keeps at most [`CacheConfig::capacity`] found
//! and as many not-found entries; a full map first drops its expired
//! entries and, if still full, starts over empty.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keys_core::{
    ApiKey, ApiKeyId, KeyPage, KeySlice, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Page,
    Pagination, PublicKey, SecretDigest, ServiceTokenId, ServiceTokenRecord, SigningKeyUid, Workspace,
    WorkspaceSigningKey, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::change::{Change, ChangeFeed, Heard};
use crate::commands::{Queued, RecordedAuditEvent};
use crate::error::StoreResult;
use crate::meters::{KeyMeters, MeterOf, StoredMeter, TokensTaken};
use crate::mutations::{Attribution, Mutations};
use crate::postgres::{ChangeListener, PgStore};
use crate::repo::AuditQuery;
use crate::store::{Listing, Lookups, Management};
use crate::usage::{UsageBatch, UsagePruned, UsageQuery, UsageRow};
use keys_core::meter::{CreditPool, RateLimit, Reserved};
use keys_core::usage::Granularity;

mod sections;

use sections::Cache;

/// How long entries live and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long after its lookup began an entry may answer. Zero disables
    /// the cache (every lookup reaches the inner store).
    pub ttl: Duration,
    /// The most found, and the most not-found, entries of each kind of
    /// lookup. Zero disables the cache.
    pub capacity: usize,
}

impl CacheConfig {
    /// 500 ms: well inside the one second within which a change made by
    /// another process must be seen, even if its announcement is lost.
    pub const DEFAULT_TTL: Duration = Duration::from_millis(500);
    /// Per kind of lookup and outcome.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A cache that stores nothing.
    pub const fn disabled() -> Self {
        Self { ttl: Duration::ZERO, capacity: 0 }
    }

    fn is_enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { ttl: Self::DEFAULT_TTL, capacity: Self::DEFAULT_CAPACITY }
    }
}

/// Aborts the listener task when the store goes away.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A [`crate::Store`] that serves the lookups of verification and authentication
/// from memory and passes everything else to the store it wraps. See the
/// module documentation for what is cached and how it stays fresh.
pub struct CachedStore<S> {
    inner: S,
    cache: Arc<Cache>,
    listener: Option<ListenerTask>,
    /// Whether every change of the database reaches this store: it follows
    /// the announcements of other processes, or it is the database's only
    /// writer (an SQLite file).
    hears_every_change: bool,
}

impl<S> std::fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedStore")
            .field("config", &self.cache.config)
            .field("entries", &self.cache.len())
            .field("following", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> CachedStore<S> {
    /// Caches in front of `inner`. Changes made by other processes are
    /// seen when entries expire; on PostgreSQL prefer
    /// [`CachedStore::following`], which also hears their announcements.
    pub fn new(inner: S, config: CacheConfig) -> Self {
        Self { inner, cache: Arc::new(Cache::new(config)), listener: None, hears_every_change: false }
    }

    /// Marks this store as its database's only writer (an SQLite file that
    /// one process serves), so that every change passes through it.
    pub fn sole_writer(mut self) -> Self {
        self.hears_every_change = true;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Forgets whatever `change` may have made stale. Mutations through
    /// this store and announcements heard by [`CachedStore::following`] do
    /// this already; this is for changes learnt of some other way.
    pub fn invalidate(&self, change: &Change) {
        self.cache.apply(change);
    }

    /// How many entries (found and not found) the cache holds.
    pub fn cached_entries(&self) -> usize {
        self.cache.len()
    }
}

impl CachedStore<PgStore> {
    /// Caches in front of a PostgreSQL store and follows the changes every
    /// process announces on the database (see the module documentation).
    /// Listening has begun when this returns.
    pub async fn following(inner: PgStore, config: CacheConfig) -> StoreResult<Self> {
        let mut store = Self::new(inner, config);
        if config.is_enabled() {
            let feed = ChangeListener::connect(&store.inner.pool().connect_options()).await?;
            store.listener = Some(ListenerTask(tokio::spawn(follow(Arc::clone(&store.cache), feed))));
            store.hears_every_change = true;
        }
        Ok(store)
    }
}

/// The first wait before reopening a broken feed; it doubles up to
/// [`MAX_REOPEN_DELAY`] while attempts fail.
const FIRST_REOPEN_DELAY: Duration = Duration::from_millis(100);
const MAX_REOPEN_DELAY: Duration = Duration::from_secs(5);

/// The listener task: applies every announcement; clears everything
/// whenever announcements may have been missed (a lost connection, until
/// listening again), and reopens a broken feed with backoff. Meanwhile the
/// time to live keeps entries from answering for long.
async fn follow<F: ChangeFeed>(cache: Arc<Cache>, mut feed: F) {
    loop {
        match feed.next().await {
            Ok(Heard::Change(change)) => cache.apply(&change),
            Ok(Heard::Reconnected) => {
                tracing::warn!("change listener reconnected; verification cache cleared");
                cache.apply(&Change::Everything);
            }
            Err(error) => {
                tracing::warn!(error = %error, "change listener lost its connection; verification cache cleared");
                cache.apply(&Change::Everything);
                let mut delay = FIRST_REOPEN_DELAY;
                feed = loop {
                    tokio::time::sleep(delay).await;
                    match feed.reopen().await {
                        Ok(reopened) => break reopened,
                        Err(error) => {
                            tracing::debug!(error = %error, "change listener cannot reconnect yet");
                            delay = (delay * 2).min(MAX_REOPEN_DELAY);
                        }
                    }
                };
                // Entries filled while nobody listened may be stale.
                cache.apply(&Change::Everything);
                tracing::info!("change listener reconnected");
            }
        }
    }
}

#[async_trait]
impl<S: Mutations> Mutations for CachedStore<S> {
    /// Forwards the command, then forgets what its change made stale. A
    /// client error wrote nothing; any other error may hide a commit that
    /// happened (the connection died while committing), so everything goes.
    async fn execute_attributed(&self, command: Queued, attribution: &Attribution) -> StoreResult<Option<Change>> {
        let result = self.inner.execute_attributed(command, attribution).await;
        match &result {
            Ok(change) => {
                if let Some(change) = change {
                    self.cache.apply(change);
                }
            }
            Err(error) if error.is_client_error() => {}
            Err(_) => self.cache.apply(&Change::Everything),
        }
        result
    }

    /// Forwarded as it is: no cached value depends on `last_used_at`
    /// (verification reads the key's state, not when it was last used).
    async fn record_api_key_uses(&self, uses: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<u64> {
        self.inner.record_api_key_uses(uses).await
    }

    async fn record_usage(&self, batch: &UsageBatch) -> StoreResult<bool> {
        self.inner.record_usage(batch).await
    }

    async fn reserve_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        least: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(Reserved, CreditPool)>> {
        self.inner.reserve_credits(workspace, of, least, want, now).await
    }

    async fn hand_back_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        epoch: u64,
        unspent: u64,
    ) -> StoreResult<()> {
        self.inner.hand_back_credits(workspace, of, epoch, unspent).await
    }

    async fn take_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken> {
        self.inner.take_tokens(workspace, of, limit, least, want, now).await
    }

    async fn give_back_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        tokens: u32,
        taken_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.inner.give_back_tokens(workspace, of, limit, tokens, taken_at, now).await
    }

    async fn exchange_tokens(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        returned: (u32, OffsetDateTime),
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken> {
        self.inner.exchange_tokens(workspace, of, limit, returned, least, want, now).await
    }

    async fn prune_usage(
        &self,
        cutoffs: &[(Granularity, OffsetDateTime)],
        batches_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<UsagePruned> {
        self.inner.prune_usage(cutoffs, batches_before, limit).await
    }

    /// Forwarded as it is: an authentication reads the token's role,
    /// limit, expiry and revocation, never when it was last used.
    async fn record_service_token_uses(&self, uses: &[(ServiceTokenId, OffsetDateTime)]) -> StoreResult<u64> {
        self.inner.record_service_token_uses(uses).await
    }
}

#[async_trait]
impl<S: Lookups> Lookups for CachedStore<S> {
    fn meter_generation(&self, workspace: &WorkspaceUid) -> Option<u64> {
        if !self.hears_every_change {
            return None;
        }
        let everything = self.cache.meter_generation.load(std::sync::atomic::Ordering::Acquire);
        let generations =
            self.cache.workspace_meter_generations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(everything.wrapping_add(generations.get(workspace).copied().unwrap_or(0) << 32))
    }

    async fn service_token_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<ServiceTokenRecord>> {
        Ok(self.shared_service_token_by_digest(digest).await?.map(Arc::unwrap_or_clone))
    }

    async fn shared_service_token_by_digest(
        &self,
        digest: &SecretDigest,
    ) -> StoreResult<Option<Arc<ServiceTokenRecord>>> {
        self.cache
            .through(&self.cache.service_tokens, digest, || self.inner.shared_service_token_by_digest(digest))
            .await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<(ApiKey, Workspace)>> {
        Ok(self.shared_api_key_by_digest(digest).await?.map(Arc::unwrap_or_clone))
    }

    async fn shared_api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<Arc<(ApiKey, Workspace)>>> {
        self.cache.through(&self.cache.api_keys, digest, || self.inner.shared_api_key_by_digest(digest)).await
    }

    async fn public_key_by_value(&self, value: &str) -> StoreResult<Option<(PublicKey, Workspace)>> {
        self.cache.through(&self.cache.public_keys, value, || self.inner.public_key_by_value(value)).await
    }

    async fn live_signing_keys(&self, workspace: &WorkspaceUid) -> StoreResult<Vec<WorkspaceSigningKey>> {
        let lookup = || async { self.inner.live_signing_keys(workspace).await.map(Some) };
        Ok(self.cache.through(&self.cache.live_signing_keys, workspace, lookup).await?.unwrap_or_default())
    }

    async fn signing_key_by_uid(&self, uid: &SigningKeyUid) -> StoreResult<Option<WorkspaceSigningKey>> {
        self.cache.through(&self.cache.signing_keys, uid, || self.inner.signing_key_by_uid(uid)).await
    }

    async fn organisation_key(&self, id: &OrganisationKeyId) -> StoreResult<Option<OrganisationSigningKey>> {
        self.cache.through(&self.cache.organisation_keys, id, || self.inner.organisation_key(id)).await
    }
}

/// Management reads are not cached: they go to the wrapped store as they are.
#[async_trait]
impl<S: Management> Management for CachedStore<S> {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn organisation(&self, id: &OrganisationId) -> StoreResult<Option<Organisation>> {
        self.inner.organisation(id).await
    }

    async fn organisation_by_name(&self, name: &str) -> StoreResult<Option<Organisation>> {
        self.inner.organisation_by_name(name).await
    }

    async fn workspace_by_slug(&self, organisation: &OrganisationId, slug: &str) -> StoreResult<Option<Workspace>> {
        self.inner.workspace_by_slug(organisation, slug).await
    }

    async fn workspace_by_uid(&self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>> {
        self.inner.workspace_by_uid(uid).await
    }

    async fn list_workspaces(&self, organisation: &OrganisationId, page: Pagination) -> StoreResult<Page<Workspace>> {
        self.inner.list_workspaces(organisation, page).await
    }

    async fn api_key(&self, workspace: &WorkspaceUid, id: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
        self.inner.api_key(workspace, id).await
    }

    async fn list_api_keys(&self, workspace: &WorkspaceUid, listing: Listing) -> StoreResult<Page<ApiKey>> {
        self.inner.list_api_keys(workspace, listing).await
    }

    async fn list_public_keys(&self, workspace: &WorkspaceUid, listing: Listing) -> StoreResult<Page<PublicKey>> {
        self.inner.list_public_keys(workspace, listing).await
    }

    async fn list_signing_keys(
        &self,
        workspace: &WorkspaceUid,
        listing: Listing,
    ) -> StoreResult<Page<WorkspaceSigningKey>> {
        self.inner.list_signing_keys(workspace, listing).await
    }

    async fn service_token(
        &self,
        organisation: &OrganisationId,
        id: &ServiceTokenId,
    ) -> StoreResult<Option<ServiceTokenRecord>> {
        self.inner.service_token(organisation, id).await
    }

    async fn list_service_tokens(
        &self,
        organisation: &OrganisationId,
        listing: Listing,
    ) -> StoreResult<Page<ServiceTokenRecord>> {
        self.inner.list_service_tokens(organisation, listing).await
    }

    async fn list_organisation_keys(&self, organisation: &OrganisationId) -> StoreResult<Vec<OrganisationSigningKey>> {
        self.inner.list_organisation_keys(organisation).await
    }

    async fn organisation_keys_page(&self, organisation: &OrganisationId, page: &KeyPage) -> StoreResult<KeySlice> {
        self.inner.organisation_keys_page(organisation, page).await
    }

    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<RecordedAuditEvent>> {
        self.inner.audit_page(query).await
    }

    async fn usage_page(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
        self.inner.usage_page(query).await
    }

    /// Not cached here: keys-service keeps the meters it uses
    /// (`keys_service::metering`), with the slices it holds.
    async fn key_meters(
        &self,
        workspace: &WorkspaceUid,
        key: &ApiKeyId,
        external_id: Option<&str>,
    ) -> StoreResult<Option<KeyMeters>> {
        self.inner.key_meters(workspace, key, external_id).await
    }

    async fn meter(&self, workspace: &WorkspaceUid, of: &MeterOf) -> StoreResult<Option<StoredMeter>> {
        self.inner.meter(workspace, of).await
    }

    async fn identity_key_ids(&self, workspace: &WorkspaceUid, external_id: &str) -> StoreResult<Vec<ApiKeyId>> {
        self.inner.identity_key_ids(workspace, external_id).await
    }
}

/// Webhooks are not cached: every call goes to the wrapped store.
#[async_trait]
impl<S: crate::Webhooks> crate::Webhooks for CachedStore<S> {
    async fn webhook_endpoints(&self, organisation: &OrganisationId) -> StoreResult<Vec<crate::StoredEndpoint>> {
        self.inner.webhook_endpoints(organisation).await
    }

    async fn webhook_endpoint(
        &self,
        organisation: &OrganisationId,
        id: &keys_core::webhook::WebhookEndpointId,
    ) -> StoreResult<Option<crate::StoredEndpoint>> {
        self.inner.webhook_endpoint(organisation, id).await
    }

    async fn due_webhook_endpoints(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<keys_core::webhook::WebhookEndpointId>> {
        self.inner.due_webhook_endpoints(now, limit).await
    }

    async fn claim_webhook_deliveries(
        &self,
        endpoint: &keys_core::webhook::WebhookEndpointId,
        now: OffsetDateTime,
        until: OffsetDateTime,
        claim: &str,
        limit: u32,
    ) -> StoreResult<Option<(crate::StoredEndpoint, Vec<crate::ClaimedDelivery>)>> {
        self.inner.claim_webhook_deliveries(endpoint, now, until, claim, limit).await
    }

    async fn finish_webhook_attempt(&self, attempt: &crate::FinishedAttempt) -> StoreResult<Option<OffsetDateTime>> {
        self.inner.finish_webhook_attempt(attempt).await
    }

    async fn webhook_attempts(
        &self,
        endpoint: &keys_core::webhook::WebhookEndpointId,
        pagination: keys_core::Pagination,
    ) -> StoreResult<keys_core::Page<crate::AttemptRow>> {
        self.inner.webhook_attempts(endpoint, pagination).await
    }

    async fn retry_webhook_delivery(
        &self,
        endpoint: &keys_core::webhook::WebhookEndpointId,
        message_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.inner.retry_webhook_delivery(endpoint, message_id, now).await
    }

    async fn record_webhook_warnings(&self, warnings: &[crate::Warning]) -> StoreResult<u64> {
        self.inner.record_webhook_warnings(warnings).await
    }

    async fn expiring_api_keys(
        &self,
        now: OffsetDateTime,
        lead: time::Duration,
        covered: &[i64],
        limit: u32,
    ) -> StoreResult<Vec<crate::ExpiringKey>> {
        self.inner.expiring_api_keys(now, lead, covered, limit).await
    }

    async fn prune_webhooks(&self, before: OffsetDateTime, limit: u32) -> StoreResult<u64> {
        self.inner.prune_webhooks(before, limit).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::sections::{Cached, Section};
    use super::*;
    use crate::error::StoreError;
    use rand_chacha::rand_core::SeedableRng;
    use tokio::sync::{mpsc, Mutex, Semaphore};

    fn config(ttl_ms: u64, capacity: usize) -> CacheConfig {
        CacheConfig { ttl: Duration::from_millis(ttl_ms), capacity }
    }

    /// An empty section, its configuration, and the instant the test starts.
    fn empty(ttl_ms: u64, capacity: usize) -> (CacheConfig, Section<u32, u32>, Instant) {
        (config(ttl_ms, capacity), Section::new(), Instant::now())
    }

    fn hit(cached: Cached<u32>) -> Option<Option<u32>> {
        match cached {
            Cached::Hit(value) => Some(value),
            Cached::Miss { .. } => None,
        }
    }

    fn generation(cached: Cached<u32>) -> u64 {
        match cached {
            Cached::Hit(_) => panic!("expected a miss"),
            Cached::Miss { generation } => generation,
        }
    }

    #[test]
    fn found_and_missing_entries_answer_until_they_expire() {
        let (config, section, start) = empty(500, 10);
        let fill_generation = generation(section.get(&1, start, config.ttl));
        section.fill(1, Some(10), start, fill_generation, &config);
        section.fill(2, None, start, fill_generation, &config);
        assert_eq!(hit(section.get(&1, start, config.ttl)), Some(Some(10)));
        assert_eq!(hit(section.get(&2, start, config.ttl)), Some(None));
        let later = start + Duration::from_millis(500);
        assert_eq!(hit(section.get(&1, later, config.ttl)), None);
        assert_eq!(hit(section.get(&2, later, config.ttl)), None);
    }

    #[test]
    fn a_fill_that_began_before_an_invalidation_is_dropped() {
        let (config, section, start) = empty(500, 10);
        let before = generation(section.get(&1, start, config.ttl));
        section.remove(&1);
        section.fill(1, Some(10), start, before, &config);
        assert_eq!(hit(section.get(&1, start, config.ttl)), None);
        let after = generation(section.get(&1, start, config.ttl));
        section.fill(1, Some(11), start, after, &config);
        assert_eq!(hit(section.get(&1, start, config.ttl)), Some(Some(11)));
    }

    #[test]
    fn remove_where_drops_picked_entries_and_every_miss() {
        let (config, section, start) = empty(500, 10);
        let current = generation(section.get(&1, start, config.ttl));
        section.fill(1, Some(10), start, current, &config);
        section.fill(2, Some(20), start, current, &config);
        section.fill(3, None, start, current, &config);
        section.remove_where(|value| *value == 10);
        assert_eq!(hit(section.get(&1, start, config.ttl)), None);
        assert_eq!(hit(section.get(&2, start, config.ttl)), Some(Some(20)));
        assert_eq!(hit(section.get(&3, start, config.ttl)), None);
    }

    #[test]
    fn maps_never_grow_past_their_capacity() {
        let (config, section, start) = empty(60_000, 100);
        for key in 0..10_000u32 {
            let current = generation(section.get(&key, start, config.ttl));
            let value = (key % 2 == 0).then_some(key);
            section.fill(key, value, start, current, &config);
            assert!(section.len() <= 2 * config.capacity);
        }
        // Room is made by dropping expired entries first.
        let Some(expired) = start.checked_sub(Duration::from_secs(120)) else { return };
        let section: Section<u32, u32> = Section::new();
        for key in 0..100u32 {
            section.fill(key, Some(key), expired, 0, &config);
        }
        section.fill(1_000, Some(1), start, 0, &config);
        assert_eq!(section.len(), 1);
    }

    /// A feed the test drives: `next` answers what the test sends (an
    /// `Err(())` is a broken connection); `reopen` waits for a permit.
    struct ScriptedFeed {
        events: Arc<Mutex<mpsc::UnboundedReceiver<Result<Heard, ()>>>>,
        reopenings: Arc<Semaphore>,
    }

    impl ChangeFeed for ScriptedFeed {
        async fn next(&mut self) -> StoreResult<Heard> {
            match self.events.lock().await.recv().await {
                Some(Ok(heard)) => Ok(heard),
                Some(Err(())) => Err(StoreError::Inconsistent("connection lost".to_owned())),
                None => std::future::pending().await,
            }
        }

        async fn reopen(&self) -> StoreResult<Self> {
            let permit = self.reopenings.acquire().await.map_err(|_| StoreError::Inconsistent("closed".to_owned()))?;
            permit.forget();
            Ok(Self { events: Arc::clone(&self.events), reopenings: Arc::clone(&self.reopenings) })
        }
    }

    /// Caches "no live signing keys" for `workspace`.
    fn fill(cache: &Cache, workspace: &WorkspaceUid) {
        let section = &cache.live_signing_keys;
        let Cached::Miss { generation } = section.get(workspace, Instant::now(), cache.config.ttl) else {
            panic!("expected a miss");
        };
        section.fill(workspace.clone(), Some(Vec::new()), Instant::now(), generation, &cache.config);
        assert_eq!(cache.len(), 1);
    }

    /// Lets the listener task run until `done` holds (at most 5 s).
    async fn until(cache: &Cache, done: impl Fn(&Cache) -> bool) {
        let since = Instant::now();
        while !done(cache) {
            assert!(since.elapsed() < Duration::from_secs(5), "the listener task did not get there");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn thelistener_applies_changes_and_clears_whenever_it_may_have_missed_some() {
        let cache = Arc::new(Cache::new(config(3_600_000, 100)));
        let (events, receiver) = mpsc::unbounded_channel();
        let reopenings = Arc::new(Semaphore::new(0));
        let feed = ScriptedFeed { events: Arc::new(Mutex::new(receiver)), reopenings: Arc::clone(&reopenings) };
        let task = ListenerTask(tokio::spawn(follow(Arc::clone(&cache), feed)));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let now = time::macros::datetime!(2026-04-21 12:00 UTC);
        let workspace = WorkspaceUid::generate(now, &mut rng);
        let empty = |cache: &Cache| cache.len() == 0;

        // An announcement forgets what it names, and only that.
        fill(&cache, &workspace);
        events.send(Ok(Heard::Change(Change::SigningKeys(WorkspaceUid::generate(now, &mut rng))))).ok();
        events.send(Ok(Heard::Change(Change::SigningKeys(workspace.clone())))).ok();
        until(&cache, empty).await;

        // A reconnection forgets everything.
        fill(&cache, &workspace);
        events.send(Ok(Heard::Reconnected)).ok();
        until(&cache, empty).await;

        // A broken feed forgets everything at once, and again once it is
        // listening anew: what was filled in between may be stale.
        fill(&cache, &workspace);
        events.send(Err(())).ok();
        until(&cache, empty).await;
        fill(&cache, &workspace);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(cache.len(), 1, "cleared before listening again");
        reopenings.add_permits(1);
        until(&cache, empty).await;

        // And the reopened feed is followed.
        fill(&cache, &workspace);
        events.send(Ok(Heard::Change(Change::SigningKeys(workspace.clone())))).ok();
        until(&cache, empty).await;
        drop(task);
    }
}
