//! The audit trail's values ([`AuditAction`], [`AuditEvent`],
//! [`RecordedAuditEvent`]) and its one command, [`PruneAuditEvents`].

use keys_core::{Actor, EntityKind, Mutation, OrganisationId, RequestId, ServiceTokenId, WorkspaceSlug, WorkspaceUid};
use time::OffsetDateTime;

use super::{Applied, Command, Lock, Locked, Scope};
use crate::error::StoreResult;
use crate::repo::{self, AuditPosition, AuditRow, Sql};
use crate::rows::{self, RowExt};

/// What an audit event says happened (docs/API.md, Audit events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    OrganisationCreated,
    WorkspaceCreated,
    WorkspaceUpdated,
    ServiceTokenGenerated,
    ApiKeyGenerated,
    ApiKeyUpdated,
    ApiKeyDisabled,
    ApiKeyEnabled,
    ApiKeyRolled,
    ApiKeyDeleted,
    ApiKeyImported,
    ApiKeyLeaked,
    ApiKeyCreditsUpdated,
    IdentityUpdated,
    IdentityDeleted,
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
    WebhookEndpointCreated,
    WebhookEndpointUpdated,
    WebhookEndpointSecretRotated,
    WebhookEndpointDeleted,
    WebhookEndpointDisabled,
    /// An action a later release records, read back by this one: events
    /// are kept whatever wrote them, so a binary serves the trail of the
    /// next release's schema (docs/OPERATIONS.md, "Upgrading and rolling
    /// back"). Never written by this release; see [`AuditAction::later`].
    Later(&'static str),
}

impl AuditAction {
    /// Every action, for parsing.
    pub const ALL: [Self; 31] = [
        Self::OrganisationCreated,
        Self::WorkspaceCreated,
        Self::WorkspaceUpdated,
        Self::ServiceTokenGenerated,
        Self::ApiKeyGenerated,
        Self::ApiKeyUpdated,
        Self::ApiKeyDisabled,
        Self::ApiKeyEnabled,
        Self::ApiKeyRolled,
        Self::ApiKeyDeleted,
        Self::ApiKeyImported,
        Self::ApiKeyLeaked,
        Self::ApiKeyCreditsUpdated,
        Self::IdentityUpdated,
        Self::IdentityDeleted,
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
        Self::WebhookEndpointCreated,
        Self::WebhookEndpointUpdated,
        Self::WebhookEndpointSecretRotated,
        Self::WebhookEndpointDeleted,
        Self::WebhookEndpointDisabled,
    ];

