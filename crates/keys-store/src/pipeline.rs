//! The mutation pipeline and [`SqlStore`], the store on a SQL database.
//!
//! [`run`] is the one function every mutation goes through: open a write
//! transaction, take the lock the command names, let the command load,
//! apply its keys-core transition and write ([`Command::apply`]), insert
//! its audit events, announce its [`Change`] (to other processes, on
//! commit), commit, and return the outcome together with the change. A
//! command that writes no audit event wrote nothing: its transaction is
//! rolled back and nothing is announced, so no change happens without its
//! event. After the command writes, [`crate::quota`] holds what it added
//! (keys-core's `Mutation::adds` of the command's `Command::mutation`) to
//! the store's [`Quotas`], counted under the same lock. The command's own
//! output goes to its `Reply`; [`run`] returns only the change.
//!
//! The reads of [`Lookups`] and [`Management`] are one statement each, on a
//! pooled connection.

use std::fmt;

use async_trait::async_trait;
use keys_core::{
    ApiKey, ApiKeyId, KeyPage, KeySlice, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Page,
    Pagination, PublicKey, Quotas, SecretDigest, ServiceTokenId, ServiceTokenRecord, SigningKeyUid, Workspace,
    WorkspaceSigningKey, WorkspaceUid,
};
use sqlx::pool::PoolConnection;
use sqlx::Transaction;
use time::OffsetDateTime;

use crate::change::Change;
use crate::commands::{self, Lock, Locked, Queued, RecordedAuditEvent, WriteConnection};
use crate::error::{database, StoreError, StoreResult};
use crate::meters::{KeyMeters, MeterOf, StoredMeter, TokensTaken};
use crate::mutations::{Attribution, Mutations};
use crate::quota;
use crate::repo::{self, AuditQuery, Sql};
use crate::store::{Listing, Lookups, Management};
use crate::usage::{UsageBatch, UsagePruned, UsageQuery, UsageRow};
use keys_core::meter::{CreditPool, RateLimit, Reserved};
use keys_core::usage::Granularity;

/// What a database brings to [`SqlStore`]: connections that speak
/// [`Sql`], write transactions, and the two things only a backend knows
/// how to do inside one (the bootstrap lock and the announcement).
#[async_trait]
pub trait Backend: sqlx::Database<Connection: Sql> {
    /// A transaction that excludes concurrent writers of what it locks.
    async fn writer(pool: &sqlx::Pool<Self>) -> StoreResult<Transaction<'static, Self>>;
    /// Serializes bootstrap attempts across processes until the transaction
    /// ends (PostgreSQL: an advisory lock; SQLite: the write transaction
    /// already excludes every other writer).
    async fn lock_bootstrap(connection: &mut Self::Connection) -> StoreResult<()>;
    /// Announces what this transaction changes to every other process on
    /// the database, delivered only if (and when) it commits. PostgreSQL:
    /// `pg_notify` on [`crate::CHANGES_CHANNEL`]. SQLite has no such
    /// channel: there, other processes' caches rely on their time to live.
    async fn announce(connection: &mut Self::Connection, change: &Change) -> StoreResult<()>;
    /// The connection as a command's `apply` takes it from behind
    /// [`Queued`]'s trait object.
    fn connection(connection: &mut Self::Connection) -> WriteConnection<'_>;
    /// Creates an API key, its audit event and its announcement in one
    /// statement, admitted under `limit` live keys of its workspace, where
    /// the backend can do it exactly (PostgreSQL, [`repo::create_api_key_at_once`]).
    /// `None`: it cannot (SQLite, whose writers are serialised anyway);
    /// `Some(false)`: not admitted (no such workspace, or its cap reached),
    /// and nothing was written.
    async fn create_api_key_at_once(
        _pool: &sqlx::Pool<Self>,
        _key: &ApiKey,
        _limit: u32,
        _attribution: &Attribution,
    ) -> Option<StoreResult<bool>> {
        None
    }
}

