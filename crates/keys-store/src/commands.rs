//! Every mutation of keysd, declared once: [`Command`].
//!
//! A command names four things, each in one place, in this file:
//! - its **lock** ([`Command::lock`]): the aggregate root it serializes on
//!   (an organisation, a workspace, the bootstrap) or nothing;
//! - its **transition** ([`Command::apply`]): what it loads under the lock,
//!   the keys-core method that decides, and the generic per-entity
//!   statements of [`crate::repo`] (`insert_*`, `save_*`) that write the
//!   result, so a new transition needs no new SQL;
//! - its **audit action** ([`AuditAction`], the names of docs/API.md, Audit events);
//! - its **[`Change`]**, which the pipeline announces to other processes and
//!   hands back to the caller, so the verification cache invalidates from
//!   the same value instead of a second, hand-written one.
//!
//! One function runs every command: `crate::pipeline::run` opens the write
//! transaction, takes the lock, calls [`Command::apply`], inserts the audit
//! events, announces the change and commits.
//!
//! **Why an enum, not a trait with one type per command.** The entry point
//! must work through `Arc<dyn Store>`, which keys-http holds, so it cannot
//! be generic over a command type. An enum gives one object-safe method,
//! [`Mutations::execute`], and makes the compiler check that every command
//! has a lock and a transition (the matches are exhaustive). The typed
//! methods below (`create_api_key`, `roll_signing_key`, …) are thin
//! conveniences over `execute`, provided by the same trait in this file.
//!
//! **Adding an operation** (say, disabling an API key) touches this file
//! only: a variant of [`Command`], its arm in [`Command::lock`] and
//! [`Command::apply`] (the keys-core transition, then `repo::save_api_key`),
//! an [`AuditAction`] if the action is new, and, if wanted, a typed method
//! of [`Mutations`]. The pipeline, both backends, the cache and the SQL stay
//! as they are.

use async_trait::async_trait;
use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyPatch, CoreError, GracePeriod, NewPublicKey, NewSigningKey,
    Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, PublicKey, PublicKeyId, PublicKeyPatch,
    PublicKeyRing, RequestId, ServiceTokenId, ServiceTokenRecord, SigningKeyRing, SigningKeyUid, Workspace,
    WorkspaceSigningKey, WorkspaceSlug, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::change::Change;
use crate::error::{Conflict, StoreError, StoreResult};
use crate::repo::{self, AuditPosition, AuditRow, Sql};
use crate::rows::{self, RowExt};

/// What an audit event says happened (docs/API.md, Audit events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    OrganisationCreated,
    WorkspaceCreated,
    ServiceTokenGenerated,
    ApiKeyGenerated,
    ApiKeyUpdated,
    ApiKeyDisabled,
    ApiKeyEnabled,
    ApiKeyRolled,
    ApiKeyDeleted,
    PublicApiKeyGenerated,
    PublicApiKeyUpdated,
    PublicApiKeyRotated,
    PublicApiKeyDeleted,
    SigningApiKeyGenerated,
    SigningApiKeyRolled,
    SigningApiKeyDeleted,
    OrganisationKeyGenerated,
    OrganisationKeyDeleted,
    ServiceTokenRevoked,
    AuditPruned,
}

impl AuditAction {
    /// Every action, for parsing.
    pub const ALL: [Self; 20] = [
        Self::OrganisationCreated,
        Self::WorkspaceCreated,
        Self::ServiceTokenGenerated,
        Self::ApiKeyGenerated,
        Self::ApiKeyUpdated,
        Self::ApiKeyDisabled,
        Self::ApiKeyEnabled,
        Self::ApiKeyRolled,
        Self::ApiKeyDeleted,
        Self::PublicApiKeyGenerated,
        Self::PublicApiKeyUpdated,
        Self::PublicApiKeyRotated,
        Self::PublicApiKeyDeleted,
        Self::SigningApiKeyGenerated,
        Self::SigningApiKeyRolled,
        Self::SigningApiKeyDeleted,
        Self::OrganisationKeyGenerated,
        Self::OrganisationKeyDeleted,
        Self::ServiceTokenRevoked,
        Self::AuditPruned,
    ];

