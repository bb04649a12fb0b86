//! keys-store: where keysd keeps its state.
//!
//! [`Store`] is three traits: [`Lookups`] (what authentication and
//! verification read on every request), [`Management`] (every other read)
//! and [`Mutations`] (one entry point, [`Mutations::execute`], that runs a
//! [`Command`]). Two implementations: [`PgStore`] (PostgreSQL, production)
//! and [`SqliteStore`] (an embedded SQLite file, the zero-setup default).
//!
//! Every mutation is a type implementing [`Command`] (declared once, in
//! the file of its entity under `commands/`: its typed output, its lock,
//! its keys-core transition, its [`AuditAction`] and its [`Change`]) run by
//! one function, the pipeline of `pipeline.rs`, in one transaction; the SQL
//! is plain functions under `repo/`, one file per entity, one text for both
//! backends. The
//! schema enforces the invariants again (partial unique indexes, unique
//! digests, foreign keys), so two processes on one database cannot break
//! them.
//!
//! [`CachedStore`] wraps any store and serves the [`Lookups`] from memory;
//! every mutation announces its [`Change`] (PostgreSQL `NOTIFY`) so the
//! caches of other processes stay fresh, and hands the same change back so
//! the local cache invalidates from it.
//!
//! Module dependencies run one way: `error`, `change`, `rows` ← `repo` ←
//! `commands` ← `mutations`, `store`, `quota` ← `pipeline` ← the backends
//! ← `cache`.
//!
//! **Architecture invariant:** this is the only crate that knows SQL. It
//! never sees a secret: only digests (API keys, service tokens) and public
//! keys reach it.

use std::sync::Arc;

use keys_core::Quotas;

mod backup;
mod cache;
mod change;
mod commands;
mod error;
mod meters;
mod mutations;
mod outbox;
mod pipeline;
mod postgres;
mod quota;
mod repo;
mod rows;
mod schema;
mod sqlite;
mod store;
#[cfg(test)]
mod tests;
mod usage;
mod webhooks;

pub use backup::{backup, Backup, BackupError};
pub use cache::{CacheConfig, CachedStore};
pub use change::{Change, CHANGES_CHANNEL};
pub use commands::{
    Acting, ApiKeyChange, AuditAction, AuditEvent, Bootstrap, ChangeApiKey, ChangeCredits, ChangePublicKey, Command,
    CreateApiKey, CreateMeteredApiKey, CreateOrganisation, CreateOrganisationKey, CreatePublicKey, CreateServiceToken,
    CreateSigningKey, CreateWorkspace, CreditsOf, DeleteIdentity, DeleteOrganisationKey, DeletePublicKey,
    DeleteSigningKey, Executed, ImportApiKeys, ImportedApiKeys, LeakedApiKey, Lock, PatchWorkspace, PruneAuditEvents,
    PublicKeyChange, PutIdentity, PutKeyMeter, Queued, RecordedAuditEvent, Reply, ReportLeakedApiKey,
    RevokeServiceToken, RollApiKey, RollSigningKey, StoredDigests,
};
pub use commands::{
    ChangeWebhookEndpoint, CreateWebhookEndpoint, DeleteWebhookEndpoint, DisableFailingWebhookEndpoint, EndpointPatch,
};
pub use error::{Conflict, StoreError, StoreResult};
pub use meters::{KeyMeters, MeterOf, MeterSetting, StoredMeter, TokensTaken};
pub use mutations::{Attributed, Attribution, Mutations, Run};
pub use outbox::{ClaimedDelivery, Payload, Webhooks};
pub use pipeline::{Backend, SqlStore};
pub use postgres::PgStore;
pub use repo::{AuditFilter, AuditOrder, AuditPosition, AuditQuery};
pub use schema::{Migrations, SchemaError, SchemaStatus, SchemaSupport};
pub use sqlite::SqliteStore;
pub use store::{Listing, Lookups, Management};
pub use usage::{UsageBatch, UsageCount, UsageOf, UsagePosition, UsagePruned, UsageQuery, UsageRow};
pub use webhooks::{AttemptOutcome, AttemptRow, ExpiringKey, FinishedAttempt, StoredEndpoint, Warning};

/// Everything keysd keeps: the cached [`Lookups`] of verification, the
/// [`Management`] reads and the [`Mutations`]. Implemented by every type
/// that has the three; `Arc<dyn Store>` is what keys-http holds, and every
/// method of the three is callable on it.
pub trait Store: Lookups + Management + Mutations + Webhooks + 'static {}

impl<T: Lookups + Management + Mutations + Webhooks + 'static> Store for T {}

/// Opens the store a URL names (`sqlite://path`, `sqlite::memory:`,
/// `postgres://…`), running its migrations, with the default
/// [`Quotas`].
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if is_sqlite(url) {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Like [`open`], behind a [`CachedStore`] for long-running servers, and
/// holding every create to `quotas` ([`SqlStore::with_quotas`]): on
/// PostgreSQL it also follows the changes other processes announce
/// ([`CachedStore::following`]). This is the store an embedder opens on
/// the database of a running `keysd serve`: changes made through keysd
/// reach its lookups within a second.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// # let database = keys_testkit::TestDb::sqlite();
/// use keys_core::Quotas;
/// use keys_store::{CacheConfig, Management};
///
/// let store = keys_store::open_cached(database.url(), CacheConfig::default(), Quotas::default()).await.unwrap();
/// store.ping().await.unwrap();
/// assert!(keys_store::open_cached("mysql://nope", CacheConfig::default(), Quotas::default()).await.is_err());
/// # });
/// ```
pub async fn open_cached(url: &str, config: CacheConfig, quotas: Quotas) -> StoreResult<Arc<dyn Store>> {
    open_cached_with(url, config, quotas, Migrations::Apply).await
}

/// Like [`open_cached`], applying the pending migrations or refusing to
/// open while one is pending, as `migrations` says (`serve --migrate`).
pub async fn open_cached_with(
    url: &str,
    config: CacheConfig,
    quotas: Quotas,
    migrations: Migrations,
) -> StoreResult<Arc<dyn Store>> {
    if is_postgres(url) {
        let store = PgStore::connect_with_migrations(url, migrations).await?;
        Ok(Arc::new(CachedStore::following(store.with_quotas(quotas), config).await?))
    } else if is_sqlite(url) {
        Ok(Arc::new(
            CachedStore::new(SqliteStore::open_with(url, migrations).await?.with_quotas(quotas), config).sole_writer(),
        ))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Applies the pending migrations of the database `url` names and reports
/// its schema (`keysd migrate`); refuses, as every open does, a schema that
/// needs a newer binary.
pub async fn migrate(url: &str) -> StoreResult<SchemaStatus> {
    if is_postgres(url) {
        Ok(PgStore::connect(url).await?.schema())
    } else if is_sqlite(url) {
        Ok(SqliteStore::open(url).await?.schema())
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// The schema this binary writes and serves.
pub fn schema_support() -> SchemaSupport {
    SchemaSupport {
        version: schema::known(sqlite::migrator()).iter().map(|migration| migration.version).max().unwrap_or(0),
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}
