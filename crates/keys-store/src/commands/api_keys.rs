//! API keys: [`CreateApiKey`], [`ChangeApiKey`] (patch, disable, enable,
//! delete), [`RollApiKey`], [`ImportApiKeys`] and [`ReportLeakedApiKey`].

use std::collections::HashMap;

use keys_core::{
    ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyPatch, ApiKeyStatus, EntityKind, GracePeriod, LeakContainment, Mutation,
    SecretDigest, WorkspaceUid,
};

use super::{Acting, Applied, AuditAction, AuditEvent, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{Conflict, StoreError, StoreResult};
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

command! {
    /// Creates the key (PostgreSQL: in one statement where the cap admits it).
    CreateApiKey(ApiKey) in Workspace(workspace) -> (), Mutation::Create(EntityKind::ApiKey);
    apply |Self(key), sql, locked| {
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

command! {
    /// Patches, disables, enables, deletes (or rolls) one live API key; returns
    /// it as it now is (a rolled key: the key rolled).
    ChangeApiKey { id: ApiKeyId, change: ApiKeyChange } in Workspace(WorkspaceUid) -> ApiKey,
    |command| command.change.mutation();
    apply |command, sql, locked| {
        change(sql, locked, command).await?.map(|(key, _)| Ok(key))
    }
}

command! {
    /// Replaces a live API key by a new one with this material; returns (the
    /// rolled key, the key that replaces it).
    RollApiKey { id: ApiKeyId, grace: Option<GracePeriod>, material: ApiKeyMaterial } in Workspace(WorkspaceUid)
        -> (ApiKey, ApiKey), Mutation::Roll(EntityKind::ApiKey);
    apply |Self { acting, id, grace, material }, sql, locked| {
        let roll = ChangeApiKey { acting, id, change: ApiKeyChange::Roll { grace, material } };
        change(sql, locked, roll).await?.map(|(rolled, fresh)| {
            Ok((rolled, fresh.ok_or_else(|| StoreError::Inconsistent("a roll made no new key".to_owned()))?))
        })
    }
}

/// What an import does with an entry whose digest is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDigests {
    /// Refuses the whole batch ([`Conflict::DigestStored`]), and an entry
    /// that repeats an earlier one ([`Conflict::RepeatedInBatch`]): the API.
    Refuse,
    /// Skips an entry already stored in the workspace imported into, or
    /// repeating an earlier one, and counts it; one stored in another
    /// workspace still refuses the batch: `keysd import`, which may be run
    /// again over the same file.
    SkipInWorkspace,
}

/// What an import wrote: the keys it created, in the order of their
/// entries, and the indexes of the entries it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedApiKeys {
    pub imported: Vec<ApiKey>,
    pub skipped: Vec<usize>,
}

command! {
    /// Stores keys made elsewhere (their digests computed by the caller),
    /// all or nothing: an entry whose digest is stored already refuses the
    /// whole batch (or is skipped, see [`StoredDigests`]), and the
    /// workspace's key cap counts the whole batch, as it counts a create.
    /// One `api_key.imported` event names how many and which keys.
    ImportApiKeys { keys: Vec<ApiKey>, stored: StoredDigests } in Workspace(WorkspaceUid) -> ImportedApiKeys,
        Mutation::Create(EntityKind::ApiKey);
    apply |Self { acting, keys, stored: stored_policy }, sql, locked| {
        let workspace = locked.workspace()?;
        if keys.iter().any(|key| key.workspace != workspace.uid) {
            return Err(StoreError::Inconsistent("an imported key names another workspace".to_owned()));
        }
        // One lookup for the whole batch, under the workspace's lock.
        let digests: Vec<&SecretDigest> = keys.iter().map(|key| &key.digest).collect();
        let stored: HashMap<[u8; 32], String> = repo::stored_digests(sql, &digests).await?.into_iter().collect();
        let mut first_of: HashMap<[u8; 32], usize> = HashMap::with_capacity(keys.len());
        let mut written = ImportedApiKeys { imported: Vec::with_capacity(keys.len()), skipped: Vec::new() };
        for (index, key) in keys.into_iter().enumerate() {
            if let Some(&first) = first_of.get(key.digest.as_bytes()) {
                match stored_policy {
                    StoredDigests::Refuse => return Err(Conflict::RepeatedInBatch { index, first }.into()),
                    StoredDigests::SkipInWorkspace => written.skipped.push(index),
                }
                continue;
            }
            first_of.insert(*key.digest.as_bytes(), index);
            if let Some(holder) = stored.get(key.digest.as_bytes()) {
                if stored_policy == StoredDigests::SkipInWorkspace && holder == workspace.uid.as_str() {
                    written.skipped.push(index);
                    continue;
                }
                return Err(Conflict::DigestStored { index }.into());
            }
            written.imported.push(key);
        }
        // A concurrent import of one of these keys into another workspace
        // (PostgreSQL: another workspace's lock) meets the unique digest:
        // back to before the insert, the batch is refused naming its entry
        // that another transaction stored meanwhile.
        repo::savepoint(sql, "import_batch").await?;
        if let Err(error) = repo::insert_api_keys(sql, &written.imported).await {
            let StoreError::Conflict(Conflict::DigestStored { .. }) = error else { return Err(error) };
            repo::rollback_to_savepoint(sql, "import_batch").await?;
            let digests: Vec<&SecretDigest> = written.imported.iter().map(|key| &key.digest).collect();
            let taken = repo::stored_digests(sql, &digests).await?;
            let index = written
                .imported
                .iter()
                .find(|key| taken.iter().any(|(digest, _)| digest == key.digest.as_bytes()))
                .and_then(|key| first_of.get(key.digest.as_bytes()).copied())
                .unwrap_or_default();
            return Err(Conflict::DigestStored { index }.into());
        }
        if written.imported.is_empty() {
            // Nothing written: no event, and the pipeline rolls back.
            return Ok(Applied { output: written, events: Vec::new(), change: None });
        }
        let target = import_target(&written.imported);
        let at = written.imported[0].created_at;
        let event = acting.event(&Scope::of_workspace(&workspace), AuditAction::ApiKeyImported, &target, at);
        Ok(Applied::one(written, event, Change::ApiKeysImported(workspace.uid)))
    }
}

/// A key reported leaked, as the report left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeakedApiKey {
    /// The key after the report (disabled, or its grace ended, when the
    /// workspace's policy is `disable`).
    pub key: ApiKey,
    /// Whether it authenticated when reported: a live key, which secret
    /// scanners call a true positive.
    pub was_live: bool,
    pub containment: LeakContainment,
}

