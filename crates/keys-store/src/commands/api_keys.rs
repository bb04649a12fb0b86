//! API keys: [`CreateApiKey`], [`ChangeApiKey`] (patch, disable, enable,
//! delete) and [`RollApiKey`].

use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyPatch, EntityKind, GracePeriod, Mutation, WorkspaceUid,
};
use time::OffsetDateTime;

use super::{Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};

/// A change to one API key: its transitions in keys-core.
#[derive(Debug, Clone)]
pub enum ApiKeyChange {
    Patch(ApiKeyPatch),
    Disable,
    Enable,
    /// Replaces the key by a new one with this material, the old key
    /// authenticating for the grace (capped by its expiry).
    Roll {
        grace: Option<GracePeriod>,
        material: ApiKeyMaterial,
    },
    Delete,
}

impl ApiKeyChange {
    fn mutation(&self) -> Mutation {
        match self {
            Self::Patch(_) | Self::Disable | Self::Enable => Mutation::Update(EntityKind::ApiKey),
            Self::Roll { .. } => Mutation::Roll(EntityKind::ApiKey),
            Self::Delete => Mutation::Delete(EntityKind::ApiKey),
        }
    }
}

/// Creates the key (PostgreSQL: in one statement where the cap admits it).
#[derive(Debug, Clone)]
pub struct CreateApiKey(pub ApiKey);

impl Command for CreateApiKey {
    type Output = ();

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.0.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::ApiKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<()>> {
        let key = self.0;
        let scope = Scope::of_workspace(&locked.workspace()?);
        repo::insert_api_key(sql, &key).await?;
        let event = scope.event(AuditAction::ApiKeyGenerated, key.created_by.as_ref(), key.id.as_str(), key.created_at);
        Ok(Applied::one((), event, Change::ApiKey(key.digest)))
    }

    fn api_key_at_once(&self) -> Option<&ApiKey> {
        Some(&self.0)
    }

    fn written_at_once(self) -> Option<((), Change)> {
        Some(((), Change::ApiKey(self.0.digest)))
    }
}

/// Patches, disables, enables, deletes (or rolls) one live API key; returns
/// it as it now is (a rolled key: the key rolled).
#[derive(Debug, Clone)]
pub struct ChangeApiKey {
    pub workspace: WorkspaceUid,
    pub id: ApiKeyId,
    pub change: ApiKeyChange,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for ChangeApiKey {
    type Output = ApiKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        self.change.mutation()
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<ApiKey>> {
        let applied = change(sql, locked, self).await?;
        Ok(Applied { output: applied.output.0, events: applied.events, change: applied.change })
    }
}

/// Replaces a live API key by a new one with this material; returns (the
/// rolled key, the key that replaces it).
#[derive(Debug, Clone)]
pub struct RollApiKey {
    pub workspace: WorkspaceUid,
    pub id: ApiKeyId,
    pub grace: Option<GracePeriod>,
    pub material: ApiKeyMaterial,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for RollApiKey {
    type Output = (ApiKey, ApiKey);

    fn lock(&self) -> Lock<'_> {
        Lock::Workspace(&self.workspace)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Roll(EntityKind::ApiKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<(ApiKey, ApiKey)>> {
        let Self { workspace, id, grace, material, actor, now } = self;
        let change_of = ChangeApiKey { workspace, id, change: ApiKeyChange::Roll { grace, material }, actor, now };
        let applied = change(sql, locked, change_of).await?;
        let (rolled, fresh) = applied.output;
        let fresh = fresh.ok_or_else(|| StoreError::Inconsistent("a roll made no new key".to_owned()))?;
        Ok(Applied { output: (rolled, fresh), events: applied.events, change: applied.change })
    }
}

/// Every change of one API key: loads it under its workspace's lock, lets
/// keys-core decide, saves it (and inserts the key a roll makes). Returns
/// the key and, for a roll, the key that replaces it.
async fn change<C: Sql + ?Sized>(
    sql: &mut C,
    locked: Locked,
    command: ChangeApiKey,
) -> StoreResult<Applied<(ApiKey, Option<ApiKey>)>> {
    let ChangeApiKey { id, change, actor, now, .. } = command;
    let workspace = locked.workspace()?;
    let found = repo::api_key(sql, &workspace.uid, &id).await?.filter(|key| !key.is_deleted());
    let mut key = found.ok_or(StoreError::NotFound { kind: "api key" })?;
    let (action, fresh) = match change {
        ApiKeyChange::Patch(patch) => (AuditAction::ApiKeyUpdated, key.patch(patch, &actor, now).map(|()| None)),
        ApiKeyChange::Disable => (AuditAction::ApiKeyDisabled, key.disable(&actor, now).map(|()| None)),
        ApiKeyChange::Enable => (AuditAction::ApiKeyEnabled, key.enable(&actor, now).map(|()| None)),
        ApiKeyChange::Roll { grace, material } => {
            (AuditAction::ApiKeyRolled, key.roll(grace, material, &actor, now).map(Some))
        }
        ApiKeyChange::Delete => (AuditAction::ApiKeyDeleted, key.delete(&actor, now).map(|()| None)),
    };
    let fresh = fresh?;
    repo::save_api_key(sql, &key).await?;
    // The new key's digest needs no announcement: no process can have
    // looked up a secret that is not handed out yet.
    let change = Change::ApiKey(key.digest);
    let at = key.deleted_at().unwrap_or(key.updated_at);
    let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
    if let Some(fresh) = &fresh {
        repo::insert_api_key(sql, fresh).await?;
    }
    Ok(Applied::one((key, fresh), event, change))
}
