//! keys-store: where keysd keeps its state.
//!
//! One async trait, [`Store`], and two implementations: [`PgStore`]
//! (PostgreSQL, production) and [`SqliteStore`] (an embedded SQLite file,
//! the zero-setup default). Every mutation runs in one transaction that loads
//! what the keys-core transition needs, applies the transition, writes the
//! result and an audit event; the schema enforces the same invariants again
//! (partial unique indexes, unique digests, foreign keys), so two processes on
//! one database cannot break them.
//!
//! [`CachedStore`] wraps any store and serves the lookups of verification
//! and authentication from memory; every mutation announces its [`Change`]
//! (PostgreSQL `NOTIFY`) so the caches of other processes stay fresh.
//!
//! **Architecture invariant:** this is the only crate that knows SQL. It
//! never sees a secret: only digests (API keys, service tokens) and public
//! keys reach it.

use std::sync::Arc;

// `repo` first: its macros are used by the backend modules.
#[macro_use]
mod repo;
mod cache;
mod change;
mod engine;
mod postgres;
mod rows;
mod sqlite;
#[cfg(test)]
mod tests;

pub use cache::{CacheConfig, CachedStore};
pub use change::{Change, CHANGES_CHANNEL};
pub use engine::SqlStore;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use keys_core::{
    Actor, ApiKey, ApiKeyId, CoreError, GracePeriod, NewSigningKey, Organisation, OrganisationId, OrganisationKeyId,
    OrganisationSigningKey, Page, Pagination, PublicKey, PublicKeyId, PublicKeyPatch, SecretDigest, ServiceTokenRecord,
    SigningKeyUid, Workspace, WorkspaceSigningKey, WorkspaceUid,
};
use time::OffsetDateTime;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The domain (or a database constraint standing in for it) refused the
    /// change; nothing was written. A client error.
    #[error(transparent)]
    Refused(#[from] CoreError),
    /// The database could not be reached or answered with an error that is
    /// not the client's doing. The text is for logs, never for clients.
    #[error("database error: {0}")]
    Database(String),
    /// The database URL is not one this crate understands.
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A change to one public key.
#[derive(Debug, Clone)]
pub enum PublicKeyChange {
    Patch(PublicKeyPatch),
    /// New material (`SS.PUBK.` value) for the same record.
    Rotate(String),
}

/// The first state of an empty database: an organisation, its workspaces
/// and one service token (digest only).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub organisation: Organisation,
    pub workspaces: Vec<Workspace>,
    pub token: ServiceTokenRecord,
}

/// One entry of the audit trail. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub organisation_id: OrganisationId,
    pub workspace: Option<WorkspaceUid>,
    pub actor: Option<Actor>,
    /// e.g. `api_key.create`, `signing_key.roll`.
    pub action: String,
    pub target_id: String,
    pub at: OffsetDateTime,
}

