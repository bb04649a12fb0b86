//! The statements: one [`Repo`] trait of single-statement operations, and
//! one SQL text for both backends.
//!
//! The SQL is written once, in [`sql_repo!`], and expanded in each backend
//! module. Both databases accept `$1`-style parameters, and the few places
//! where they differ (how a timestamp or a list of domains is bound, how a
//! row is locked) are functions and a literal that each backend module
//! provides. The orchestration that calls these operations (load, apply the
//! domain transition, write, audit) lives in [`crate::engine`] and knows
//! neither backend.

use async_trait::async_trait;
use keys_core::{
    ApiKey, ApiKeyId, CoreError, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Page,
    Pagination, PublicKey, PublicKeyId, SecretDigest, ServiceTokenRecord, SigningKeyUid, Workspace,
    WorkspaceSigningKey, WorkspaceUid,
};

use crate::{AuditEvent, StoreError, StoreResult};

/// A uniqueness rule of the schema that stands in for a domain rule.
/// Backends recognise them by constraint or index name (PostgreSQL) or by
/// the columns the error names (SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// `organisations_name_key`.
    OrganisationName,
    /// `workspaces_organisation_slug_key`.
    WorkspaceSlug,
    /// `workspace_signing_keys_one_active`.
    ActiveSigningKey,
    /// `public_keys_one_default`.
    DefaultPublicKey,
}

impl Constraint {
    /// The refusal the domain gives for the rule this constraint enforces.
    /// `subject` is the organisation name or the slug being written.
    pub fn refusal(self, subject: &str) -> Option<CoreError> {
        match self {
            Self::OrganisationName => Some(CoreError::OrganisationNameTaken(subject.to_owned())),
            Self::WorkspaceSlug => Some(CoreError::SlugTaken(subject.to_owned())),
            Self::ActiveSigningKey => Some(CoreError::OnlyOneActiveSigningKey),
            // The domain has no refusal for this: the workspace lock makes
            // it unreachable, so seeing it is a fault, not a client error.
            Self::DefaultPublicKey => None,
        }
    }
}

/// Maps a failed write: a violated uniqueness rule that stands for a domain
/// rule becomes that refusal, anything else a database error.
pub fn write_error(error: sqlx::Error, violated: Option<Constraint>, subject: &str) -> StoreError {
    match violated.and_then(|constraint| constraint.refusal(subject)) {
        Some(refusal) => StoreError::Refused(refusal),
        None => StoreError::Database(error.to_string()),
    }
}

/// The single-statement operations of the store, run on one connection
/// (inside a transaction for writes). Lookups return `Ok(None)` for what
/// does not exist; `lock_*` lookups also lock the row (PostgreSQL) until the
/// transaction ends so that concurrent writers of one aggregate serialize.
#[async_trait]
pub trait Repo: Send {
    async fn organisation(&mut self, id: &OrganisationId) -> StoreResult<Option<Organisation>>;
    async fn lock_organisation(&mut self, id: &OrganisationId) -> StoreResult<Option<Organisation>>;
    async fn organisation_by_name(&mut self, name: &str) -> StoreResult<Option<Organisation>>;
    async fn count_organisations(&mut self) -> StoreResult<u64>;
    async fn service_token_by_digest(&mut self, digest: &SecretDigest) -> StoreResult<Option<ServiceTokenRecord>>;

