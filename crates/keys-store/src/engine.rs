//! The [`Store`] implementation, once for both backends: every mutation is
//! one transaction that locks the aggregate it changes, loads what the
//! keys-core transition needs, applies the transition (the domain decides),
//! writes the result and an audit event, and announces its [`Change`] (to
//! other processes, on commit).

use std::fmt;

use async_trait::async_trait;
use keys_core::{
    Actor, ApiKey, ApiKeyId, CoreError, Description, GracePeriod, Name, NewSigningKey, Organisation, OrganisationId,
    OrganisationKeyId, OrganisationSigningKey, Page, Pagination, PublicKey, PublicKeyId, PublicKeyRing, SecretDigest,
    ServiceTokenRecord, SigningKeyRing, SigningKeyUid, Workspace, WorkspaceSigningKey, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::repo::{Repo, Writer};
use crate::{AuditEvent, Bootstrap, Change, PublicKeyChange, Store, StoreResult};

/// What a database brings to [`SqlStore`]: a connection to read on and a
/// write transaction, both speaking [`Repo`].
#[async_trait]
pub trait Backend: sqlx::Database {
    type Reader: Repo;
    type Writer: Writer;

    async fn reader(pool: &sqlx::Pool<Self>) -> StoreResult<Self::Reader>;
    /// A transaction that excludes concurrent writers of what it locks.
    async fn writer(pool: &sqlx::Pool<Self>) -> StoreResult<Self::Writer>;
    async fn ping(pool: &sqlx::Pool<Self>) -> StoreResult<()>;
}

/// A [`Store`] on a SQL database: [`crate::PgStore`] or [`crate::SqliteStore`].
pub struct SqlStore<DB: Backend> {
    pub(crate) pool: sqlx::Pool<DB>,
}

impl<DB: Backend> SqlStore<DB> {
    /// The connection pool, for callers that need the database itself
    /// (tests, operational tooling).
    pub fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl<DB: Backend> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self { pool: self.pool.clone() }
    }
}

impl<DB: Backend> fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore").field("backend", &DB::NAME).field("pool", &self.pool).finish()
    }
}

fn not_found(kind: &'static str) -> CoreError {
    CoreError::NotFound { kind }
}

fn event(
    organisation_id: &OrganisationId,
    workspace: Option<&WorkspaceUid>,
    actor: Option<&Actor>,
    action: &str,
    target_id: &str,
    at: OffsetDateTime,
) -> AuditEvent {
    AuditEvent {
        organisation_id: organisation_id.clone(),
        workspace: workspace.cloned(),
        actor: actor.cloned(),
        action: action.to_owned(),
        target_id: target_id.to_owned(),
        at,
    }
}

/// The writes of `create_organisation`, shared with the bootstrap.
async fn write_organisation(writer: &mut impl Repo, organisation: &Organisation) -> StoreResult<()> {
    if writer.organisation_by_name(organisation.name.as_str()).await?.is_some() {
        return Err(CoreError::OrganisationNameTaken(organisation.name.as_str().to_owned()).into());
    }
    writer.insert_organisation(organisation).await?;
    let id = organisation.id.as_str();
    writer
        .insert_audit_event(&event(&organisation.id, None, None, "organisation.create", id, organisation.created_at))
        .await
}

/// The writes of `create_workspace`, shared with the bootstrap. The caller
/// holds the organisation.
async fn write_workspace(writer: &mut impl Repo, workspace: &Workspace) -> StoreResult<()> {
    if writer.workspace_by_slug(&workspace.organisation_id, workspace.slug.as_str()).await?.is_some() {
        return Err(CoreError::SlugTaken(workspace.slug.as_str().to_owned()).into());
    }
    writer.insert_workspace(workspace).await?;
    writer
        .insert_audit_event(&event(
            &workspace.organisation_id,
            Some(&workspace.uid),
            workspace.created_by.as_ref(),
            "workspace.create",
            workspace.uid.as_str(),
            workspace.created_at,
        ))
        .await
}

