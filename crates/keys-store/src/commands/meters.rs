//! Metering's changes (docs/METERING.md): a key created with its meter
//! ([`CreateMeteredApiKey`]), a key's limits and credits replaced
//! ([`PutKeyMeter`]), a balance changed by hand ([`ChangeCredits`]), and
//! identities put and deleted ([`PutIdentity`], [`DeleteIdentity`]). Each is
//! audited and writes under its workspace's lock; the counters themselves
//! (slices, tokens) are not commands: see `Mutations::reserve_credits`.

use keys_core::meter::{CreditPool, CreditRule, CreditsOperation};
use keys_core::{ApiKey, ApiKeyId, ApiKeyPatch, EntityKind, Mutation, WorkspaceUid};

use super::{Acting, Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::meters::{MeterOf, MeterSetting, StoredMeter};
use crate::repo::{self, Sql};

command! {
    /// Creates the key and its meter in one transaction (a key with limits
    /// or credits is never stored without them).
    CreateMeteredApiKey { key: ApiKey, setting: MeterSetting } -> (),
        lock |command| Lock::Workspace(&command.key.workspace), mutation |_command| Mutation::Create(EntityKind::ApiKey);
    apply |Self { key, setting }, sql, locked| {
        let scope = Scope::of_workspace(&locked.workspace()?);
        repo::insert_api_key(sql, &key).await?;
        let meter = StoredMeter::new(key.workspace.clone(), MeterOf::Key(key.id.clone()), setting, key.created_at);
        repo::put_meter(sql, &meter).await?;
        let event = scope.event(AuditAction::ApiKeyGenerated, key.created_by.as_ref(), key.id.as_str(), key.created_at);
        Ok(Applied::one((), event, Change::ApiKey(key.digest)))
    }
}

command! {
    /// Patches a live key and replaces its limits and credits (its roll
    /// chain's: the rolled keys of the chain draw on the same), in one
    /// transaction with one `api_key.updated` event; returns both.
    PutKeyMeter { id: ApiKeyId, patch: ApiKeyPatch, setting: MeterSetting } in Workspace(WorkspaceUid)
        -> (ApiKey, StoredMeter), Mutation::Update(EntityKind::ApiKey);
    apply |Self { acting, id, patch, setting }, sql, locked| {
        let workspace = locked.workspace()?;
        let of = live_key_meter(sql, &workspace.uid, &id).await?;
        let mut key = repo::api_key(sql, &workspace.uid, &id).await?.ok_or(StoreError::NotFound { kind: "api key" })?;
        let profile_changes = patch != ApiKeyPatch::default();
        // An empty patch moves `updated_at` and `updated_by` only.
        key.patch(patch, &acting.actor, acting.now)?;
        repo::save_api_key(sql, &key).await?;
        let meter = match repo::lock_meter(sql, &workspace.uid, &of).await? {
            Some(meter) => meter.replaced(setting, acting.now),
            None => StoredMeter::new(workspace.uid.clone(), of, setting, acting.now),
        };
        repo::put_meter(sql, &meter).await?;
        let event = acting.event(&Scope::of_workspace(&workspace), AuditAction::ApiKeyUpdated, id.as_str(), acting.now);
        // What verification caches of the key changed too: every cached
        // key of the workspace goes (which also reads its meters again).
        let change = if profile_changes { Change::Workspace(workspace.uid) } else { Change::Meters(workspace.uid) };
        Ok(Applied::one((key, meter), event, change))
    }
}

/// Whose balance a [`ChangeCredits`] changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditsOf {
    Key(ApiKeyId),
    Identity(String),
}