    /// The stored and displayed name, e.g. `api_key.generated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganisationCreated => "organisation.created",
            Self::WorkspaceCreated => "workspace.created",
            Self::ServiceTokenGenerated => "service_token.generated",
            Self::ApiKeyGenerated => "api_key.generated",
            Self::ApiKeyUpdated => "api_key.updated",
            Self::ApiKeyDisabled => "api_key.disabled",
            Self::ApiKeyEnabled => "api_key.enabled",
            Self::ApiKeyRolled => "api_key.rolled",
            Self::ApiKeyDeleted => "api_key.deleted",
            Self::PublicApiKeyGenerated => "public_api_key.generated",
            Self::PublicApiKeyUpdated => "public_api_key.updated",
            Self::PublicApiKeyRotated => "public_api_key.rotated",
            Self::PublicApiKeyDeleted => "public_api_key.deleted",
            Self::SigningApiKeyGenerated => "signing_api_key.generated",
            Self::SigningApiKeyRolled => "signing_api_key.rolled",
            Self::SigningApiKeyDeleted => "signing_api_key.deleted",
            Self::OrganisationKeyGenerated => "organisation_key.generated",
            Self::OrganisationKeyDeleted => "organisation_key.deleted",
            Self::ServiceTokenRevoked => "service_token.revoked",
            Self::AuditPruned => "audit.pruned",
        }
    }

    /// What kind of thing the event's `target_id` names: the part of the
    /// name before the dot, except that a prune targets its organisation.
    pub fn target_type(self) -> &'static str {
        match self {
            Self::OrganisationCreated | Self::AuditPruned => "organisation",
            Self::WorkspaceCreated => "workspace",
            Self::ServiceTokenGenerated | Self::ServiceTokenRevoked => "service_token",
            Self::ApiKeyGenerated
            | Self::ApiKeyUpdated
            | Self::ApiKeyDisabled
            | Self::ApiKeyEnabled
            | Self::ApiKeyRolled
            | Self::ApiKeyDeleted => "api_key",
            Self::PublicApiKeyGenerated
            | Self::PublicApiKeyUpdated
            | Self::PublicApiKeyRotated
            | Self::PublicApiKeyDeleted => "public_api_key",
            Self::SigningApiKeyGenerated | Self::SigningApiKeyRolled | Self::SigningApiKeyDeleted => "signing_api_key",
            Self::OrganisationKeyGenerated | Self::OrganisationKeyDeleted => "organisation_key",
        }
    }

    /// The action named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the audit trail. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub organisation_id: OrganisationId,
    pub workspace: Option<WorkspaceUid>,
    pub actor: Option<Actor>,
    /// The service token that acted; `None` for the operator's CLI.
    pub token_id: Option<ServiceTokenId>,
    /// The HTTP request the change came from; `None` for the CLI.
    pub request_id: Option<RequestId>,
    pub action: AuditAction,
    pub target_id: String,
    pub at: OffsetDateTime,
}

impl AuditEvent {
    /// The row this event is stored as.
    pub(crate) fn row(&self) -> AuditRow<'_> {
        AuditRow {
            organisation_id: self.organisation_id.as_str(),
            workspace_uid: self.workspace.as_ref().map(WorkspaceUid::as_str),
            actor: self.actor.as_ref(),
            token_id: self.token_id.as_ref().map(ServiceTokenId::as_str),
            request_id: self.request_id.as_ref().map(RequestId::as_str),
            action: self.action.as_str(),
            target_id: &self.target_id,
            at: self.at,
        }
    }

    /// Reads a stored event back.
    pub(crate) fn decode(row: &impl RowExt) -> StoreResult<Self> {
        let workspace = row.optional_text("workspace_uid")?;
        let action = row.text("action")?;
        let token_id = row.optional_text("token_id")?;
        let request_id = row.optional_text("request_id")?;
        Ok(Self {
            organisation_id: rows::parsed(OrganisationId::parse(&row.text("organisation_id")?), "organisation_id")?,
            workspace: workspace.map(|uid| rows::parsed(WorkspaceUid::parse(&uid), "workspace_uid")).transpose()?,
            actor: rows::actor(row, "actor")?,
            token_id: token_id.map(|id| rows::parsed(ServiceTokenId::parse(&id), "token_id")).transpose()?,
            request_id: request_id.map(|id| rows::parsed(RequestId::parse(&id), "request_id")).transpose()?,
            action: AuditAction::parse(&action).ok_or_else(|| rows::corrupt("audit action", "action"))?,
            target_id: row.text("target_id")?,
            at: row.time("at")?,
        })
    }
}

/// An event as the trail holds it: its sequence number (`id`, the order of
/// insertion, which breaks ties of `at`) and the slug of its workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedAuditEvent {
    pub id: i64,
    pub event: AuditEvent,
    pub workspace_slug: Option<WorkspaceSlug>,
}

impl RecordedAuditEvent {
    /// Where this event sits in the trail's order, for the next page.
    pub fn position(&self) -> AuditPosition {
        AuditPosition { at: self.event.at, id: self.id }
    }

    pub(crate) fn decode(row: &impl RowExt) -> StoreResult<Self> {
        let slug = row.optional_text("workspace_slug")?;
        Ok(Self {
            id: row.integer("id")?,
            event: AuditEvent::decode(row)?,
            workspace_slug: slug.map(|slug| rows::parsed(WorkspaceSlug::parse(&slug), "workspace_slug")).transpose()?,
        })
    }
}

/// Who caused a change, beyond its actor: the service token that acted and
/// the request it came in. The pipeline writes both into every audit event
/// of the command; the CLI's changes have neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attribution {
    pub token_id: Option<ServiceTokenId>,
    pub request_id: Option<RequestId>,
}

/// A store whose commands are attributed: [`Mutations::execute`] (and so
/// every typed method) runs each command with this attribution. What
/// keys-service hands its use cases, so none of their signatures names it.
pub struct Attributed<'a, S: ?Sized> {
    store: &'a S,
    attribution: Attribution,
}