/// The writes of `create_service_token`, shared with the bootstrap.
async fn write_service_token(writer: &mut impl Repo, token: &ServiceTokenRecord) -> StoreResult<()> {
    writer.insert_service_token(token).await?;
    writer
        .insert_audit_event(&event(
            &token.organisation_id,
            None,
            Some(&token.actor),
            "service_token.create",
            token.id.as_str(),
            token.created_at,
        ))
        .await
}

/// Locks the workspace a mutation targets: concurrent mutations of one
/// workspace's keys run one after the other.
async fn lock_workspace(writer: &mut impl Repo, uid: &WorkspaceUid) -> StoreResult<Workspace> {
    Ok(writer.lock_workspace(uid).await?.ok_or(not_found("workspace"))?)
}

async fn lock_organisation(writer: &mut impl Repo, id: &OrganisationId) -> StoreResult<Organisation> {
    Ok(writer.lock_organisation(id).await?.ok_or(not_found("organisation"))?)
}

#[async_trait]
impl<DB: Backend> Store for SqlStore<DB> {
    async fn ping(&self) -> StoreResult<()> {
        DB::ping(&self.pool).await
    }

    async fn bootstrap_if_empty(&self, bootstrap: &Bootstrap) -> StoreResult<bool> {
        let mut writer = DB::writer(&self.pool).await?;
        writer.lock_bootstrap().await?;
        if writer.count_organisations().await? > 0 {
            return Ok(false);
        }
        write_organisation(&mut writer, &bootstrap.organisation).await?;
        for workspace in &bootstrap.workspaces {
            write_workspace(&mut writer, workspace).await?;
        }
        write_service_token(&mut writer, &bootstrap.token).await?;
        writer.announce(&Change::Everything).await?;
        writer.commit().await?;
        tracing::info!(organisation = %bootstrap.organisation.id, "bootstrapped an empty database");
        Ok(true)
    }

    async fn create_organisation(&self, organisation: &Organisation) -> StoreResult<()> {
        let mut writer = DB::writer(&self.pool).await?;
        write_organisation(&mut writer, organisation).await?;
        writer.announce(&Change::Organisation(organisation.id.clone())).await?;
        writer.commit().await
    }

    async fn organisation(&self, id: &OrganisationId) -> StoreResult<Option<Organisation>> {
        DB::reader(&self.pool).await?.organisation(id).await
    }

    async fn organisation_by_name(&self, name: &str) -> StoreResult<Option<Organisation>> {
        DB::reader(&self.pool).await?.organisation_by_name(name).await
    }

    async fn create_service_token(&self, token: &ServiceTokenRecord) -> StoreResult<()> {
        let mut writer = DB::writer(&self.pool).await?;
        lock_organisation(&mut writer, &token.organisation_id).await?;
        write_service_token(&mut writer, token).await?;
        writer.announce(&Change::ServiceToken(token.digest)).await?;
        writer.commit().await
    }

    async fn service_token_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<ServiceTokenRecord>> {
        DB::reader(&self.pool).await?.service_token_by_digest(digest).await
    }

    async fn create_workspace(&self, workspace: &Workspace) -> StoreResult<()> {
        let mut writer = DB::writer(&self.pool).await?;
        lock_organisation(&mut writer, &workspace.organisation_id).await?;
        write_workspace(&mut writer, workspace).await?;
        writer.announce(&Change::Workspace(workspace.uid.clone())).await?;
        writer.commit().await
    }

    async fn workspace_by_slug(&self, organisation: &OrganisationId, slug: &str) -> StoreResult<Option<Workspace>> {
        DB::reader(&self.pool).await?.workspace_by_slug(organisation, slug).await
    }

