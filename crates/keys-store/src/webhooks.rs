//! The values of webhooks in the store (docs/WEBHOOKS.md): the endpoints
//! with their secrets, the warnings, the attempts. The trait that reads and
//! writes them is [`crate::Webhooks`] (`outbox`), the SQL
//! `repo::webhooks`'s, and the commands that change endpoints
//! `commands::webhooks`'.

use keys_core::webhook::{EndpointSecrets, WebhookEndpoint, WebhookEndpointId};
use keys_core::{OrganisationId, WorkspaceUid};
use time::{Duration, OffsetDateTime};

/// An endpoint as the store holds it: the record and its secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secrets: EndpointSecrets,
}

/// A warning (an event that is not a change: `api_key.expiring`, …),
/// stored once across replicas: a second one with the same `dedupe` is
/// dropped by the database. Stored only when an enabled endpoint of the
/// organisation subscribes to it; its deliveries are written by the
/// database in the same statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub organisation_id: OrganisationId,
    pub workspace: Option<WorkspaceUid>,
    /// The event type.
    pub kind: &'static str,
    /// What makes it once: `api_key.expiring:<key>:<lead seconds>`, …
    pub dedupe: String,
    /// The event's `data`, as JSON; never a secret.
    pub data: String,
    pub at: OffsetDateTime,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again at this time.
    RetryAt(OffsetDateTime),
    /// Failed, and the schedule is spent.
    Failed,
}

/// An attempt made, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedAttempt {
    pub delivery_id: i64,
    pub endpoint_id: WebhookEndpointId,
    /// The claim it was made under.
    pub claim: String,
    pub at: OffsetDateTime,
    /// The receiver's status, when it answered.
    pub status_code: Option<u16>,
    /// Why it failed, when it did not answer with a 2xx (never a secret).
    pub error: Option<String>,
    pub duration: Duration,
    pub outcome: AttemptOutcome,
}

/// One attempt as the deliveries list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub id: i64,
    pub message_id: String,
    pub kind: String,
    pub at: OffsetDateTime,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The delivery's state now: `pending`, `delivered` or `failed`.
    pub state: String,
    /// When it is tried again, if it is pending.
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// A live, active API key that expires within a lead time and has had no
/// warning for it (nor for a shorter one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiringKey {
    pub organisation_id: OrganisationId,
    pub workspace: WorkspaceUid,
    pub workspace_slug: String,
    pub key_id: String,
    pub name: String,
    pub expires_at: OffsetDateTime,
}