impl<S: ?Sized> std::fmt::Debug for Attributed<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attributed").field("attribution", &self.attribution).finish_non_exhaustive()
    }
}

impl<'a, S: Mutations + ?Sized> Attributed<'a, S> {
    pub fn new(store: &'a S, attribution: Attribution) -> Self {
        Self { store, attribution }
    }
}

#[async_trait]
impl<S: Mutations + ?Sized> Mutations for Attributed<'_, S> {
    async fn execute(&self, command: Command) -> StoreResult<Executed> {
        self.store.execute_attributed(command, &self.attribution).await
    }

    async fn execute_attributed(&self, command: Command, attribution: &Attribution) -> StoreResult<Executed> {
        self.store.execute_attributed(command, attribution).await
    }

    async fn record_api_key_uses(&self, uses: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<u64> {
        self.store.record_api_key_uses(uses).await
    }

    async fn record_service_token_uses(&self, uses: &[(ServiceTokenId, OffsetDateTime)]) -> StoreResult<u64> {
        self.store.record_service_token_uses(uses).await
    }
}

/// Where the events of a command belong: an organisation and, for what
/// happens inside one, a workspace.
struct Scope {
    organisation: OrganisationId,
    workspace: Option<WorkspaceUid>,
}

impl Scope {
    fn of_workspace(workspace: &Workspace) -> Self {
        Self { organisation: workspace.organisation_id.clone(), workspace: Some(workspace.uid.clone()) }
    }

    fn of_organisation(organisation: &OrganisationId) -> Self {
        Self { organisation: organisation.clone(), workspace: None }
    }

    fn event(&self, action: AuditAction, actor: Option<&Actor>, target_id: &str, at: OffsetDateTime) -> AuditEvent {
        AuditEvent {
            organisation_id: self.organisation.clone(),
            workspace: self.workspace.clone(),
            actor: actor.cloned(),
            token_id: None,
            request_id: None,
            action,
            target_id: target_id.to_owned(),
            at,
        }
    }
}

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

/// Every mutation of the store. Each carries what its transition needs,
/// `now` and the actor included (the store never reads the clock).
#[derive(Debug, Clone)]
pub enum Command {
    /// Writes the bootstrap state if, and only if, the database has no
    /// organisation yet. Safe when several processes start at once.
    Bootstrap(Bootstrap),
    /// Refused with [`Conflict::OrganisationNameTaken`] if the name exists.
    CreateOrganisation(Organisation),
    CreateServiceToken(ServiceTokenRecord),
    /// Refused with `LastAdminToken` when the token is the organisation's
    /// last admin token that authenticates at `now`, under any concurrency
    /// (the organisation's lock serializes revocations).
    RevokeServiceToken {
        organisation: OrganisationId,
        id: ServiceTokenId,
        actor: Option<Actor>,
        now: OffsetDateTime,
    },
    /// Refused with [`Conflict::SlugTaken`] if the organisation has the slug.
    CreateWorkspace(Workspace),
    /// Boxed: a key with its profile is the largest command by far.
    CreateApiKey(Box<ApiKey>),
    /// Patch, disable, enable, roll or delete one live API key.
    ChangeApiKey {
        workspace: WorkspaceUid,
        id: ApiKeyId,
        change: ApiKeyChange,
        actor: Actor,
        now: OffsetDateTime,
    },
    /// Through the workspace's `PublicKeyRing`: the first live key is the
    /// default.
    CreatePublicKey {
        new: NewPublicKey,
        actor: Actor,
        now: OffsetDateTime,
    },
    ChangePublicKey {
        workspace: WorkspaceUid,
        id: PublicKeyId,
        change: PublicKeyChange,
        actor: Actor,
        now: OffsetDateTime,
    },
    DeletePublicKey {
        workspace: WorkspaceUid,
        id: PublicKeyId,
        actor: Actor,
        now: OffsetDateTime,
    },
    /// Refused with `OnlyOneActiveSigningKey` while an active key exists,
    /// under any concurrency.
    CreateSigningKey {
        workspace: WorkspaceUid,
        new: NewSigningKey,
        actor: Actor,
        now: OffsetDateTime,
    },
    RollSigningKey {
        workspace: WorkspaceUid,
        uid: SigningKeyUid,
        grace: Option<GracePeriod>,
        new: NewSigningKey,
        actor: Actor,
        now: OffsetDateTime,
    },
    DeleteSigningKey {
        workspace: WorkspaceUid,
        uid: SigningKeyUid,
        actor: Actor,
        now: OffsetDateTime,
    },
    CreateOrganisationKey(OrganisationSigningKey),
    DeleteOrganisationKey {
        organisation: OrganisationId,
        id: OrganisationKeyId,
        actor: Actor,
        now: OffsetDateTime,
    },
    /// Deletes the organisation's audit events older than `before` (the one
    /// way the database lets events go) and records one `audit.pruned`.
    PruneAuditEvents {
        organisation: OrganisationId,
        before: OffsetDateTime,
        now: OffsetDateTime,
    },
}

