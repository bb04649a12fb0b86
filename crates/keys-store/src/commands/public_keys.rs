//! Public keys, through the workspace's `PublicKeyRing` where the default
//! is at stake: [`CreatePublicKey`], [`ChangePublicKey`] (patch, rotate)
//! and [`DeletePublicKey`].

use keys_core::{
    Actor, EntityKind, Mutation, NewPublicKey, PublicKey, PublicKeyId, PublicKeyPatch, PublicKeyRing, Workspace,
    WorkspaceUid,
};
use time::OffsetDateTime;

use super::{Acting, Applied, AuditAction, Command, Lock, Locked, Scope};
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

command! {
    /// Through the workspace's `PublicKeyRing`: the first live key is the
    /// default.
    CreatePublicKey { new: NewPublicKey, actor: Actor, now: OffsetDateTime } -> PublicKey,
        lock |command| Lock::Workspace(&command.new.workspace),
        mutation |_command| Mutation::Create(EntityKind::PublicKey);
    apply |Self { new, actor, now }, sql, locked| {
        let workspace = locked.workspace()?;
        let key = ring(sql, &workspace).await?.create(new, &actor, now).clone();
        repo::insert_public_key(sql, &key).await?;
        let (action, at) = (AuditAction::PublicApiKeyGenerated, key.created_at);
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
        Ok(Applied::one(key, event, Change::PublicKeys(workspace.uid)))
    }
}

command! {
    ChangePublicKey { id: PublicKeyId, change: PublicKeyChange } in Workspace(WorkspaceUid) -> PublicKey,
        Mutation::Update(EntityKind::PublicKey);
    apply |Self { acting, id, change }, sql, locked| {
        let workspace = locked.workspace()?;
        let found = repo::public_key(sql, &workspace.uid, &id).await?.filter(|key| !key.is_deleted());
        let mut key = found.ok_or(StoreError::NotFound { kind: "public key" })?;
        let action = match change {
            PublicKeyChange::Patch(patch) => {
                key.patch(patch, &acting.actor, acting.now)?;
                AuditAction::PublicApiKeyUpdated
            }
            PublicKeyChange::Rotate(value) => {
                key.rotate(value, &acting.actor, acting.now)?;
                AuditAction::PublicApiKeyRotated
            }
        };
        repo::save_public_key(sql, &key).await?;
        let event = acting.event(&Scope::of_workspace(&workspace), action, key.id.as_str(), key.updated_at);
        Ok(Applied::one(key, event, Change::PublicKeys(workspace.uid)))
    }
}

command! {
    /// Through the ring: the default is not deleted while others live.
    DeletePublicKey { id: PublicKeyId } in Workspace(WorkspaceUid) -> PublicKey,
        Mutation::Delete(EntityKind::PublicKey);
    apply |Self { acting, id }, sql, locked| {
        let workspace = locked.workspace()?;
        let key = ring(sql, &workspace).await?.delete(&id, &acting.actor, acting.now)?;
        repo::save_public_key(sql, &key).await?;
        let (action, at) = (AuditAction::PublicApiKeyDeleted, key.updated_at);
        let event = acting.event(&Scope::of_workspace(&workspace), action, key.id.as_str(), at);
        Ok(Applied::one(key, event, Change::PublicKeys(workspace.uid)))
    }
}

/// The live public keys of the locked workspace.
async fn ring<C: Sql + ?Sized>(sql: &mut C, workspace: &Workspace) -> StoreResult<PublicKeyRing> {
    Ok(PublicKeyRing::restore(repo::live_public_keys(sql, &workspace.uid).await?))
}