/// A store on a SQL database: [`crate::PgStore`] or [`crate::SqliteStore`].
pub struct SqlStore<DB: Backend> {
    pub(crate) pool: sqlx::Pool<DB>,
    /// The caps every create is held to ([`SqlStore::with_quotas`]).
    pub(crate) quotas: Quotas,
    /// What opening found of the schema, and what it applied.
    pub(crate) schema: crate::schema::SchemaStatus,
}

/// One step of [`SqlStore::under_meter`].
type MeterStep<'c, T> = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<T>> + Send + 'c>>;

impl<DB: Backend> SqlStore<DB> {
    /// The database's schema as opening found it (after applying what was
    /// pending).
    pub fn schema(&self) -> crate::schema::SchemaStatus {
        self.schema
    }

    /// The connection pool, for callers that need the database itself
    /// (tests, operational tooling).
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// The same store, holding every create to these caps instead of
    /// [`Quotas::default`] (`keysd serve`'s `--max-…` flags).
    #[must_use]
    pub fn with_quotas(self, quotas: Quotas) -> Self {
        Self { quotas, ..self }
    }

    /// The caps in force.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn reader(&self) -> StoreResult<PoolConnection<DB>> {
        self.pool.acquire().await.map_err(database)
    }
}

impl<DB: Backend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone(), quotas: self.quotas, schema: self.schema }
    }
}

impl<DB: Backend> fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &DB::NAME)
            .field("pool", &self.pool)
            .field("quotas", &self.quotas)
            .field("schema", &self.schema)
            .finish()
    }
}

/// Runs the write transaction `write` to its end on a task of its own,
/// whatever becomes of the caller. A caller may be dropped at any await (a
/// client that disconnects, a request timeout, the flusher stopped at
/// shutdown), and sqlx's `begin` is not cancel-safe: dropped while `BEGIN`
/// is in flight, it returns its connection to the pool inside a transaction
/// that nothing rolls back (launchbadge/sqlx#2054, #3932, #4385), which on
/// SQLite holds the write lock against every other writer. Detached, the
/// transaction always commits or rolls back.
pub(crate) async fn detached<T: Send + 'static>(
    write: impl std::future::Future<Output = StoreResult<T>> + Send + 'static,
) -> StoreResult<T> {
    match tokio::spawn(write).await {
        Ok(result) => result,
        Err(joined) if joined.is_panic() => std::panic::resume_unwind(joined.into_panic()),
        // Only a runtime that is shutting down cancels the task.
        Err(joined) => Err(StoreError::Inconsistent(format!("a write did not run to its end: {joined}"))),
    }
}

/// Runs one command in one transaction (see the module documentation),
/// held to `quotas`. This is also the one place where a keys-core "not
/// found" becomes the store's [`StoreError::NotFound`].
pub(crate) async fn run<DB: Backend>(
    pool: &sqlx::Pool<DB>,
    quotas: Quotas,
    command: Queued,
    attribution: &Attribution,
) -> StoreResult<Option<Change>> {
    if let Some(key) = command.api_key_at_once() {
        let limit = quotas.limit(keys_core::QuotaKind::ApiKeys);
        match DB::create_api_key_at_once(pool, key, limit, attribution).await {
            Some(Ok(true)) => return command.written_at_once().map(Some),
            Some(Err(error)) => return Err(commands::store_outcome(error)),
            // Not admitted: the transaction below says why, as it does on
            // every backend (no such workspace, or the cap reached), under
            // the workspace's lock; it writes only if a delete made room
            // meanwhile, and then counts under that lock.
            Some(Ok(false)) | None => {}
        }
    }
    transact::<DB>(pool, quotas, command, attribution).await.map_err(commands::store_outcome)
}

