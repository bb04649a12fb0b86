//! Public keys, through the workspace's `PublicKeyRing` where the default
//! is at stake: [`CreatePublicKey`], [`ChangePublicKey`] (patch, rotate)
//! and [`DeletePublicKey`].

use keys_core::{
    Actor, EntityKind, Mutation, NewPublicKey, PublicKey, PublicKeyId, PublicKeyPatch, PublicKeyRing, WorkspaceUid,
};
use time::OffsetDateTime;

use super::{Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};

/// A change to one public key.
#[derive(Debug, Clone)]
pub enum PublicKeyChange {
    Patch(PublicKeyPatch),
    /// New material (`SS.PUBK.` value) for the same record.
    Rotate(String),
}

/// Through the workspace's `PublicKeyRing`: the first live key is the
/// default.
#[derive(Debug, Clone)]
pub struct CreatePublicKey {
    pub new: NewPublicKey,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for CreatePublicKey {
    type Output = PublicKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.new.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::PublicKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<PublicKey>> {
        let Self { new, actor, now } = self;
        let workspace = locked.workspace()?;
        let mut ring = PublicKeyRing::restore(repo::live_public_keys(sql, &workspace.uid).await?);
        let key = ring.create(new, &actor, now).clone();
        repo::insert_public_key(sql, &key).await?;
        let (action, at) = (AuditAction::PublicApiKeyGenerated, key.created_at);
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
        Ok(Applied::one(key, event, Change::PublicKeys(workspace.uid)))
    }
}

#[derive(Debug, Clone)]
pub struct ChangePublicKey {
    pub workspace: WorkspaceUid,
    pub id: PublicKeyId,
    pub change: PublicKeyChange,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for ChangePublicKey {
    type Output = PublicKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Update(EntityKind::PublicKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<PublicKey>> {
        let Self { id, change, actor, now, .. } = self;
        let workspace = locked.workspace()?;
        let found = repo::public_key(sql, &workspace.uid, &id).await?.filter(|key| !key.is_deleted());
        let mut key = found.ok_or(StoreError::NotFound { kind: "public key" })?;
        let action = match change {
            PublicKeyChange::Patch(patch) => {
                key.patch(patch, &actor, now)?;
                AuditAction::PublicApiKeyUpdated
            }
            PublicKeyChange::Rotate(value) => {
                key.rotate(value, &actor, now)?;
                AuditAction::PublicApiKeyRotated
            }
        };
        repo::save_public_key(sql, &key).await?;
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), key.updated_at);
        Ok(Applied::one(key, event, Change::PublicKeys(workspace.uid)))
    }
}

/// Through the ring: the default is not deleted while others live.
#[derive(Debug, Clone)]
pub struct DeletePublicKey {
    pub workspace: WorkspaceUid,
    pub id: PublicKeyId,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for DeletePublicKey {
    type Output = PublicKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Delete(EntityKind::PublicKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<PublicKey>> {
        let Self { id, actor, now, .. } = self;
        let workspace = locked.workspace()?;
        let mut ring = PublicKeyRing::restore(repo::live_public_keys(sql, &workspace.uid).await?);
        let key = ring.delete(&id, &actor, now)?;
        repo::save_public_key(sql, &key).await?;
        let (action, at) = (AuditAction::PublicApiKeyDeleted, key.updated_at);
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
        Ok(Applied::one(key, event, Change::PublicKeys(workspace.uid)))
    }
}