    async fn workspace(&mut self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>>;
    async fn lock_workspace(&mut self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>>;
    async fn workspace_by_slug(&mut self, organisation: &OrganisationId, slug: &str) -> StoreResult<Option<Workspace>>;
    async fn list_workspaces(
        &mut self,
        organisation: &OrganisationId,
        page: Pagination,
    ) -> StoreResult<Page<Workspace>>;

    async fn api_key(&mut self, workspace: &WorkspaceUid, id: &ApiKeyId) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(
        &mut self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<ApiKey>>;
    async fn api_key_by_digest(&mut self, digest: &SecretDigest) -> StoreResult<Option<(ApiKey, Workspace)>>;

    async fn live_public_keys(&mut self, workspace: &WorkspaceUid) -> StoreResult<Vec<PublicKey>>;
    async fn public_key(&mut self, workspace: &WorkspaceUid, id: &PublicKeyId) -> StoreResult<Option<PublicKey>>;
    async fn list_public_keys(
        &mut self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<PublicKey>>;
    async fn public_key_by_value(&mut self, value: &str) -> StoreResult<Option<(PublicKey, Workspace)>>;

    async fn live_signing_keys(&mut self, workspace: &WorkspaceUid) -> StoreResult<Vec<WorkspaceSigningKey>>;
    async fn list_signing_keys(
        &mut self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<WorkspaceSigningKey>>;
    async fn signing_key_by_uid(&mut self, uid: &SigningKeyUid) -> StoreResult<Option<WorkspaceSigningKey>>;

    async fn organisation_key(&mut self, id: &OrganisationKeyId) -> StoreResult<Option<OrganisationSigningKey>>;
    async fn list_organisation_keys(
        &mut self,
        organisation: &OrganisationId,
    ) -> StoreResult<Vec<OrganisationSigningKey>>;

    async fn audit_events(&mut self, organisation: &OrganisationId, limit: u32) -> StoreResult<Vec<AuditEvent>>;

    async fn insert_organisation(&mut self, organisation: &Organisation) -> StoreResult<()>;
    async fn insert_service_token(&mut self, token: &ServiceTokenRecord) -> StoreResult<()>;
    async fn insert_workspace(&mut self, workspace: &Workspace) -> StoreResult<()>;
    async fn insert_api_key(&mut self, key: &ApiKey) -> StoreResult<()>;
    /// Writes `deleted_at`/`deleted_by`, the only fields that change.
    async fn update_api_key(&mut self, key: &ApiKey) -> StoreResult<()>;
    async fn insert_public_key(&mut self, key: &PublicKey) -> StoreResult<()>;
    /// Writes every field that a transition may change.
    async fn update_public_key(&mut self, key: &PublicKey) -> StoreResult<()>;
    async fn insert_signing_key(&mut self, key: &WorkspaceSigningKey) -> StoreResult<()>;
    /// Writes every field that a transition may change.
    async fn update_signing_key(&mut self, key: &WorkspaceSigningKey) -> StoreResult<()>;
    async fn insert_organisation_key(&mut self, key: &OrganisationSigningKey) -> StoreResult<()>;
    /// Writes `deleted_at`/`deleted_by`, the only fields that change.
    async fn update_organisation_key(&mut self, key: &OrganisationSigningKey) -> StoreResult<()>;
    async fn insert_audit_event(&mut self, event: &AuditEvent) -> StoreResult<()>;
}

/// A [`Repo`] inside a write transaction. Dropping it without `commit`
/// rolls the transaction back.
#[async_trait]
pub trait Writer: Repo + Sized {
    /// Serializes bootstrap attempts across processes until the transaction
    /// ends (PostgreSQL: an advisory lock; SQLite: the write transaction
    /// already excludes every other writer).
    async fn lock_bootstrap(&mut self) -> StoreResult<()>;
    /// Announces what this transaction changes to every other process on
    /// the database, delivered only if (and when) it commits. PostgreSQL:
    /// `pg_notify` on [`crate::CHANGES_CHANNEL`]. SQLite has no such
    /// channel: there, other processes' caches rely on their time to live.
    async fn announce(&mut self, change: &crate::Change) -> StoreResult<()>;
    async fn commit(self) -> StoreResult<()>;
}

/// Checks that an `UPDATE` found its row: every update runs after the row
/// was read (and locked) in the same transaction, so a miss is a fault.
pub fn expect_one_row(rows_affected: u64, table: &str) -> StoreResult<()> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::Database(format!("update of {table} touched {rows_affected} rows instead of 1")))
    }
}

/// A `LIMIT`/`OFFSET` pair as the databases take them. `Pagination` keeps
/// the offset within `i64`.
pub fn limit_offset(page: Pagination) -> (i64, i64) {
    (i64::from(page.limit()), i64::try_from(page.offset()).unwrap_or(i64::MAX))
}

/// The columns every query selects, per table.
macro_rules! organisation_columns {
    () => {
        "id, name, created_at"
    };
}
macro_rules! service_token_columns {
    () => {
        "id, organisation_id, name, digest, actor_name, actor_email, created_at, revoked_at"
    };
}
macro_rules! workspace_columns {
    () => {
        "uid, organisation_id, slug, name, description, mode, created_at, created_by_name, created_by_email"
    };
}
/// The workspace of a join, every column prefixed with `w_`.
macro_rules! joined_workspace_columns {
    () => {
        "w.uid AS w_uid, w.organisation_id AS w_organisation_id, w.slug AS w_slug, w.name AS w_name, \
         w.description AS w_description, w.mode AS w_mode, w.created_at AS w_created_at, \
         w.created_by_name AS w_created_by_name, w.created_by_email AS w_created_by_email"
    };
}
macro_rules! api_key_columns {
    ($table:literal) => {
        concat!(
            $table,
            "id, ",
            $table,
            "workspace_uid, ",
            $table,
            "name, ",
            $table,
            "description, ",
            $table,
            "digest, ",
            $table,
            "masked_api_key, ",
            $table,
            "created_at, ",
            $table,
            "created_by_name, ",
            $table,
            "created_by_email, ",
            $table,
            "deleted_at, ",
            $table,
            "deleted_by_name, ",
            $table,
            "deleted_by_email"
        )
    };
}
macro_rules! public_key_columns {
    ($table:literal) => {
        concat!(
            $table,
            "id, ",
            $table,
            "workspace_uid, ",
            $table,
            "value, ",
            $table,
            "name, ",
            $table,
            "description, ",
            $table,
            "allowed_domains, ",
            $table,
            "is_secure_mode_enabled, ",
            $table,
            "is_default, ",
            $table,
            "created_at, ",
            $table,
            "created_by_name, ",
            $table,
            "created_by_email, ",
            $table,
            "rotated_at, ",
            $table,
            "rotated_by_name, ",
            $table,
            "rotated_by_email, ",
            $table,
            "updated_at, ",
            $table,
            "updated_by_name, ",
            $table,
            "updated_by_email, ",
            $table,
            "deleted_at, ",
            $table,
            "deleted_by_name, ",
            $table,
            "deleted_by_email"
        )
    };
}
macro_rules! signing_key_columns {
    () => {
        "id, uid, workspace_uid, public_key_pem, status, allowed_domains, expiry_at, created_at, \
         created_by_name, created_by_email, rolled_at, rolled_by_name, rolled_by_email, deleted_at, \
         deleted_by_name, deleted_by_email"
    };
}
macro_rules! organisation_key_columns {
    () => {
        "id, organisation_id, name, public_key_pem, created_at, created_by_name, created_by_email, deleted_at, \
         deleted_by_name, deleted_by_email"
    };
}

/// Implements [`Repo`] for `$repo<C>` (a newtype over something that
/// dereferences to the backend's connection: a pooled connection or a
/// transaction).
///
/// The expansion site must provide, in scope:
/// - `encode_time(OffsetDateTime)` and `encode_optional_time(Option<OffsetDateTime>)`:
///   the bindable form of a timestamp;
/// - `encode_domains(&Option<Vec<DomainPattern>>)`: the bindable form of
///   `allowed_domains`;
/// - `database_error(sqlx::Error) -> StoreError` and
///   `violated(&sqlx::Error) -> Option<Constraint>`;
/// - a row type implementing [`crate::rows::RowExt`] (what the connection yields).
///
/// `$row_lock` is appended to the `lock_*` lookups (`" FOR NO KEY UPDATE"`
/// on PostgreSQL; `""` on SQLite, where `BEGIN IMMEDIATE` already excludes
/// every other writer).
macro_rules! sql_repo {
    ($repo:ident, $connection:ty, $row_lock:literal) => {
        #[async_trait::async_trait]
        impl<C> $crate::repo::Repo for $repo<C>
        where
            C: std::ops::DerefMut<Target = $connection> + Send,
        {
            async fn organisation(
                &mut self,
                id: &keys_core::OrganisationId,
            ) -> $crate::StoreResult<Option<keys_core::Organisation>> {
                sqlx::query(concat!("SELECT ", organisation_columns!(), " FROM organisations WHERE id = $1"))
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(database_error)?
                    .map(|row| $crate::rows::organisation(&row))
                    .transpose()
            }

            async fn lock_organisation(
                &mut self,
                id: &keys_core::OrganisationId,
            ) -> $crate::StoreResult<Option<keys_core::Organisation>> {
                sqlx::query(concat!(
                    "SELECT ",
                    organisation_columns!(),
                    " FROM organisations WHERE id = $1",
                    $row_lock
                ))
                .bind(id.as_str())
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?
                .map(|row| $crate::rows::organisation(&row))
                .transpose()
            }

            async fn organisation_by_name(
                &mut self,
                name: &str,
            ) -> $crate::StoreResult<Option<keys_core::Organisation>> {
                sqlx::query(concat!("SELECT ", organisation_columns!(), " FROM organisations WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(database_error)?
                    .map(|row| $crate::rows::organisation(&row))
                    .transpose()
            }

            async fn count_organisations(&mut self) -> $crate::StoreResult<u64> {
                let row = sqlx::query("SELECT COUNT(*) AS total FROM organisations")
                    .fetch_one(&mut *self.0)
                    .await
                    .map_err(database_error)?;
                $crate::rows::count(&row)
            }

            async fn service_token_by_digest(
                &mut self,
                digest: &keys_core::SecretDigest,
            ) -> $crate::StoreResult<Option<keys_core::ServiceTokenRecord>> {
                sqlx::query(concat!(
                    "SELECT ",
                    service_token_columns!(),
                    " FROM service_tokens WHERE digest = $1 AND revoked_at IS NULL"
                ))
                .bind(&digest.as_bytes()[..])
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?
                .map(|row| $crate::rows::service_token(&row))
                .transpose()
            }

            async fn workspace(
                &mut self,
                uid: &keys_core::WorkspaceUid,
            ) -> $crate::StoreResult<Option<keys_core::Workspace>> {
                sqlx::query(concat!("SELECT ", workspace_columns!(), " FROM workspaces WHERE uid = $1"))
                    .bind(uid.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(database_error)?
                    .map(|row| $crate::rows::workspace(&row, ""))
                    .transpose()
            }

            async fn lock_workspace(
                &mut self,
                uid: &keys_core::WorkspaceUid,
            ) -> $crate::StoreResult<Option<keys_core::Workspace>> {
                sqlx::query(concat!("SELECT ", workspace_columns!(), " FROM workspaces WHERE uid = $1", $row_lock))
                    .bind(uid.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(database_error)?
                    .map(|row| $crate::rows::workspace(&row, ""))
                    .transpose()
            }

            async fn workspace_by_slug(
                &mut self,
                organisation: &keys_core::OrganisationId,
                slug: &str,
            ) -> $crate::StoreResult<Option<keys_core::Workspace>> {
                sqlx::query(concat!(
                    "SELECT ",
                    workspace_columns!(),
                    " FROM workspaces WHERE organisation_id = $1 AND slug = $2"
                ))
                .bind(organisation.as_str())
                .bind(slug)
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?
                .map(|row| $crate::rows::workspace(&row, ""))
                .transpose()
            }

            async fn list_workspaces(
                &mut self,
                organisation: &keys_core::OrganisationId,
                page: keys_core::Pagination,
            ) -> $crate::StoreResult<keys_core::Page<keys_core::Workspace>> {
                let (limit, offset) = $crate::repo::limit_offset(page);
                let total = sqlx::query("SELECT COUNT(*) AS total FROM workspaces WHERE organisation_id = $1")
                    .bind(organisation.as_str())
                    .fetch_one(&mut *self.0)
                    .await
                    .map_err(database_error)?;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    workspace_columns!(),
                    " FROM workspaces WHERE organisation_id = $1 ORDER BY created_at DESC, uid DESC LIMIT $2 OFFSET $3"
                ))
                .bind(organisation.as_str())
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(keys_core::Page {
                    items: rows.iter().map(|row| $crate::rows::workspace(row, "")).collect::<Result<_, _>>()?,
                    total: $crate::rows::count(&total)?,
                    pagination: page,
                })
            }

            async fn api_key(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
                id: &keys_core::ApiKeyId,
            ) -> $crate::StoreResult<Option<keys_core::ApiKey>> {
                sqlx::query(concat!(
                    "SELECT ",
                    api_key_columns!(""),
                    " FROM api_keys WHERE id = $1 AND workspace_uid = $2"
                ))
                .bind(id.as_str())
                .bind(workspace.as_str())
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?
                .map(|row| $crate::rows::api_key(&row))
                .transpose()
            }

            async fn list_api_keys(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
                page: keys_core::Pagination,
                include_deleted: bool,
            ) -> $crate::StoreResult<keys_core::Page<keys_core::ApiKey>> {
                let (limit, offset) = $crate::repo::limit_offset(page);
                let total = sqlx::query(
                    "SELECT COUNT(*) AS total FROM api_keys WHERE workspace_uid = $1 AND ($2 OR deleted_at IS NULL)",
                )
                .bind(workspace.as_str())
                .bind(include_deleted)
                .fetch_one(&mut *self.0)
                .await
                .map_err(database_error)?;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    api_key_columns!(""),
                    " FROM api_keys WHERE workspace_uid = $1 AND ($2 OR deleted_at IS NULL) \
                     ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(workspace.as_str())
                .bind(include_deleted)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(keys_core::Page {
                    items: rows.iter().map($crate::rows::api_key).collect::<Result<_, _>>()?,
                    total: $crate::rows::count(&total)?,
                    pagination: page,
                })
            }

            async fn api_key_by_digest(
                &mut self,
                digest: &keys_core::SecretDigest,
            ) -> $crate::StoreResult<Option<(keys_core::ApiKey, keys_core::Workspace)>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    api_key_columns!("k."),
                    ", ",
                    joined_workspace_columns!(),
                    " FROM api_keys k JOIN workspaces w ON w.uid = k.workspace_uid WHERE k.digest = $1"
                ))
                .bind(&digest.as_bytes()[..])
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?;
                row.map(|row| Ok(($crate::rows::api_key(&row)?, $crate::rows::workspace(&row, "w_")?)))
                    .transpose()
            }

            async fn live_public_keys(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
            ) -> $crate::StoreResult<Vec<keys_core::PublicKey>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    public_key_columns!(""),
                    " FROM public_keys WHERE workspace_uid = $1 AND deleted_at IS NULL ORDER BY created_at, id"
                ))
                .bind(workspace.as_str())
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                rows.iter().map($crate::rows::public_key).collect()
            }