async fn transact<DB: Backend>(
    pool: &sqlx::Pool<DB>,
    quotas: Quotas,
    command: Queued,
    attribution: &Attribution,
) -> StoreResult<Option<Change>> {
    let mut transaction = DB::writer(pool).await?;
    let locked = take_lock::<DB>(&mut *transaction, command.lock()).await?;
    let counted = quota::counted(&command, &locked);
    let written = command.apply(DB::connection(&mut *transaction), locked).await?;
    if written.events.is_empty() {
        // Nothing was written; dropping the transaction rolls it back.
        return Ok(None);
    }
    // Counted under the lock, so no concurrent create can pass the cap; a
    // refusal drops the transaction, and with it the write.
    if let Some(counted) = &counted {
        quota::admit(&mut *transaction, &quotas, counted).await?;
    }
    for mut event in written.events {
        // Who caused the change is the caller's, not the command's: the
        // same command is run by the CLI (no token, no request) and over HTTP.
        event.token_id.clone_from(&attribution.token_id);
        event.request_id.clone_from(&attribution.request_id);
        repo::insert_audit_event(&mut *transaction, event.row()).await?;
    }
    if let Some(change) = &written.change {
        DB::announce(&mut *transaction, change).await?;
    }
    transaction.commit().await.map_err(|source| StoreError::database("commit", source))?;
    Ok(written.change)
}

/// Takes the lock a command names and returns what it locked; a missing
/// organisation or workspace is [`StoreError::NotFound`].
async fn take_lock<DB: Backend>(connection: &mut DB::Connection, lock: Lock<'_>) -> StoreResult<Locked> {
    match lock {
        Lock::Nothing => Ok(Locked::Nothing),
        Lock::Bootstrap => DB::lock_bootstrap(connection).await.map(|()| Locked::Nothing),
        Lock::Organisation(id) => repo::lock_organisation(connection, id)
            .await?
            .map(Locked::Organisation)
            .ok_or(StoreError::NotFound { kind: "organisation" }),
        Lock::Workspace(uid) => repo::lock_workspace(connection, uid)
            .await?
            .map(Locked::Workspace)
            .ok_or(StoreError::NotFound { kind: "workspace" }),
    }
}

#[async_trait]
impl<DB: Backend> Mutations for SqlStore<DB> {
    async fn execute_attributed(&self, command: Queued, attribution: &Attribution) -> StoreResult<Option<Change>> {
        let (pool, quotas, attribution) = (self.pool.clone(), self.quotas, attribution.clone());
        detached(async move { run(&pool, quotas, command, &attribution).await }).await
    }