command! {
    /// Changes a balance by hand ([`keys_core::meter::CreditPool::apply`]):
    /// a key's (a key that spends no credits starts to, from 0) or an
    /// identity's; returns the meter.
    ChangeCredits { of: CreditsOf, operation: CreditsOperation } in Workspace(WorkspaceUid) -> StoredMeter,
        Mutation::Update(EntityKind::ApiKey);
    apply |Self { acting, of, operation }, sql, locked| {
        let workspace = locked.workspace()?;
        let (subject, action, target) = match &of {
            CreditsOf::Key(id) => (live_key_meter(sql, &workspace.uid, id).await?, AuditAction::ApiKeyCreditsUpdated, id.as_str()),
            CreditsOf::Identity(external_id) => {
                (MeterOf::Identity(external_id.clone()), AuditAction::IdentityUpdated, external_id.as_str())
            }
        };
        let found = repo::lock_meter(sql, &workspace.uid, &subject).await?;
        let mut meter = match (found, &of) {
            (Some(meter), _) => meter,
            (None, CreditsOf::Key(_)) => StoredMeter::new(workspace.uid.clone(), subject, MeterSetting::default(), acting.now),
            (None, CreditsOf::Identity(_)) => return Err(StoreError::NotFound { kind: "identity" }),
        };
        if let CreditsOf::Key(id) = &of {
            // The key's `updated_at` and `updated_by` say the balance moved.
            let found = repo::api_key(sql, &workspace.uid, id).await?;
            let mut key = found.ok_or(StoreError::NotFound { kind: "api key" })?;
            key.patch(ApiKeyPatch::default(), &acting.actor, acting.now)?;
            repo::save_api_key(sql, &key).await?;
        }
        let rule = meter.meter.credits.unwrap_or(CreditRule { refill: None });
        meter.pool = meter.pool.apply(operation, &rule, acting.now);
        meter.meter.credits = Some(rule);
        meter.updated_at = acting.now;
        repo::put_meter(sql, &meter).await?;
        let event = acting.event(&Scope::of_workspace(&workspace), action, target, acting.now);
        Ok(Applied::one(meter, event, Change::Meters(workspace.uid)))
    }
}

command! {
    /// Creates or replaces an identity (the keys of the workspace with this
    /// `external_id`): its limits, credits and meta; returns it and whether
    /// it is new. Counted against the workspace's cap of identities (the
    /// cap of its keys of each kind): a replace adds nothing.
    PutIdentity { external_id: String, setting: MeterSetting } in Workspace(WorkspaceUid) -> (StoredMeter, bool),
        Mutation::Create(EntityKind::Identity);
    apply |Self { acting, external_id, setting }, sql, locked| {
        let workspace = locked.workspace()?;
        let of = MeterOf::Identity(external_id.clone());
        let (meter, created) = match repo::lock_meter(sql, &workspace.uid, &of).await? {
            Some(meter) => (meter.replaced(setting, acting.now), false),
            None => {
                // An identity may have been deleted and be made again: a
                // new epoch, which no slice of its former balance names.
                let mut meter = StoredMeter::new(workspace.uid.clone(), of, setting, acting.now);
                meter.pool = CreditPool::renewed(meter.pool.unleased(), acting.now);
                (meter, true)
            }
        };
        repo::put_meter(sql, &meter).await?;
        let event = acting.event(&Scope::of_workspace(&workspace), AuditAction::IdentityUpdated, &external_id, acting.now);
        Ok(Applied::one((meter, created), event, Change::Meters(workspace.uid)))
    }
}

command! {
    /// Deletes an identity and its counters; its keys keep working.
    DeleteIdentity { external_id: String } in Workspace(WorkspaceUid) -> (), Mutation::Delete(EntityKind::Identity);
    apply |Self { acting, external_id }, sql, locked| {
        let workspace = locked.workspace()?;
        if !repo::delete_meter(sql, &workspace.uid, &MeterOf::Identity(external_id.clone())).await? {
            return Err(StoreError::NotFound { kind: "identity" });
        }
        let event = acting.event(&Scope::of_workspace(&workspace), AuditAction::IdentityDeleted, &external_id, acting.now);
        Ok(Applied::one((), event, Change::Meters(workspace.uid)))
    }
}

/// The meter subject of a live (undeleted) key of the workspace.
async fn live_key_meter<C: Sql + ?Sized>(sql: &mut C, workspace: &WorkspaceUid, id: &ApiKeyId) -> StoreResult<MeterOf> {
    let live = repo::api_key(sql, workspace, id).await?.is_some_and(|key| !key.is_deleted());
    let root = repo::meter_root(sql, workspace, id).await?.filter(|_| live);
    root.map(MeterOf::Key).ok_or(StoreError::NotFound { kind: "api key" })
}