command! {
    /// Records that the key of the workspace with this digest was found
    /// where it should not be, and contains it as the workspace's
    /// `on_leak` says ([`ApiKey::contain_leak`]): one `api_key.leaked`
    /// event carrying the source (`detail`, never the key), plus the
    /// event of the transition it made (`api_key.disabled`, or
    /// `api_key.updated` for a rolled key's grace ended). `None`, and
    /// nothing written, when the workspace has no live (undeleted) key with
    /// this digest.
    ReportLeakedApiKey { digest: SecretDigest, source: Option<String> } in Workspace(WorkspaceUid)
        -> Option<LeakedApiKey>, Mutation::Update(EntityKind::ApiKey);
    apply |Self { acting, digest, source }, sql, locked| {
        let workspace = locked.workspace()?;
        let found = repo::api_key_by_digest(sql, &digest).await?;
        let Some((mut key, _)) = found.filter(|(key, holder)| holder.uid == workspace.uid && !key.is_deleted()) else {
            return Ok(Applied { output: None, events: Vec::new(), change: None });
        };
        let Acting { actor, now, .. } = &acting;
        let was_live = key.authenticates(*now).is_ok();
        let containment = key.contain_leak(workspace.on_leak, actor, *now)?;
        let scope = Scope::of_workspace(&workspace);
        let mut leaked = acting.event(&scope, AuditAction::ApiKeyLeaked, key.id.as_str(), *now);
        leaked.detail = Some(leak_detail(source.as_deref()));
        let mut events = vec![leaked];
        if containment != LeakContainment::Unchanged {
            repo::save_api_key(sql, &key).await?;
            let action = match key.status() {
                ApiKeyStatus::Disabled => AuditAction::ApiKeyDisabled,
                _ => AuditAction::ApiKeyUpdated,
            };
            events.push(acting.event(&scope, action, key.id.as_str(), key.updated_at));
        }
        let change = Change::ApiKey(key.digest);
        Ok(Applied { output: Some(LeakedApiKey { key, was_live, containment }), events, change: Some(change) })
    }
}

/// The `detail` of an `api_key.leaked` event: `source=<where it was
/// found>` (or `source=unknown`), cut to what the column holds on a
/// character boundary.
fn leak_detail(source: Option<&str>) -> String {
    let mut detail = format!("source={}", source.unwrap_or("unknown"));
    if detail.len() > AuditEvent::MAX_DETAIL {
        let mut end = AuditEvent::MAX_DETAIL;
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        detail.truncate(end);
    }
    detail
}

/// The most key ids an `api_key.imported` event names: its `target_id` is
/// indexed, and PostgreSQL's index rows hold at most about 2.7 kB.
const IMPORT_EVENT_IDS: usize = 50;

/// The `target_id` of an `api_key.imported` event: `count=N ids=…`, the
/// first [`IMPORT_EVENT_IDS`] ids and, past them, `,…` (every key of one
/// import has the event's instant as its `created_at`).
fn import_target(imported: &[ApiKey]) -> String {
    let ids: Vec<&str> = imported.iter().take(IMPORT_EVENT_IDS).map(|key| key.id.as_str()).collect();
    let more = if imported.len() > IMPORT_EVENT_IDS { ",…" } else { "" };
    format!("count={} ids={}{more}", imported.len(), ids.join(","))
}

/// Every change of one API key: loads it under its workspace's lock, lets
/// keys-core decide, saves it (and inserts the key a roll makes). Returns
/// the key and, for a roll, the key that replaces it.
async fn change<C: Sql + ?Sized>(
    sql: &mut C,
    locked: Locked,
    command: ChangeApiKey,
) -> StoreResult<Applied<(ApiKey, Option<ApiKey>)>> {
    let ChangeApiKey { acting: Acting { actor, now, .. }, id, change } = command;
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
        // The new key draws on the old one's limits and balance.
        repo::inherit_meter_root(sql, &fresh.id, &key.id).await?;
    }
    Ok(Applied::one((key, fresh), event, change))
}