/// Everything keysd keeps. Lists are newest first with a total count;
/// lookups return `Ok(None)` for what does not exist; mutations that target
/// something missing (or already deleted) return
/// `Err(StoreError::Refused(CoreError::NotFound { .. }))`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip to the database (readiness).
    async fn ping(&self) -> StoreResult<()>;

    // Organisations and service tokens.

    /// Writes the bootstrap state if, and only if, the database has no
    /// organisation yet; returns whether it did. Safe when several processes
    /// start at once: exactly one bootstraps.
    async fn bootstrap_if_empty(&self, bootstrap: &Bootstrap) -> StoreResult<bool>;
    /// Refused with `OrganisationNameTaken` if the name exists.
    async fn create_organisation(&self, organisation: &Organisation) -> StoreResult<()>;
    async fn organisation(&self, id: &OrganisationId) -> StoreResult<Option<Organisation>>;
    async fn organisation_by_name(&self, name: &str) -> StoreResult<Option<Organisation>>;
    async fn create_service_token(&self, token: &ServiceTokenRecord) -> StoreResult<()>;
    /// The authentication lookup: unrevoked tokens only.
    async fn service_token_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<ServiceTokenRecord>>;
    /// [`Store::service_token_by_digest`] for callers that only read the
    /// record: a caching store hands out the record it holds rather than a
    /// copy. Authentication runs on every request, where copying a record
    /// (a string allocation per field) is a measurable part of the cost.
    async fn shared_service_token_by_digest(
        &self,
        digest: &SecretDigest,
    ) -> StoreResult<Option<Arc<ServiceTokenRecord>>> {
        Ok(self.service_token_by_digest(digest).await?.map(Arc::new))
    }

    // Workspaces.

    /// Refused with `SlugTaken` if the organisation has the slug.
    async fn create_workspace(&self, workspace: &Workspace) -> StoreResult<()>;
    async fn workspace_by_slug(&self, organisation: &OrganisationId, slug: &str) -> StoreResult<Option<Workspace>>;
    async fn workspace_by_uid(&self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>>;
    async fn list_workspaces(&self, organisation: &OrganisationId, page: Pagination) -> StoreResult<Page<Workspace>>;

    // API keys.

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()>;
    async fn delete_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<ApiKey>;
    async fn list_api_keys(
        &self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<ApiKey>>;
    /// The verification path: one index lookup by digest. Deleted keys are
    /// returned too, so the decision can say `key_deleted`.
    async fn api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<(ApiKey, Workspace)>>;
    /// [`Store::api_key_by_digest`], shared rather than copied (see
    /// [`Store::shared_service_token_by_digest`]).
    async fn shared_api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<Arc<(ApiKey, Workspace)>>> {
        Ok(self.api_key_by_digest(digest).await?.map(Arc::new))
    }

    // Public keys.

    /// Creates a key through the workspace's `PublicKeyRing` (the first live
    /// key is the default).
    #[allow(clippy::too_many_arguments)]
    async fn create_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: PublicKeyId,
        value: String,
        name: keys_core::Name,
        description: Option<keys_core::Description>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey>;
    async fn change_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        change: PublicKeyChange,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey>;
    async fn delete_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey>;
    async fn list_public_keys(
        &self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<PublicKey>>;
    /// The verification path: by the `SS.PUBK.` value (unique index).
    async fn public_key_by_value(&self, value: &str) -> StoreResult<Option<(PublicKey, Workspace)>>;

    // Workspace signing keys.

    /// Refused with `OnlyOneActiveSigningKey` while an active key exists,
    /// under any concurrency.
    async fn create_signing_key(
        &self,
        workspace: &WorkspaceUid,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey>;
    /// Returns (the rolled key, the new active key).
    async fn roll_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<(WorkspaceSigningKey, WorkspaceSigningKey)>;
    async fn delete_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey>;
    async fn list_signing_keys(
        &self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<WorkspaceSigningKey>>;
    /// The live (not deleted) keys of a workspace: JWKS and secure mode.
    async fn live_signing_keys(&self, workspace: &WorkspaceUid) -> StoreResult<Vec<WorkspaceSigningKey>>;
    /// By `uid` (the JWT `kid`), deleted keys included.
    async fn signing_key_by_uid(&self, uid: &SigningKeyUid) -> StoreResult<Option<WorkspaceSigningKey>>;

    // Organisation signing keys (Versori dialect).

    async fn create_organisation_key(&self, key: &OrganisationSigningKey) -> StoreResult<()>;
    /// Live keys of the organisation, newest first.
    async fn list_organisation_keys(&self, organisation: &OrganisationId) -> StoreResult<Vec<OrganisationSigningKey>>;
    /// By id, deleted keys included.
    async fn organisation_key(&self, id: &OrganisationKeyId) -> StoreResult<Option<OrganisationSigningKey>>;
    async fn delete_organisation_key(
        &self,
        organisation: &OrganisationId,
        id: &OrganisationKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<OrganisationSigningKey>;

    // Audit.

    /// The newest `limit` audit events of an organisation.
    async fn audit_events(&self, organisation: &OrganisationId, limit: u32) -> StoreResult<Vec<AuditEvent>>;
}

/// Opens the store a URL names (`sqlite://path`, `sqlite::memory:`,
/// `postgres://…`), running its migrations.
pub async fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if is_sqlite(url) {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

/// Like [`open`], behind a [`CachedStore`] for long-running servers: on
/// PostgreSQL it also follows the changes other processes announce
/// ([`CachedStore::following`]).
pub async fn open_cached(url: &str, config: CacheConfig) -> StoreResult<Arc<dyn Store>> {
    if is_postgres(url) {
        Ok(Arc::new(CachedStore::following(PgStore::connect(url).await?, config).await?))
    } else if is_sqlite(url) {
        Ok(Arc::new(CachedStore::new(SqliteStore::open(url).await?, config)))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

fn is_sqlite(url: &str) -> bool {
    url.starts_with("sqlite:")
}