            async fn public_key(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
                id: &keys_core::PublicKeyId,
            ) -> $crate::StoreResult<Option<keys_core::PublicKey>> {
                sqlx::query(concat!(
                    "SELECT ",
                    public_key_columns!(""),
                    " FROM public_keys WHERE id = $1 AND workspace_uid = $2"
                ))
                .bind(id.as_str())
                .bind(workspace.as_str())
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?
                .map(|row| $crate::rows::public_key(&row))
                .transpose()
            }

            async fn list_public_keys(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
                page: keys_core::Pagination,
                include_deleted: bool,
            ) -> $crate::StoreResult<keys_core::Page<keys_core::PublicKey>> {
                let (limit, offset) = $crate::repo::limit_offset(page);
                let total = sqlx::query(
                    "SELECT COUNT(*) AS total FROM public_keys WHERE workspace_uid = $1 AND ($2 OR deleted_at IS NULL)",
                )
                .bind(workspace.as_str())
                .bind(include_deleted)
                .fetch_one(&mut *self.0)
                .await
                .map_err(database_error)?;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    public_key_columns!(""),
                    " FROM public_keys WHERE workspace_uid = $1 AND ($2 OR deleted_at IS NULL) \
                     ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(workspace.as_str())
                .bind(include_deleted)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(keys_core::Page {
                    items: rows.iter().map($crate::rows::public_key).collect::<Result<_, _>>()?,
                    total: $crate::rows::count(&total)?,
                    pagination: page,
                })
            }