/// What a command locks before it reads anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock<'a> {
    /// Nothing to lock (creating an organisation: the unique name decides).
    Nothing,
    /// Bootstrap attempts exclude each other across processes.
    Bootstrap,
    Organisation(&'a OrganisationId),
    Workspace(&'a WorkspaceUid),
}

/// What the pipeline found, and holds, under the lock.
#[derive(Debug)]
pub enum Locked {
    Nothing,
    Organisation(Organisation),
    Workspace(Workspace),
}

/// What a command returns to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command wrote what it was given.
    Done,
    /// Whether the bootstrap wrote anything.
    Bootstrapped(bool),
    ApiKey(ApiKey),
    /// (the rolled key, the key that replaces it), boxed as the signing
    /// keys' pair is.
    RolledApiKey(Box<(ApiKey, ApiKey)>),
    PublicKey(PublicKey),
    SigningKey(WorkspaceSigningKey),
    /// (the rolled key, the new active key), boxed: two keys are twice the
    /// size of every other outcome.
    RolledSigningKey(Box<(WorkspaceSigningKey, WorkspaceSigningKey)>),
    OrganisationKey(OrganisationSigningKey),
    /// Boxed: a token's record carries its limit and stamps.
    ServiceToken(Box<ServiceTokenRecord>),
    /// How many audit events a prune deleted.
    Pruned(u64),
}

/// A committed command: its outcome, and what it changed (none when it
/// wrote nothing, as a bootstrap of a database that has one already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    pub outcome: Outcome,
    pub change: Option<Change>,
}

/// What [`Command::apply`] wrote: the outcome, the audit events to insert
/// beside it (none means nothing was written) and the change to announce.
#[derive(Debug)]
pub(crate) struct Applied {
    pub outcome: Outcome,
    pub events: Vec<AuditEvent>,
    pub change: Option<Change>,
}

impl Applied {
    fn one(outcome: Outcome, event: AuditEvent, change: Change) -> Self {
        Self { outcome, events: vec![event], change: Some(change) }
    }
}

/// The lock a command holds, when it is not the one the command named.
fn lost_lock() -> StoreError {
    StoreError::Inconsistent("a command ran without the lock it names".to_owned())
}

fn locked_workspace(locked: Locked) -> StoreResult<Workspace> {
    match locked {
        Locked::Workspace(workspace) => Ok(workspace),
        _ => Err(lost_lock()),
    }
}

fn locked_organisation(locked: Locked) -> StoreResult<Organisation> {
    match locked {
        Locked::Organisation(organisation) => Ok(organisation),
        _ => Err(lost_lock()),
    }
}

/// The writes of creating an organisation, shared with the bootstrap.
async fn write_organisation<C: Sql + ?Sized>(sql: &mut C, organisation: &Organisation) -> StoreResult<AuditEvent> {
    if repo::organisation_by_name(sql, organisation.name.as_str()).await?.is_some() {
        return Err(Conflict::OrganisationNameTaken(organisation.name.as_str().to_owned()).into());
    }
    repo::insert_organisation(sql, organisation).await?;
    let scope = Scope::of_organisation(&organisation.id);
    Ok(scope.event(AuditAction::OrganisationCreated, None, organisation.id.as_str(), organisation.created_at))
}

/// The writes of creating a workspace, shared with the bootstrap. The
/// caller holds the organisation.
async fn write_workspace<C: Sql + ?Sized>(sql: &mut C, workspace: &Workspace) -> StoreResult<AuditEvent> {
    if repo::workspace_by_slug(sql, &workspace.organisation_id, workspace.slug.as_str()).await?.is_some() {
        return Err(Conflict::SlugTaken(workspace.slug.as_str().to_owned()).into());
    }
    repo::insert_workspace(sql, workspace).await?;
    let (action, actor) = (AuditAction::WorkspaceCreated, workspace.created_by.as_ref());
    Ok(Scope::of_workspace(workspace).event(action, actor, workspace.uid.as_str(), workspace.created_at))
}

/// The writes of creating a service token, shared with the bootstrap.
async fn write_service_token<C: Sql + ?Sized>(sql: &mut C, token: &ServiceTokenRecord) -> StoreResult<AuditEvent> {
    repo::insert_service_token(sql, token).await?;
    let scope = Scope::of_organisation(&token.organisation_id);
    let (action, actor) = (AuditAction::ServiceTokenGenerated, token.created_by.as_ref());
    Ok(scope.event(action, actor, token.id.as_str(), token.created_at))
}