    /// The stored and displayed name, e.g. `api_key.generated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganisationCreated => "organisation.created",
            Self::WorkspaceCreated => "workspace.created",
            Self::WorkspaceUpdated => "workspace.updated",
            Self::ServiceTokenGenerated => "service_token.generated",
            Self::ApiKeyGenerated => "api_key.generated",
            Self::ApiKeyUpdated => "api_key.updated",
            Self::ApiKeyDisabled => "api_key.disabled",
            Self::ApiKeyEnabled => "api_key.enabled",
            Self::ApiKeyRolled => "api_key.rolled",
            Self::ApiKeyDeleted => "api_key.deleted",
            Self::ApiKeyImported => "api_key.imported",
            Self::ApiKeyLeaked => "api_key.leaked",
            Self::ApiKeyCreditsUpdated => "api_key.credits_updated",
            Self::IdentityUpdated => "identity.updated",
            Self::IdentityDeleted => "identity.deleted",
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
            Self::WebhookEndpointCreated => "webhook_endpoint.created",
            Self::WebhookEndpointUpdated => "webhook_endpoint.updated",
            Self::WebhookEndpointSecretRotated => "webhook_endpoint.secret_rotated",
            Self::WebhookEndpointDeleted => "webhook_endpoint.deleted",
            Self::WebhookEndpointDisabled => "webhook_endpoint.disabled",
            Self::Later(name) => name,
        }
    }

    /// What kind of thing the event's `target_id` names: the part of the
    /// name before the dot, except that a prune targets its organisation.
    pub fn target_type(self) -> &'static str {
        match self {
            Self::OrganisationCreated | Self::AuditPruned => "organisation",
            Self::WorkspaceCreated | Self::WorkspaceUpdated => "workspace",
            Self::ServiceTokenGenerated | Self::ServiceTokenRevoked => "service_token",
            Self::ApiKeyGenerated
            | Self::ApiKeyUpdated
            | Self::ApiKeyDisabled
            | Self::ApiKeyEnabled
            | Self::ApiKeyRolled
            | Self::ApiKeyDeleted
            | Self::ApiKeyImported
            | Self::ApiKeyLeaked
            | Self::ApiKeyCreditsUpdated => "api_key",
            Self::IdentityUpdated | Self::IdentityDeleted => "identity",
            Self::PublicApiKeyGenerated
            | Self::PublicApiKeyUpdated
            | Self::PublicApiKeyRotated
            | Self::PublicApiKeyDeleted => "public_api_key",
            Self::SigningApiKeyGenerated | Self::SigningApiKeyRolled | Self::SigningApiKeyDeleted => "signing_api_key",
            Self::OrganisationKeyGenerated | Self::OrganisationKeyDeleted => "organisation_key",
            Self::WebhookEndpointCreated
            | Self::WebhookEndpointUpdated
            | Self::WebhookEndpointSecretRotated
            | Self::WebhookEndpointDeleted
            | Self::WebhookEndpointDisabled => "webhook_endpoint",
            Self::Later(name) => name.split_once('.').map_or(name, |(kind, _)| kind),
        }
    }

    /// The action named `name`, if it is one this release knows.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }

    /// A stored action this release does not know, when it is shaped like
    /// one (`kind.what`: lowercase letters and underscores, at most 64
    /// bytes): [`AuditAction::Later`]. Each distinct name is kept once for
    /// the life of the process (they are the few action names of later
    /// releases), so the action stays `Copy`.
    pub fn later(name: &str) -> Option<Self> {
        let word = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_');
        let shaped = name.len() <= 64 && name.split_once('.').is_some_and(|(kind, what)| word(kind) && word(what));
        if !shaped {
            return None;
        }
        static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
        let mut names = NAMES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let interned = match names.iter().find(|known| **known == name) {
            Some(known) => *known,
            None => {
                let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
                names.push(leaked);
                leaked
            }
        };
        Some(Self::Later(interned))
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
    /// What else the event says, never a secret: the source URL of a
    /// leak report (`source=…`). At most [`AuditEvent::MAX_DETAIL`] bytes.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The longest `detail` (the tables' CHECK).
    pub const MAX_DETAIL: usize = 2048;

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
            detail: self.detail.as_deref(),
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
            action: AuditAction::parse(&action)
                .or_else(|| AuditAction::later(&action))
                .ok_or_else(|| rows::corrupt("audit action", "action"))?,
            target_id: row.text("target_id")?,
            at: row.time("at")?,
            detail: row.optional_text("detail")?,
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

command! {
    /// Deletes the organisation's audit events older than `before` (the one
    /// way the database lets events go) and records one `audit.pruned`.
    /// Returns how many went.
    PruneAuditEvents { organisation: OrganisationId, before: OffsetDateTime, now: OffsetDateTime } -> u64,
        lock |command| Lock::Organisation(&command.organisation),
        mutation |_command| Mutation::Update(EntityKind::AuditTrail);
    apply |Self { before, now, .. }, sql, locked| {
        let organisation = locked.organisation()?;
        let pruned = repo::prune_audit_events(sql, &organisation.id, before).await?;
        // Written after the delete, so a prune never removes its own
        // event, whatever `before` is. Nothing cached depends on the
        // trail: no change to announce.
        let (action, at) = (AuditAction::AuditPruned, keys_core::timestamp(now));
        let event = Scope::of_organisation(&organisation.id).event(action, None, organisation.id.as_str(), at);
        Ok(Applied { output: pruned, events: vec![event], change: None })
    }
}