            async fn public_key_by_value(
                &mut self,
                value: &str,
            ) -> $crate::StoreResult<Option<(keys_core::PublicKey, keys_core::Workspace)>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    public_key_columns!("k."),
                    ", ",
                    joined_workspace_columns!(),
                    " FROM public_keys k JOIN workspaces w ON w.uid = k.workspace_uid WHERE k.value = $1"
                ))
                .bind(value)
                .fetch_optional(&mut *self.0)
                .await
                .map_err(database_error)?;
                row.map(|row| Ok(($crate::rows::public_key(&row)?, $crate::rows::workspace(&row, "w_")?)))
                    .transpose()
            }

            async fn live_signing_keys(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
            ) -> $crate::StoreResult<Vec<keys_core::WorkspaceSigningKey>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    signing_key_columns!(),
                    " FROM workspace_signing_keys WHERE workspace_uid = $1 AND deleted_at IS NULL \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(workspace.as_str())
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                rows.iter().map($crate::rows::signing_key).collect()
            }

            async fn list_signing_keys(
                &mut self,
                workspace: &keys_core::WorkspaceUid,
                page: keys_core::Pagination,
                include_deleted: bool,
            ) -> $crate::StoreResult<keys_core::Page<keys_core::WorkspaceSigningKey>> {
                let (limit, offset) = $crate::repo::limit_offset(page);
                let total = sqlx::query(
                    "SELECT COUNT(*) AS total FROM workspace_signing_keys \
                     WHERE workspace_uid = $1 AND ($2 OR deleted_at IS NULL)",
                )
                .bind(workspace.as_str())
                .bind(include_deleted)
                .fetch_one(&mut *self.0)
                .await
                .map_err(database_error)?;
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    signing_key_columns!(),
                    " FROM workspace_signing_keys WHERE workspace_uid = $1 AND ($2 OR deleted_at IS NULL) \
                     ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(workspace.as_str())
                .bind(include_deleted)
                .bind(limit)
                .bind(offset)
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(keys_core::Page {
                    items: rows.iter().map($crate::rows::signing_key).collect::<Result<_, _>>()?,
                    total: $crate::rows::count(&total)?,
                    pagination: page,
                })
            }

            async fn signing_key_by_uid(
                &mut self,
                uid: &keys_core::SigningKeyUid,
            ) -> $crate::StoreResult<Option<keys_core::WorkspaceSigningKey>> {
                sqlx::query(concat!("SELECT ", signing_key_columns!(), " FROM workspace_signing_keys WHERE uid = $1"))
                    .bind(uid.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(database_error)?
                    .map(|row| $crate::rows::signing_key(&row))
                    .transpose()
            }

            async fn organisation_key(
                &mut self,
                id: &keys_core::OrganisationKeyId,
            ) -> $crate::StoreResult<Option<keys_core::OrganisationSigningKey>> {
                sqlx::query(concat!("SELECT ", organisation_key_columns!(), " FROM organisation_keys WHERE id = $1"))
                    .bind(id.as_str())
                    .fetch_optional(&mut *self.0)
                    .await
                    .map_err(database_error)?
                    .map(|row| $crate::rows::organisation_key(&row))
                    .transpose()
            }

            async fn list_organisation_keys(
                &mut self,
                organisation: &keys_core::OrganisationId,
            ) -> $crate::StoreResult<Vec<keys_core::OrganisationSigningKey>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    organisation_key_columns!(),
                    " FROM organisation_keys WHERE organisation_id = $1 AND deleted_at IS NULL \
                     ORDER BY created_at DESC, id DESC"
                ))
                .bind(organisation.as_str())
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                rows.iter().map($crate::rows::organisation_key).collect()
            }

            async fn audit_events(
                &mut self,
                organisation: &keys_core::OrganisationId,
                limit: u32,
            ) -> $crate::StoreResult<Vec<$crate::AuditEvent>> {
                let rows = sqlx::query(
                    "SELECT organisation_id, workspace_uid, actor_name, actor_email, action, target_id, at \
                     FROM audit_events WHERE organisation_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
                )
                .bind(organisation.as_str())
                .bind(i64::from(limit))
                .fetch_all(&mut *self.0)
                .await
                .map_err(database_error)?;
                rows.iter().map($crate::rows::audit_event).collect()
            }

            async fn insert_organisation(&mut self, organisation: &keys_core::Organisation) -> $crate::StoreResult<()> {
                sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(organisation.id.as_str())
                    .bind(organisation.name.as_str())
                    .bind(encode_time(organisation.created_at))
                    .execute(&mut *self.0)
                    .await
                    .map_err(|error| {
                        let violated = violated(&error);
                        $crate::repo::write_error(error, violated, organisation.name.as_str())
                    })?;
                Ok(())
            }

            async fn insert_service_token(&mut self, token: &keys_core::ServiceTokenRecord) -> $crate::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO service_tokens \
                     (id, organisation_id, name, digest, actor_name, actor_email, created_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(token.id.as_str())
                .bind(token.organisation_id.as_str())
                .bind(token.name.as_str())
                .bind(&token.digest.as_bytes()[..])
                .bind(token.actor.name())
                .bind(token.actor.email())
                .bind(encode_time(token.created_at))
                .bind(encode_optional_time(token.revoked_at))
                .execute(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(())
            }

            async fn insert_workspace(&mut self, workspace: &keys_core::Workspace) -> $crate::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO workspaces \
                     (uid, organisation_id, slug, name, description, mode, created_at, created_by_name, created_by_email) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(workspace.uid.as_str())
                .bind(workspace.organisation_id.as_str())
                .bind(workspace.slug.as_str())
                .bind(workspace.name.as_str())
                .bind(workspace.description.as_ref().map(keys_core::Description::as_str))
                .bind(workspace.mode.as_str())
                .bind(encode_time(workspace.created_at))
                .bind(workspace.created_by.as_ref().map(keys_core::Actor::name))
                .bind(workspace.created_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(|error| {
                    let violated = violated(&error);
                    $crate::repo::write_error(error, violated, workspace.slug.as_str())
                })?;
                Ok(())
            }

            async fn insert_api_key(&mut self, key: &keys_core::ApiKey) -> $crate::StoreResult<()> {
                sqlx::query(concat!(
                    "INSERT INTO api_keys (",
                    api_key_columns!(""),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(key.id.as_str())
                .bind(key.workspace.as_str())
                .bind(key.name.as_str())
                .bind(key.description.as_ref().map(keys_core::Description::as_str))
                .bind(&key.digest.as_bytes()[..])
                .bind(key.masked_api_key.as_str())
                .bind(encode_time(key.created_at))
                .bind(key.created_by.as_ref().map(keys_core::Actor::name))
                .bind(key.created_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(())
            }

            async fn update_api_key(&mut self, key: &keys_core::ApiKey) -> $crate::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE api_keys SET deleted_at = $2, deleted_by_name = $3, deleted_by_email = $4 WHERE id = $1",
                )
                .bind(key.id.as_str())
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(database_error)?;
                $crate::repo::expect_one_row(done.rows_affected(), "api_keys")
            }

            async fn insert_public_key(&mut self, key: &keys_core::PublicKey) -> $crate::StoreResult<()> {
                sqlx::query(concat!(
                    "INSERT INTO public_keys (",
                    public_key_columns!(""),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                     $19, $20)"
                ))
                .bind(key.id.as_str())
                .bind(key.workspace.as_str())
                .bind(key.api_key.as_str())
                .bind(key.name.as_str())
                .bind(key.description.as_ref().map(keys_core::Description::as_str))
                .bind(encode_domains(&key.allowed_domains))
                .bind(key.is_secure_mode_enabled)
                .bind(key.is_default)
                .bind(encode_time(key.created_at))
                .bind(key.created_by.as_ref().map(keys_core::Actor::name))
                .bind(key.created_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.rotated_at))
                .bind(key.rotated_by.as_ref().map(keys_core::Actor::name))
                .bind(key.rotated_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_time(key.updated_at))
                .bind(key.updated_by.as_ref().map(keys_core::Actor::name))
                .bind(key.updated_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(|error| {
                    let violated = violated(&error);
                    $crate::repo::write_error(error, violated, "")
                })?;
                Ok(())
            }

            async fn update_public_key(&mut self, key: &keys_core::PublicKey) -> $crate::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE public_keys SET value = $2, name = $3, description = $4, allowed_domains = $5, \
                     is_secure_mode_enabled = $6, is_default = $7, rotated_at = $8, rotated_by_name = $9, \
                     rotated_by_email = $10, updated_at = $11, updated_by_name = $12, updated_by_email = $13, \
                     deleted_at = $14, deleted_by_name = $15, deleted_by_email = $16 WHERE id = $1",
                )
                .bind(key.id.as_str())
                .bind(key.api_key.as_str())
                .bind(key.name.as_str())
                .bind(key.description.as_ref().map(keys_core::Description::as_str))
                .bind(encode_domains(&key.allowed_domains))
                .bind(key.is_secure_mode_enabled)
                .bind(key.is_default)
                .bind(encode_optional_time(key.rotated_at))
                .bind(key.rotated_by.as_ref().map(keys_core::Actor::name))
                .bind(key.rotated_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_time(key.updated_at))
                .bind(key.updated_by.as_ref().map(keys_core::Actor::name))
                .bind(key.updated_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(|error| {
                    let violated = violated(&error);
                    $crate::repo::write_error(error, violated, "")
                })?;
                $crate::repo::expect_one_row(done.rows_affected(), "public_keys")
            }

            async fn insert_signing_key(&mut self, key: &keys_core::WorkspaceSigningKey) -> $crate::StoreResult<()> {
                sqlx::query(concat!(
                    "INSERT INTO workspace_signing_keys (",
                    signing_key_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                ))
                .bind(key.id.as_str())
                .bind(key.uid.as_str())
                .bind(key.workspace.as_str())
                .bind(key.public_key_pem.as_str())
                .bind(key.status.as_str())
                .bind(encode_domains(&key.allowed_domains))
                .bind(encode_optional_time(key.expiry_at))
                .bind(encode_time(key.created_at))
                .bind(key.created_by.as_ref().map(keys_core::Actor::name))
                .bind(key.created_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.rolled_at))
                .bind(key.rolled_by.as_ref().map(keys_core::Actor::name))
                .bind(key.rolled_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(|error| {
                    let violated = violated(&error);
                    $crate::repo::write_error(error, violated, "")
                })?;
                Ok(())
            }

            async fn update_signing_key(&mut self, key: &keys_core::WorkspaceSigningKey) -> $crate::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE workspace_signing_keys SET status = $2, allowed_domains = $3, expiry_at = $4, \
                     rolled_at = $5, rolled_by_name = $6, rolled_by_email = $7, deleted_at = $8, \
                     deleted_by_name = $9, deleted_by_email = $10 WHERE id = $1",
                )
                .bind(key.id.as_str())
                .bind(key.status.as_str())
                .bind(encode_domains(&key.allowed_domains))
                .bind(encode_optional_time(key.expiry_at))
                .bind(encode_optional_time(key.rolled_at))
                .bind(key.rolled_by.as_ref().map(keys_core::Actor::name))
                .bind(key.rolled_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(|error| {
                    let violated = violated(&error);
                    $crate::repo::write_error(error, violated, "")
                })?;
                $crate::repo::expect_one_row(done.rows_affected(), "workspace_signing_keys")
            }

            async fn insert_organisation_key(
                &mut self,
                key: &keys_core::OrganisationSigningKey,
            ) -> $crate::StoreResult<()> {
                sqlx::query(concat!(
                    "INSERT INTO organisation_keys (",
                    organisation_key_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ))
                .bind(key.id.as_str())
                .bind(key.organisation_id.as_str())
                .bind(key.name.as_str())
                .bind(key.public_key_pem.as_str())
                .bind(encode_time(key.created_at))
                .bind(key.created_by.as_ref().map(keys_core::Actor::name))
                .bind(key.created_by.as_ref().map(keys_core::Actor::email))
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(())
            }

            async fn update_organisation_key(
                &mut self,
                key: &keys_core::OrganisationSigningKey,
            ) -> $crate::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE organisation_keys SET deleted_at = $2, deleted_by_name = $3, deleted_by_email = $4 \
                     WHERE id = $1",
                )
                .bind(key.id.as_str())
                .bind(encode_optional_time(key.deleted_at))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::name))
                .bind(key.deleted_by.as_ref().map(keys_core::Actor::email))
                .execute(&mut *self.0)
                .await
                .map_err(database_error)?;
                $crate::repo::expect_one_row(done.rows_affected(), "organisation_keys")
            }

            async fn insert_audit_event(&mut self, event: &$crate::AuditEvent) -> $crate::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO audit_events \
                     (organisation_id, workspace_uid, actor_name, actor_email, action, target_id, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(event.organisation_id.as_str())
                .bind(event.workspace.as_ref().map(keys_core::WorkspaceUid::as_str))
                .bind(event.actor.as_ref().map(keys_core::Actor::name))
                .bind(event.actor.as_ref().map(keys_core::Actor::email))
                .bind(event.action.as_str())
                .bind(event.target_id.as_str())
                .bind(encode_time(event.at))
                .execute(&mut *self.0)
                .await
                .map_err(database_error)?;
                Ok(())
            }
        }
    };
}