impl Command {
    /// The aggregate this command serializes on.
    pub fn lock(&self) -> Lock<'_> {
        match self {
            Self::Bootstrap(_) => Lock::Bootstrap,
            Self::CreateOrganisation(_) => Lock::Nothing,
            Self::CreateServiceToken(token) => Lock::Organisation(&token.organisation_id),
            Self::RevokeServiceToken { organisation, .. } => Lock::Organisation(organisation),
            Self::CreateWorkspace(workspace) => Lock::Organisation(&workspace.organisation_id),
            Self::CreateOrganisationKey(key) => Lock::Organisation(&key.organisation_id),
            Self::DeleteOrganisationKey { organisation, .. } | Self::PruneAuditEvents { organisation, .. } => {
                Lock::Organisation(organisation)
            }
            Self::CreateApiKey(key) => Lock::Workspace(&key.workspace),
            Self::ChangeApiKey { workspace, .. }
            | Self::CreatePublicKey { new: NewPublicKey { workspace, .. }, .. }
            | Self::ChangePublicKey { workspace, .. }
            | Self::DeletePublicKey { workspace, .. }
            | Self::CreateSigningKey { workspace, .. }
            | Self::RollSigningKey { workspace, .. }
            | Self::DeleteSigningKey { workspace, .. } => Lock::Workspace(workspace),
        }
    }

    /// Loads what the transition needs (the pipeline holds the lock and
    /// passes what it locked), applies the keys-core transition and writes
    /// the result. Returns the outcome, the audit events and the change.
    pub(crate) async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied> {
        match self {
            Self::Bootstrap(bootstrap) => {
                if repo::count_organisations(sql).await? > 0 {
                    return Ok(Applied { outcome: Outcome::Bootstrapped(false), events: Vec::new(), change: None });
                }
                let mut events = vec![write_organisation(sql, &bootstrap.organisation).await?];
                for workspace in &bootstrap.workspaces {
                    events.push(write_workspace(sql, workspace).await?);
                }
                events.push(write_service_token(sql, &bootstrap.token).await?);
                Ok(Applied { outcome: Outcome::Bootstrapped(true), events, change: Some(Change::Everything) })
            }
            Self::CreateOrganisation(organisation) => {
                let event = write_organisation(sql, &organisation).await?;
                Ok(Applied::one(Outcome::Done, event, Change::Organisation(organisation.id)))
            }
            Self::CreateServiceToken(token) => {
                let event = write_service_token(sql, &token).await?;
                Ok(Applied::one(Outcome::Done, event, Change::ServiceToken(token.digest)))
            }
            Self::RevokeServiceToken { id, actor, now, .. } => {
                let organisation = locked_organisation(locked)?;
                let found = repo::service_token(sql, &organisation.id, &id).await?;
                let mut token = found
                    .filter(|token| token.revoked_at.is_none())
                    .ok_or(StoreError::NotFound { kind: "service token" })?;
                let others = repo::other_live_admin_tokens(sql, &organisation.id, &id, now).await?;
                token.revoke(usize::try_from(others).unwrap_or(usize::MAX), actor.as_ref(), now)?;
                repo::save_service_token_revocation(sql, &token).await?;
                let at = token.revoked_at.unwrap_or(now);
                let scope = Scope::of_organisation(&organisation.id);
                let event = scope.event(AuditAction::ServiceTokenRevoked, actor.as_ref(), id.as_str(), at);
                let change = Change::ServiceToken(token.digest);
                Ok(Applied::one(Outcome::ServiceToken(Box::new(token)), event, change))
            }
            Self::CreateWorkspace(workspace) => {
                let event = write_workspace(sql, &workspace).await?;
                Ok(Applied::one(Outcome::Done, event, Change::Workspace(workspace.uid)))
            }
            Self::CreateApiKey(key) => {
                let scope = Scope::of_workspace(&locked_workspace(locked)?);
                repo::insert_api_key(sql, &key).await?;
                let event =
                    scope.event(AuditAction::ApiKeyGenerated, key.created_by.as_ref(), key.id.as_str(), key.created_at);
                Ok(Applied::one(Outcome::Done, event, Change::ApiKey(key.digest)))
            }
            Self::ChangeApiKey { id, change, actor, now, .. } => {
                let workspace = locked_workspace(locked)?;
                let found = repo::api_key(sql, &workspace.uid, &id).await?.filter(|key| !key.is_deleted());
                let mut key = found.ok_or(StoreError::NotFound { kind: "api key" })?;
                let (action, fresh) = match change {
                    ApiKeyChange::Patch(patch) => {
                        (AuditAction::ApiKeyUpdated, key.patch(patch, &actor, now).map(|()| None))
                    }
                    ApiKeyChange::Disable => (AuditAction::ApiKeyDisabled, key.disable(&actor, now).map(|()| None)),
                    ApiKeyChange::Enable => (AuditAction::ApiKeyEnabled, key.enable(&actor, now).map(|()| None)),
                    ApiKeyChange::Roll { grace, material } => {
                        (AuditAction::ApiKeyRolled, key.roll(grace, material, &actor, now).map(Some))
                    }
                    ApiKeyChange::Delete => (AuditAction::ApiKeyDeleted, key.delete(&actor, now).map(|()| None)),
                };
                let fresh = fresh?;
                repo::save_api_key(sql, &key).await?;
                // The new key's digest needs no announcement: no process can
                // have looked up a secret that is not handed out yet.
                let change = Change::ApiKey(key.digest);
                let at = key.deleted_at().unwrap_or(key.updated_at);
                let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
                let outcome = match fresh {
                    Some(fresh) => {
                        repo::insert_api_key(sql, &fresh).await?;
                        Outcome::RolledApiKey(Box::new((key, fresh)))
                    }
                    None => Outcome::ApiKey(key),
                };
                Ok(Applied::one(outcome, event, change))
            }
            Self::CreatePublicKey { new, actor, now } => {
                let workspace = locked_workspace(locked)?;
                let mut ring = PublicKeyRing::restore(repo::live_public_keys(sql, &workspace.uid).await?);
                let key = ring.create(new, &actor, now).clone();
                repo::insert_public_key(sql, &key).await?;
                let (action, at) = (AuditAction::PublicApiKeyGenerated, key.created_at);
                let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
                Ok(Applied::one(Outcome::PublicKey(key), event, Change::PublicKeys(workspace.uid)))
            }
            Self::ChangePublicKey { id, change, actor, now, .. } => {
                let workspace = locked_workspace(locked)?;
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
                let event =
                    Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), key.updated_at);
                Ok(Applied::one(Outcome::PublicKey(key), event, Change::PublicKeys(workspace.uid)))
            }
            Self::DeletePublicKey { id, actor, now, .. } => {
                let workspace = locked_workspace(locked)?;
                let mut ring = PublicKeyRing::restore(repo::live_public_keys(sql, &workspace.uid).await?);
                let key = ring.delete(&id, &actor, now)?;
                repo::save_public_key(sql, &key).await?;
                let (action, at) = (AuditAction::PublicApiKeyDeleted, key.updated_at);
                let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.id.as_str(), at);
                Ok(Applied::one(Outcome::PublicKey(key), event, Change::PublicKeys(workspace.uid)))
            }
            Self::CreateSigningKey { new, actor, now, .. } => {
                let workspace = locked_workspace(locked)?;
                let live = repo::live_signing_keys(sql, &workspace.uid).await?;
                let key = SigningKeyRing::restore(workspace.uid.clone(), live).create(new, &actor, now)?.clone();
                repo::insert_signing_key(sql, &key).await?;
                let (action, at) = (AuditAction::SigningApiKeyGenerated, key.created_at);
                let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.uid.as_str(), at);
                Ok(Applied::one(Outcome::SigningKey(key), event, Change::SigningKeys(workspace.uid)))
            }
            Self::RollSigningKey { uid, grace, new, actor, now, .. } => {
                let workspace = locked_workspace(locked)?;
                let mut ring =
                    SigningKeyRing::restore(workspace.uid.clone(), repo::live_signing_keys(sql, &workspace.uid).await?);
                let (rolled, fresh) = ring.roll(&uid, grace, new, &actor, now)?;
                let (rolled, fresh) = (rolled.clone(), fresh.clone());
                // The rolled key leaves the active slot before the new key
                // takes it; the other order would trip the one-active index.
                repo::save_signing_key(sql, &rolled).await?;
                repo::insert_signing_key(sql, &fresh).await?;
                // One change, one event (docs/GUARANTEES.md, The audit trail), on the key rolled.
                let (action, at) = (AuditAction::SigningApiKeyRolled, fresh.created_at);
                let event = Scope::of_workspace(&workspace).event(action, Some(&actor), rolled.uid.as_str(), at);
                let outcome = Outcome::RolledSigningKey(Box::new((rolled, fresh)));
                Ok(Applied::one(outcome, event, Change::SigningKeys(workspace.uid)))
            }
            Self::DeleteSigningKey { uid, actor, now, .. } => {
                let workspace = locked_workspace(locked)?;
                let mut ring =
                    SigningKeyRing::restore(workspace.uid.clone(), repo::live_signing_keys(sql, &workspace.uid).await?);
                let key = ring.delete(&uid, &actor, now)?;
                repo::save_signing_key(sql, &key).await?;
                let (action, at) = (AuditAction::SigningApiKeyDeleted, key.deleted_at().unwrap_or(now));
                let event = Scope::of_workspace(&workspace).event(action, Some(&actor), key.uid.as_str(), at);
                Ok(Applied::one(Outcome::SigningKey(key), event, Change::SigningKeys(workspace.uid)))
            }
            Self::CreateOrganisationKey(key) => {
                let scope = Scope::of_organisation(&locked_organisation(locked)?.id);
                repo::insert_organisation_key(sql, &key).await?;
                let (action, actor) = (AuditAction::OrganisationKeyGenerated, key.created_by.as_ref());
                let event = scope.event(action, actor, key.id.as_str(), key.created_at);
                let change = Change::OrganisationKey(key.id.clone());
                Ok(Applied::one(Outcome::Done, event, change))
            }
            Self::DeleteOrganisationKey { id, actor, now, .. } => {
                let organisation = locked_organisation(locked)?;
                let found = repo::organisation_key(sql, &id).await?;
                let found = found.filter(|key| key.organisation_id == organisation.id && !key.is_deleted());
                let mut key = found.ok_or(StoreError::NotFound { kind: "organisation signing key" })?;
                key.delete(&actor, now)?;
                repo::save_organisation_key(sql, &key).await?;
                let (action, at) = (AuditAction::OrganisationKeyDeleted, key.deleted_at.unwrap_or(now));
                let event = Scope::of_organisation(&organisation.id).event(action, Some(&actor), key.id.as_str(), at);
                let change = Change::OrganisationKey(key.id.clone());
                Ok(Applied::one(Outcome::OrganisationKey(key), event, change))
            }
            Self::PruneAuditEvents { before, now, .. } => {
                let organisation = locked_organisation(locked)?;
                let pruned = repo::prune_audit_events(sql, &organisation.id, before).await?;
                // Written after the delete, so a prune never removes its own
                // event, whatever `before` is. Nothing cached depends on the
                // trail: no change to announce.
                let (action, at) = (AuditAction::AuditPruned, keys_core::timestamp(now));
                let event = Scope::of_organisation(&organisation.id).event(action, None, organisation.id.as_str(), at);
                Ok(Applied { outcome: Outcome::Pruned(pruned), events: vec![event], change: None })
            }
        }
    }
}