    async fn record_api_key_uses(&self, uses: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<u64> {
        let uses = uses.iter().map(|(id, at)| (id.as_str().to_owned(), *at)).collect();
        self.record_uses(repo::Used::ApiKey, uses).await
    }

    async fn record_service_token_uses(&self, uses: &[(ServiceTokenId, OffsetDateTime)]) -> StoreResult<u64> {
        let uses = uses.iter().map(|(id, at)| (id.as_str().to_owned(), *at)).collect();
        self.record_uses(repo::Used::ServiceToken, uses).await
    }

    async fn record_usage(&self, batch: &UsageBatch) -> StoreResult<bool> {
        let (pool, batch) = (self.pool.clone(), batch.clone());
        detached(async move {
            let mut transaction = DB::writer(&pool).await?;
            if !repo::claim_usage_batch(&mut *transaction, &batch).await? {
                return Ok(false);
            }
            repo::add_usage(&mut *transaction, &batch).await?;
            transaction.commit().await.map_err(|source| StoreError::database("commit", source))?;
            Ok(true)
        })
        .await
    }

    async fn prune_usage(
        &self,
        cutoffs: &[(Granularity, OffsetDateTime)],
        batches_before: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<UsagePruned> {
        let (pool, cutoffs) = (self.pool.clone(), cutoffs.to_vec());
        detached(async move {
            let mut pruned = UsagePruned::default();
            for (granularity, cutoff) in cutoffs {
                let mut transaction = DB::writer(&pool).await?;
                pruned.counts += repo::prune_usage_counts(&mut *transaction, granularity, cutoff, limit).await?;
                transaction.commit().await.map_err(|source| StoreError::database("commit", source))?;
            }
            let mut transaction = DB::writer(&pool).await?;
            pruned.batches = repo::prune_usage_batches(&mut *transaction, batches_before, limit).await?;
            transaction.commit().await.map_err(|source| StoreError::database("commit", source))?;
            Ok(pruned)
        })
        .await
    }

    async fn reserve_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        least: u64,
        want: u64,
        now: OffsetDateTime,
    ) -> StoreResult<Option<(Reserved, CreditPool)>> {
        let reserved = self
            .under_meter(workspace, of, move |sql, meter| {
                Box::pin(async move {
                    let Some(rule) = meter.meter.credits else { return Ok(None) };
                    let (pool, reserved) = meter.pool.reserve(&rule, least, want, now);
                    if pool != meter.pool {
                        repo::save_pool(sql, &meter.workspace, &meter.of, &pool).await?;
                    }
                    Ok(Some((reserved, pool)))
                })
            })
            .await?;
        Ok(reserved.flatten())
    }

    async fn hand_back_credits(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        epoch: u64,
        unspent: u64,
    ) -> StoreResult<()> {
        self.under_meter(workspace, of, move |sql, meter| {
            Box::pin(async move {
                let pool = meter.pool.hand_back(epoch, unspent);
                if pool != meter.pool {
                    repo::save_pool(sql, &meter.workspace, &meter.of, &pool).await?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(())
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
        self.exchange(workspace, of, limit, None, least, want, now).await
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
        self.exchange(workspace, of, limit, Some(returned), least, want, now).await
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
        let limit = limit.clone();
        self.under_meter(workspace, of, move |sql, meter| {
            Box::pin(async move {
                let name = limit.name().as_str();
                if let Some(state) = repo::counter(sql, &meter.workspace, &meter.of, name).await? {
                    let next = limit.give_back(&state, tokens, taken_at, now);
                    repo::save_counter(sql, &meter.workspace, &meter.of, name, &next).await?;
                }
                Ok(())
            })
        })
        .await?;
        Ok(())
    }
}

impl<DB: Backend> SqlStore<DB> {
    /// Runs `step` on a subject's meter under its row lock, in one write
    /// transaction, and commits; `None` (nothing written) when the subject
    /// has no meter.
    async fn under_meter<T: Send + 'static>(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        step: impl for<'c> FnOnce(&'c mut DB::Connection, StoredMeter) -> MeterStep<'c, T> + Send + 'static,
    ) -> StoreResult<Option<T>> {
        let (pool, workspace, of) = (self.pool.clone(), workspace.clone(), of.clone());
        detached(async move {
            let mut transaction = DB::writer(&pool).await?;
            let Some(meter) = repo::lock_meter(&mut *transaction, &workspace, &of).await? else { return Ok(None) };
            let output = step(&mut *transaction, meter).await?;
            transaction.commit().await.map_err(|source| StoreError::database("commit", source))?;
            Ok(Some(output))
        })
        .await
    }

    /// Gives `returned` back (when some) and takes a batch of `least` to
    /// `want` tokens, in one transaction under the subject's row lock.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        workspace: &WorkspaceUid,
        of: &MeterOf,
        limit: &RateLimit,
        returned: Option<(u32, OffsetDateTime)>,
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> StoreResult<TokensTaken> {
        let limit = limit.clone();
        let taken = self
            .under_meter(workspace, of, move |sql, meter| {
                Box::pin(async move {
                    let name = limit.name().as_str();
                    let mut state = repo::counter(sql, &meter.workspace, &meter.of, name).await?;
                    if let (Some((tokens, taken_at)), Some(held)) = (returned, state) {
                        state = Some(limit.give_back(&held, tokens, taken_at, now));
                    }
                    match limit.take_up_to(state.as_ref(), least, want, now) {
                        Some((batch, next)) => {
                            repo::save_counter(sql, &meter.workspace, &meter.of, name, &next).await?;
                            Ok(Ok(batch))
                        }
                        None => {
                            if let (Some(_), Some(given)) = (returned, state) {
                                repo::save_counter(sql, &meter.workspace, &meter.of, name, &given).await?;
                            }
                            let cost = keys_core::meter::Cost::parse(u64::from(least)).unwrap_or_default();
                            let check = limit.check(state.as_ref(), cost, now);
                            let retry_at = match check.outcome {
                                keys_core::meter::RateLimitOutcome::Refused { retry_at } => retry_at,
                                keys_core::meter::RateLimitOutcome::Admitted(_) => Some(now),
                            };
                            Ok(Err(retry_at))
                        }
                    }
                })
            })
            .await?;
        Ok(taken.unwrap_or(Err(None)))
    }

    /// Moves each row's `last_used_at` forwards, in one transaction, rows
    /// in id order, so that two replicas flushing at once take the row
    /// locks in the same order and never deadlock.
    async fn record_uses(&self, used: repo::Used, mut uses: Vec<(String, OffsetDateTime)>) -> StoreResult<u64> {
        uses.sort_by(|left, right| left.0.cmp(&right.0));
        let pool = self.pool.clone();
        detached(async move {
            let mut transaction = DB::writer(&pool).await?;
            let mut moved = 0;
            for (id, at) in &uses {
                moved += u64::from(repo::record_use(&mut *transaction, used, id, *at).await?);
            }
            transaction.commit().await.map_err(|source| StoreError::database("commit", source))?;
            Ok(moved)
        })
        .await
    }
}

#[async_trait]
impl<DB: Backend> Lookups for SqlStore<DB> {
    async fn service_token_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<ServiceTokenRecord>> {
        repo::service_token_by_digest(&mut *self.reader().await?, digest).await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<(ApiKey, Workspace)>> {
        repo::api_key_by_digest(&mut *self.reader().await?, digest).await
    }

    async fn public_key_by_value(&self, value: &str) -> StoreResult<Option<(PublicKey, Workspace)>> {
        repo::public_key_by_value(&mut *self.reader().await?, value).await
    }

    async fn live_signing_keys(&self, workspace: &WorkspaceUid) -> StoreResult<Vec<WorkspaceSigningKey>> {
        repo::live_signing_keys(&mut *self.reader().await?, workspace).await
    }

    async fn signing_key_by_uid(&self, uid: &SigningKeyUid) -> StoreResult<Option<WorkspaceSigningKey>> {
        repo::signing_key_by_uid(&mut *self.reader().await?, uid).await
    }

    async fn organisation_key(&self, id: &OrganisationKeyId) -> StoreResult<Option<OrganisationSigningKey>> {
        repo::organisation_key(&mut *self.reader().await?, id).await
    }
}

#[async_trait]
impl<DB: Backend> Management for SqlStore<DB> {
    async fn ping(&self) -> StoreResult<()> {
        repo::ping(&mut *self.reader().await?).await
    }

    async fn organisation(&self, id: &OrganisationId) -> StoreResult<Option<Organisation>> {
        repo::organisation(&mut *self.reader().await?, id).await
    }

    async fn organisation_by_name(&self, name: &str) -> StoreResult<Option<Organisation>> {
        repo::organisation_by_name(&mut *self.reader().await?, name).await
    }

    async fn workspace_by_slug(&self, organisation: &OrganisationId, slug: &str) -> StoreResult<Option<Workspace>> {
        repo::workspace_by_slug(&mut *self.reader().await?, organisation, slug).await
    }

    async fn workspace_by_uid(&self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>> {
        repo::workspace(&mut *self.reader().await?, uid).await
    }

    async fn list_workspaces(&self, organisation: &OrganisationId, page: Pagination) -> StoreResult<Page<Workspace>> {
        repo::list_workspaces(&mut *self.reader().await?, organisation, page).await
    }

    async fn api_key(&self, workspace: &WorkspaceUid, id: &ApiKeyId) -> StoreResult<Option<ApiKey>> {
        repo::api_key(&mut *self.reader().await?, workspace, id).await
    }

    async fn list_api_keys(&self, workspace: &WorkspaceUid, listing: Listing) -> StoreResult<Page<ApiKey>> {
        repo::list_api_keys(&mut *self.reader().await?, workspace, listing).await
    }

    async fn list_public_keys(&self, workspace: &WorkspaceUid, listing: Listing) -> StoreResult<Page<PublicKey>> {
        repo::list_public_keys(&mut *self.reader().await?, workspace, listing).await
    }

    async fn list_signing_keys(
        &self,
        workspace: &WorkspaceUid,
        listing: Listing,
    ) -> StoreResult<Page<WorkspaceSigningKey>> {
        repo::list_signing_keys(&mut *self.reader().await?, workspace, listing).await
    }

    async fn service_token(
        &self,
        organisation: &OrganisationId,
        id: &ServiceTokenId,
    ) -> StoreResult<Option<ServiceTokenRecord>> {
        repo::service_token(&mut *self.reader().await?, organisation, id).await
    }

    async fn list_service_tokens(
        &self,
        organisation: &OrganisationId,
        listing: Listing,
    ) -> StoreResult<Page<ServiceTokenRecord>> {
        repo::service_tokens(&mut *self.reader().await?, organisation, listing).await
    }

    async fn list_organisation_keys(&self, organisation: &OrganisationId) -> StoreResult<Vec<OrganisationSigningKey>> {
        repo::list_organisation_keys(&mut *self.reader().await?, organisation).await
    }

    async fn organisation_keys_page(&self, organisation: &OrganisationId, page: &KeyPage) -> StoreResult<KeySlice> {
        Ok(page.slice(repo::organisation_keys_page(&mut *self.reader().await?, organisation, page).await?))
    }

    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<RecordedAuditEvent>> {
        repo::audit_page(&mut *self.reader().await?, query, RecordedAuditEvent::decode).await
    }

    async fn usage_page(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
        repo::usage_page(&mut *self.reader().await?, query).await
    }

    async fn key_meters(
        &self,
        workspace: &WorkspaceUid,
        key: &ApiKeyId,
        external_id: Option<&str>,
    ) -> StoreResult<Option<KeyMeters>> {
        let mut connection = self.reader().await?;
        let Some(root) = repo::meter_root(&mut *connection, workspace, key).await? else { return Ok(None) };
        let of_key = MeterOf::Key(root.clone());
        let of_identity = external_id.map(|external_id| MeterOf::Identity(external_id.to_owned()));
        let mut wanted = vec![&of_key];
        wanted.extend(of_identity.as_ref());
        let mut found = repo::meters(&mut *connection, workspace, &wanted).await?;
        let identity =
            found.iter().position(|meter| Some(&meter.of) == of_identity.as_ref()).map(|at| found.remove(at));
        let key = found.into_iter().find(|meter| meter.of == of_key);
        Ok(Some(KeyMeters { root, key, identity }))
    }

    async fn meter(&self, workspace: &WorkspaceUid, of: &MeterOf) -> StoreResult<Option<StoredMeter>> {
        Ok(repo::meters(&mut *self.reader().await?, workspace, &[of]).await?.into_iter().next())
    }

    async fn identity_key_ids(&self, workspace: &WorkspaceUid, external_id: &str) -> StoreResult<Vec<ApiKeyId>> {
        repo::identity_key_ids(&mut *self.reader().await?, workspace, external_id).await
    }
}
