//! Workspace signing keys, through the workspace's `SigningKeyRing`:
//! [`CreateSigningKey`], [`RollSigningKey`] and [`DeleteSigningKey`].

use keys_core::{
    EntityKind, GracePeriod, Mutation, NewSigningKey, SigningKeyRing, SigningKeyUid, Workspace, WorkspaceSigningKey,
    WorkspaceUid,
};

use super::{Acting, Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::StoreResult;
use crate::repo::{self, Sql};

command! {
    /// Refused with `OnlyOneActiveSigningKey` while an active key exists, under
    /// any concurrency.
    CreateSigningKey { new: NewSigningKey } in Workspace(WorkspaceUid) -> WorkspaceSigningKey,
        Mutation::Create(EntityKind::SigningKey);
    apply |Self { acting, new }, sql, locked| {
        let (workspace, mut ring) = ring(sql, locked).await?;
        let key = ring.create(new, &acting.actor, acting.now)?.clone();
        repo::insert_signing_key(sql, &key).await?;
        let (action, at) = (AuditAction::SigningApiKeyGenerated, key.created_at);
        let event = acting.event(&Scope::of_workspace(&workspace), action, key.uid.as_str(), at);
        Ok(Applied::one(key, event, Change::SigningKeys(workspace.uid)))
    }
}

command! {
    /// Returns (the rolled key, the new active key).
    RollSigningKey { uid: SigningKeyUid, grace: Option<GracePeriod>, new: NewSigningKey } in Workspace(WorkspaceUid)
        -> (WorkspaceSigningKey, WorkspaceSigningKey), Mutation::Roll(EntityKind::SigningKey);
    apply |Self { acting, uid, grace, new }, sql, locked| {
        let (workspace, mut ring) = ring(sql, locked).await?;
        let (rolled, fresh) = ring.roll(&uid, grace, new, &acting.actor, acting.now)?;
        let (rolled, fresh) = (rolled.clone(), fresh.clone());
        // The rolled key leaves the active slot before the new key takes
        // it; the other order would trip the one-active index.
        repo::save_signing_key(sql, &rolled).await?;
        repo::insert_signing_key(sql, &fresh).await?;
        // One change, one event (docs/GUARANTEES.md, The audit trail), on the key rolled.
        let scope = Scope::of_workspace(&workspace);
        let event = acting.event(&scope, AuditAction::SigningApiKeyRolled, rolled.uid.as_str(), fresh.created_at);
        Ok(Applied::one((rolled, fresh), event, Change::SigningKeys(workspace.uid)))
    }
}

command! {
    DeleteSigningKey { uid: SigningKeyUid } in Workspace(WorkspaceUid) -> WorkspaceSigningKey,
        Mutation::Delete(EntityKind::SigningKey);
    apply |Self { acting, uid }, sql, locked| {
        let (workspace, mut ring) = ring(sql, locked).await?;
        let key = ring.delete(&uid, &acting.actor, acting.now)?;
        repo::save_signing_key(sql, &key).await?;
        let (action, at) = (AuditAction::SigningApiKeyDeleted, key.deleted_at().unwrap_or(acting.now));
        let event = acting.event(&Scope::of_workspace(&workspace), action, key.uid.as_str(), at);
        Ok(Applied::one(key, event, Change::SigningKeys(workspace.uid)))
    }
}

/// The locked workspace and its live signing keys.
async fn ring<C: Sql + ?Sized>(sql: &mut C, locked: Locked) -> StoreResult<(Workspace, SigningKeyRing)> {
    let workspace = locked.workspace()?;
    let live = repo::live_signing_keys(sql, &workspace.uid).await?;
    Ok((workspace.clone(), SigningKeyRing::restore(workspace.uid, live)))
}