/// The outcome a typed method expects, or a fault: `execute` answered a
/// command with another command's kind of outcome.
fn outcome_of<T>(executed: Executed, pick: impl FnOnce(Outcome) -> Option<T>) -> StoreResult<T> {
    pick(executed.outcome).ok_or_else(|| StoreError::Inconsistent("a command returned another kind of outcome".into()))
}

/// The mutations of the store: one object-safe entry point,
/// [`Mutations::execute`], and a typed method per command for callers.
///
/// Mutations that target something missing (or already deleted) fail with
/// [`StoreError::NotFound`]; taken names with [`StoreError::Conflict`];
/// domain refusals with [`StoreError::Refused`].
#[async_trait]
pub trait Mutations: Send + Sync {
    /// Runs one command in one transaction (see the module documentation)
    /// and returns its outcome with the change it committed; its audit
    /// events carry `attribution`.
    async fn execute_attributed(&self, command: Command, attribution: &Attribution) -> StoreResult<Executed>;

    /// [`Mutations::execute_attributed`] with no attribution (the CLI's
    /// changes), or with the one an [`Attributed`] store holds. Every typed
    /// method below goes through this.
    async fn execute(&self, command: Command) -> StoreResult<Executed> {
        self.execute_attributed(command, &Attribution::default()).await
    }

