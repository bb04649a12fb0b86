//! Workspace signing keys, through the workspace's `SigningKeyRing`:
//! [`CreateSigningKey`], [`RollSigningKey`] and [`DeleteSigningKey`].

use keys_core::{
    Actor, EntityKind, GracePeriod, Mutation, NewSigningKey, SigningKeyRing, SigningKeyUid, WorkspaceSigningKey,
    WorkspaceUid,
};
use time::OffsetDateTime;

use super::{Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::StoreResult;
use crate::repo::{self, Sql};

/// Refused with `OnlyOneActiveSigningKey` while an active key exists, under
/// any concurrency.
#[derive(Debug, Clone)]
pub struct CreateSigningKey {
    pub workspace: WorkspaceUid,
    pub new: NewSigningKey,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for CreateSigningKey {
    type Output = WorkspaceSigningKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::SigningKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<WorkspaceSigningKey>> {
        let Self { new, actor, now, .. } = self;
        let workspace = locked.workspace()?;
        let live = repo::live_signing_keys(sql, &workspace.uid).await?;
        let key = SigningKeyRing::restore(workspace.uid.clone(), live).create(new, &actor, now)?.clone();
        repo::insert_signing_key(sql, &key).await?;
        let (action, at) = (AuditAction::SigningApiKeyGenerated, key.created_at);
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.uid.as_str(), at);
        Ok(Applied::one(key, event, Change::SigningKeys(workspace.uid)))
    }
}

/// Returns (the rolled key, the new active key).
#[derive(Debug, Clone)]
pub struct RollSigningKey {
    pub workspace: WorkspaceUid,
    pub uid: SigningKeyUid,
    pub grace: Option<GracePeriod>,
    pub new: NewSigningKey,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for RollSigningKey {
    type Output = (WorkspaceSigningKey, WorkspaceSigningKey);

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Roll(EntityKind::SigningKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<Self::Output>> {
        let Self { uid, grace, new, actor, now, .. } = self;
        let workspace = locked.workspace()?;
        let mut ring =
            SigningKeyRing::restore(workspace.uid.clone(), repo::live_signing_keys(sql, &workspace.uid).await?);
        let (rolled, fresh) = ring.roll(&uid, grace, new, &actor, now)?;
        let (rolled, fresh) = (rolled.clone(), fresh.clone());
        // The rolled key leaves the active slot before the new key takes
        // it; the other order would trip the one-active index.
        repo::save_signing_key(sql, &rolled).await?;
        repo::insert_signing_key(sql, &fresh).await?;
        // One change, one event (docs/GUARANTEES.md, The audit trail), on the key rolled.
        let (action, at) = (AuditAction::SigningApiKeyRolled, fresh.created_at);
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), rolled.uid.as_str(), at);
        Ok(Applied::one((rolled, fresh), event, Change::SigningKeys(workspace.uid)))
    }
}

#[derive(Debug, Clone)]
pub struct DeleteSigningKey {
    pub workspace: WorkspaceUid,
    pub uid: SigningKeyUid,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for DeleteSigningKey {
    type Output = WorkspaceSigningKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Delete(EntityKind::SigningKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<WorkspaceSigningKey>> {
        let Self { uid, actor, now, .. } = self;
        let workspace = locked.workspace()?;
        let mut ring =
            SigningKeyRing::restore(workspace.uid.clone(), repo::live_signing_keys(sql, &workspace.uid).await?);
        let key = ring.delete(&uid, &actor, now)?;
        repo::save_signing_key(sql, &key).await?;
        let (action, at) = (AuditAction::SigningApiKeyDeleted, key.deleted_at().unwrap_or(now));
        let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.uid.as_str(), at);
        Ok(Applied::one(key, event, Change::SigningKeys(workspace.uid)))
    }
}