    async fn workspace_by_uid(&self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>> {
        DB::reader(&self.pool).await?.workspace(uid).await
    }

    async fn list_workspaces(&self, organisation: &OrganisationId, page: Pagination) -> StoreResult<Page<Workspace>> {
        DB::reader(&self.pool).await?.list_workspaces(organisation, page).await
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, &key.workspace).await?;
        writer.insert_api_key(key).await?;
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                key.created_by.as_ref(),
                "api_key.create",
                key.id.as_str(),
                key.created_at,
            ))
            .await?;
        writer.announce(&Change::ApiKey(key.digest)).await?;
        writer.commit().await
    }

    async fn delete_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<ApiKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut key =
            writer.api_key(&workspace.uid, id).await?.filter(|key| !key.is_deleted()).ok_or(not_found("api key"))?;
        key.delete(actor, now)?;
        writer.update_api_key(&key).await?;
        let at = key.deleted_at.unwrap_or(now);
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                Some(actor),
                "api_key.delete",
                key.id.as_str(),
                at,
            ))
            .await?;
        writer.announce(&Change::ApiKey(key.digest)).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn list_api_keys(
        &self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<ApiKey>> {
        DB::reader(&self.pool).await?.list_api_keys(workspace, page, include_deleted).await
    }

    async fn api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<(ApiKey, Workspace)>> {
        DB::reader(&self.pool).await?.api_key_by_digest(digest).await
    }

    async fn create_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: PublicKeyId,
        value: String,
        name: Name,
        description: Option<Description>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut ring = PublicKeyRing::restore(writer.live_public_keys(&workspace.uid).await?);
        let key = ring.create(id, workspace.uid.clone(), value, name, description, actor, now).clone();
        writer.insert_public_key(&key).await?;
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                Some(actor),
                "public_key.create",
                key.id.as_str(),
                key.created_at,
            ))
            .await?;
        writer.announce(&Change::PublicKeys(workspace.uid.clone())).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn change_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        change: PublicKeyChange,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut key = writer
            .public_key(&workspace.uid, id)
            .await?
            .filter(|key| !key.is_deleted())
            .ok_or(not_found("public key"))?;
        let action = match change {
            PublicKeyChange::Patch(patch) => {
                key.patch(patch, actor, now)?;
                "public_key.update"
            }
            PublicKeyChange::Rotate(value) => {
                key.rotate(value, actor, now)?;
                "public_key.rotate"
            }
        };
        writer.update_public_key(&key).await?;
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                Some(actor),
                action,
                key.id.as_str(),
                key.updated_at,
            ))
            .await?;
        writer.announce(&Change::PublicKeys(workspace.uid.clone())).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn delete_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut ring = PublicKeyRing::restore(writer.live_public_keys(&workspace.uid).await?);
        let key = ring.delete(id, actor, now)?;
        writer.update_public_key(&key).await?;
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                Some(actor),
                "public_key.delete",
                key.id.as_str(),
                key.updated_at,
            ))
            .await?;
        writer.announce(&Change::PublicKeys(workspace.uid.clone())).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn list_public_keys(
        &self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<PublicKey>> {
        DB::reader(&self.pool).await?.list_public_keys(workspace, page, include_deleted).await
    }

    async fn public_key_by_value(&self, value: &str) -> StoreResult<Option<(PublicKey, Workspace)>> {
        DB::reader(&self.pool).await?.public_key_by_value(value).await
    }

    async fn create_signing_key(
        &self,
        workspace: &WorkspaceUid,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut ring = SigningKeyRing::restore(workspace.uid.clone(), writer.live_signing_keys(&workspace.uid).await?);
        let key = ring.create(new, actor, now)?.clone();
        writer.insert_signing_key(&key).await?;
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                Some(actor),
                "signing_key.create",
                key.uid.as_str(),
                key.created_at,
            ))
            .await?;
        writer.announce(&Change::SigningKeys(workspace.uid.clone())).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn roll_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<(WorkspaceSigningKey, WorkspaceSigningKey)> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut ring = SigningKeyRing::restore(workspace.uid.clone(), writer.live_signing_keys(&workspace.uid).await?);
        let (rolled, fresh) = ring.roll(uid, grace, new, actor, now)?;
        let (rolled, fresh) = (rolled.clone(), fresh.clone());
        // The rolled key leaves the active slot before the new key takes it;
        // the other order would trip the one-active index.
        writer.update_signing_key(&rolled).await?;
        writer.insert_signing_key(&fresh).await?;
        for (action, key) in [("signing_key.roll", &rolled), ("signing_key.create", &fresh)] {
            writer
                .insert_audit_event(&event(
                    &workspace.organisation_id,
                    Some(&workspace.uid),
                    Some(actor),
                    action,
                    key.uid.as_str(),
                    fresh.created_at,
                ))
                .await?;
        }
        writer.announce(&Change::SigningKeys(workspace.uid.clone())).await?;
        writer.commit().await?;
        Ok((rolled, fresh))
    }

    async fn delete_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let workspace = lock_workspace(&mut writer, workspace).await?;
        let mut ring = SigningKeyRing::restore(workspace.uid.clone(), writer.live_signing_keys(&workspace.uid).await?);
        let key = ring.delete(uid, actor, now)?;
        writer.update_signing_key(&key).await?;
        writer
            .insert_audit_event(&event(
                &workspace.organisation_id,
                Some(&workspace.uid),
                Some(actor),
                "signing_key.delete",
                key.uid.as_str(),
                key.deleted_at.unwrap_or(now),
            ))
            .await?;
        writer.announce(&Change::SigningKeys(workspace.uid.clone())).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn list_signing_keys(
        &self,
        workspace: &WorkspaceUid,
        page: Pagination,
        include_deleted: bool,
    ) -> StoreResult<Page<WorkspaceSigningKey>> {
        DB::reader(&self.pool).await?.list_signing_keys(workspace, page, include_deleted).await
    }

    async fn live_signing_keys(&self, workspace: &WorkspaceUid) -> StoreResult<Vec<WorkspaceSigningKey>> {
        DB::reader(&self.pool).await?.live_signing_keys(workspace).await
    }

    async fn signing_key_by_uid(&self, uid: &SigningKeyUid) -> StoreResult<Option<WorkspaceSigningKey>> {
        DB::reader(&self.pool).await?.signing_key_by_uid(uid).await
    }

    async fn create_organisation_key(&self, key: &OrganisationSigningKey) -> StoreResult<()> {
        let mut writer = DB::writer(&self.pool).await?;
        let organisation = lock_organisation(&mut writer, &key.organisation_id).await?;
        writer.insert_organisation_key(key).await?;
        writer
            .insert_audit_event(&event(
                &organisation.id,
                None,
                key.created_by.as_ref(),
                "organisation_key.create",
                key.id.as_str(),
                key.created_at,
            ))
            .await?;
        writer.announce(&Change::OrganisationKey(key.id.clone())).await?;
        writer.commit().await
    }

    async fn list_organisation_keys(&self, organisation: &OrganisationId) -> StoreResult<Vec<OrganisationSigningKey>> {
        DB::reader(&self.pool).await?.list_organisation_keys(organisation).await
    }

    async fn organisation_key(&self, id: &OrganisationKeyId) -> StoreResult<Option<OrganisationSigningKey>> {
        DB::reader(&self.pool).await?.organisation_key(id).await
    }

    async fn delete_organisation_key(
        &self,
        organisation: &OrganisationId,
        id: &OrganisationKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<OrganisationSigningKey> {
        let mut writer = DB::writer(&self.pool).await?;
        let organisation = lock_organisation(&mut writer, organisation).await?;
        let mut key = writer
            .organisation_key(id)
            .await?
            .filter(|key| key.organisation_id == organisation.id && !key.is_deleted())
            .ok_or(not_found("organisation signing key"))?;
        key.delete(actor, now)?;
        writer.update_organisation_key(&key).await?;
        writer
            .insert_audit_event(&event(
                &organisation.id,
                None,
                Some(actor),
                "organisation_key.delete",
                key.id.as_str(),
                key.deleted_at.unwrap_or(now),
            ))
            .await?;
        writer.announce(&Change::OrganisationKey(key.id.clone())).await?;
        writer.commit().await?;
        Ok(key)
    }

    async fn audit_events(&self, organisation: &OrganisationId, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        DB::reader(&self.pool).await?.audit_events(organisation, limit).await
    }
}