    /// Writes the bootstrap state if the database has no organisation yet;
    /// returns whether it did.
    async fn bootstrap_if_empty(&self, bootstrap: &Bootstrap) -> StoreResult<bool> {
        let executed = self.execute(Command::Bootstrap(bootstrap.clone())).await?;
        let done =
            outcome_of(executed, |outcome| if let Outcome::Bootstrapped(done) = outcome { Some(done) } else { None })?;
        if done {
            tracing::info!(organisation = %bootstrap.organisation.id, "bootstrapped an empty database");
        }
        Ok(done)
    }

    async fn create_organisation(&self, organisation: &Organisation) -> StoreResult<()> {
        self.execute(Command::CreateOrganisation(organisation.clone())).await.map(drop)
    }

    async fn create_service_token(&self, token: &ServiceTokenRecord) -> StoreResult<()> {
        self.execute(Command::CreateServiceToken(token.clone())).await.map(drop)
    }

    /// Revokes a live token of the organisation; returns it as it now is.
    async fn revoke_service_token(
        &self,
        organisation: &OrganisationId,
        id: &ServiceTokenId,
        actor: Option<&Actor>,
        now: OffsetDateTime,
    ) -> StoreResult<ServiceTokenRecord> {
        let command = Command::RevokeServiceToken {
            organisation: organisation.clone(),
            id: id.clone(),
            actor: actor.cloned(),
            now,
        };
        outcome_of(self.execute(command).await?, |outcome| match outcome {
            Outcome::ServiceToken(token) => Some(*token),
            _ => None,
        })
    }

    async fn create_workspace(&self, workspace: &Workspace) -> StoreResult<()> {
        self.execute(Command::CreateWorkspace(workspace.clone())).await.map(drop)
    }

    async fn create_api_key(&self, key: &ApiKey) -> StoreResult<()> {
        self.execute(Command::CreateApiKey(Box::new(key.clone()))).await.map(drop)
    }

    /// Patches, disables, enables or deletes a live API key; returns it as
    /// it now is.
    async fn change_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        change: ApiKeyChange,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<ApiKey> {
        let (workspace, id, actor) = (workspace.clone(), id.clone(), actor.clone());
        let executed = self.execute(Command::ChangeApiKey { workspace, id, change, actor, now }).await?;
        outcome_of(executed, |outcome| match outcome {
            Outcome::ApiKey(key) => Some(key),
            Outcome::RolledApiKey(pair) => Some(pair.0),
            _ => None,
        })
    }

    async fn delete_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<ApiKey> {
        self.change_api_key(workspace, id, ApiKeyChange::Delete, actor, now).await
    }

    /// Returns (the rolled key, the key that replaces it).
    async fn roll_api_key(
        &self,
        workspace: &WorkspaceUid,
        id: &ApiKeyId,
        grace: Option<GracePeriod>,
        material: ApiKeyMaterial,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<(ApiKey, ApiKey)> {
        let (workspace, id, actor) = (workspace.clone(), id.clone(), actor.clone());
        let change = ApiKeyChange::Roll { grace, material };
        let executed = self.execute(Command::ChangeApiKey { workspace, id, change, actor, now }).await?;
        outcome_of(executed, |outcome| match outcome {
            Outcome::RolledApiKey(pair) => Some(*pair),
            _ => None,
        })
    }

    /// Moves each key's `last_used_at` forwards to the use given, never
    /// backwards, in one transaction; not an audited change, and nothing
    /// cached depends on it. Returns how many rows moved.
    async fn record_api_key_uses(&self, uses: &[(ApiKeyId, OffsetDateTime)]) -> StoreResult<u64>;

    /// As [`Mutations::record_api_key_uses`], for service tokens.
    async fn record_service_token_uses(&self, uses: &[(ServiceTokenId, OffsetDateTime)]) -> StoreResult<u64>;

    #[allow(clippy::too_many_arguments)]
    async fn create_public_key(&self, new: NewPublicKey, actor: &Actor, now: OffsetDateTime) -> StoreResult<PublicKey> {
        let command = Command::CreatePublicKey { new, actor: actor.clone(), now };
        outcome_of(self.execute(command).await?, public_key)
    }

    async fn change_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        change: PublicKeyChange,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let (workspace, id, actor) = (workspace.clone(), id.clone(), actor.clone());
        outcome_of(self.execute(Command::ChangePublicKey { workspace, id, change, actor, now }).await?, public_key)
    }

    async fn delete_public_key(
        &self,
        workspace: &WorkspaceUid,
        id: &PublicKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<PublicKey> {
        let (workspace, id, actor) = (workspace.clone(), id.clone(), actor.clone());
        outcome_of(self.execute(Command::DeletePublicKey { workspace, id, actor, now }).await?, public_key)
    }

    async fn create_signing_key(
        &self,
        workspace: &WorkspaceUid,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey> {
        let (workspace, actor) = (workspace.clone(), actor.clone());
        outcome_of(self.execute(Command::CreateSigningKey { workspace, new, actor, now }).await?, signing_key)
    }

    /// Returns (the rolled key, the new active key).
    async fn roll_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<(WorkspaceSigningKey, WorkspaceSigningKey)> {
        let (workspace, uid, actor) = (workspace.clone(), uid.clone(), actor.clone());
        let executed = self.execute(Command::RollSigningKey { workspace, uid, grace, new, actor, now }).await?;
        outcome_of(executed, |outcome| match outcome {
            Outcome::RolledSigningKey(pair) => Some(*pair),
            _ => None,
        })
    }

    async fn delete_signing_key(
        &self,
        workspace: &WorkspaceUid,
        uid: &SigningKeyUid,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<WorkspaceSigningKey> {
        let (workspace, uid, actor) = (workspace.clone(), uid.clone(), actor.clone());
        outcome_of(self.execute(Command::DeleteSigningKey { workspace, uid, actor, now }).await?, signing_key)
    }

    async fn create_organisation_key(&self, key: &OrganisationSigningKey) -> StoreResult<()> {
        self.execute(Command::CreateOrganisationKey(key.clone())).await.map(drop)
    }

    async fn delete_organisation_key(
        &self,
        organisation: &OrganisationId,
        id: &OrganisationKeyId,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> StoreResult<OrganisationSigningKey> {
        let (organisation, id, actor) = (organisation.clone(), id.clone(), actor.clone());
        let executed = self.execute(Command::DeleteOrganisationKey { organisation, id, actor, now }).await?;
        outcome_of(executed, |outcome| if let Outcome::OrganisationKey(key) = outcome { Some(key) } else { None })
    }

    /// Deletes the organisation's audit events older than `before` in one
    /// transaction, recording one `audit.pruned`; returns how many went.
    async fn prune_audit_events(
        &self,
        organisation: &OrganisationId,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> StoreResult<u64> {
        let command = Command::PruneAuditEvents { organisation: organisation.clone(), before, now };
        let executed = self.execute(command).await?;
        outcome_of(executed, |outcome| if let Outcome::Pruned(count) = outcome { Some(count) } else { None })
    }
}

fn public_key(outcome: Outcome) -> Option<PublicKey> {
    if let Outcome::PublicKey(key) = outcome {
        Some(key)
    } else {
        None
    }
}

fn signing_key(outcome: Outcome) -> Option<WorkspaceSigningKey> {
    if let Outcome::SigningKey(key) = outcome {
        Some(key)
    } else {
        None
    }
}

/// The refusal of the domain for something missing, as the store's outcome:
/// the rings of keys-core answer `CoreError::NotFound` for a key that is not
/// in them. Applied once, where the pipeline returns.
pub(crate) fn store_outcome(error: StoreError) -> StoreError {
    match error {
        StoreError::Refused(CoreError::NotFound { kind }) => StoreError::NotFound { kind },
        other => other,
    }
}
