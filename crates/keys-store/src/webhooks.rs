//! Webhooks in the store (docs/WEBHOOKS.md): the endpoints with their
//! secrets, the warnings, and the delivery rows the database's triggers
//! write in the transaction of each event (migration 0011), which the
//! deliverers of every replica claim, attempt and finish. The SQL is
//! `repo::webhooks`'s; the commands that change endpoints are
//! `commands::webhooks`'.

use async_trait::async_trait;
use keys_core::webhook::{EndpointSecrets, WebhookEndpoint, WebhookEndpointId};
use keys_core::{OrganisationId, WorkspaceUid};
use time::{Duration, OffsetDateTime};

use crate::commands::RecordedAuditEvent;
use crate::error::StoreResult;

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

/// What a claimed delivery sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An audit event: its `data` is the event as the audit API shows it.
    Audit(RecordedAuditEvent),
    /// A warning's data, as stored, and when it happened.
    Warning { data: String, at: OffsetDateTime },
    /// The event is no longer stored (the audit trail was pruned before
    /// the delivery succeeded).
    Gone,
}

/// One delivery a replica claimed: it alone attempts it until its claim
/// runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// The `webhook-id`: `evt_<n>` or `wrn_<n>`.
    pub message_id: String,
    pub kind: String,
    /// Attempts made before this one.
    pub attempts: u32,
    pub created_at: OffsetDateTime,
    pub payload: Payload,
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

/// The webhook reads and writes that are not commands.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// The organisation's endpoints, newest first.
    async fn webhook_endpoints(&self, organisation: &OrganisationId) -> StoreResult<Vec<StoredEndpoint>>;

    /// One endpoint of the organisation.
    async fn webhook_endpoint(
        &self,
        organisation: &OrganisationId,
        id: &WebhookEndpointId,
    ) -> StoreResult<Option<StoredEndpoint>>;

    /// Enabled endpoints with a delivery due at `now` that nobody holds
    /// (at most `limit`).
    async fn due_webhook_endpoints(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<WebhookEndpointId>>;

    /// Claims at most `limit` due deliveries of one enabled endpoint for
    /// `claim` until `until` (one replica each: `SKIP LOCKED`), with the
    /// endpoint and what each sends. `None`: the endpoint is gone or
    /// disabled.
    async fn claim_webhook_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        now: OffsetDateTime,
        until: OffsetDateTime,
        claim: &str,
        limit: u32,
    ) -> StoreResult<Option<(StoredEndpoint, Vec<ClaimedDelivery>)>>;

    /// Records an attempt and its outcome, and the endpoint's run of
    /// failures; returns since when the endpoint has failed every attempt
    /// (`None` after a success).
    async fn finish_webhook_attempt(&self, attempt: &FinishedAttempt) -> StoreResult<Option<OffsetDateTime>>;

    /// A page of the endpoint's attempts, newest first.
    async fn webhook_attempts(
        &self,
        endpoint: &WebhookEndpointId,
        pagination: keys_core::Pagination,
    ) -> StoreResult<keys_core::Page<AttemptRow>>;

    /// Makes the endpoint's delivery of `message_id` due at `now` again,
    /// whatever became of it; `false` when the endpoint has no such
    /// delivery.
    async fn retry_webhook_delivery(
        &self,
        endpoint: &WebhookEndpointId,
        message_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    /// Stores each warning that an enabled endpoint subscribes to and that
    /// is not stored already; returns how many were stored.
    async fn record_webhook_warnings(&self, warnings: &[Warning]) -> StoreResult<u64>;

    /// Live, active keys of organisations with an enabled endpoint that
    /// expire after `now` and within `lead`, with no warning of any of
    /// the `covered` leads (seconds; `lead` itself and the shorter ones).
    async fn expiring_api_keys(
        &self,
        now: OffsetDateTime,
        lead: Duration,
        covered: &[i64],
        limit: u32,
    ) -> StoreResult<Vec<ExpiringKey>>;

    /// Deletes finished deliveries (and their attempts) and warnings older
    /// than `before`, at most `limit` of each; returns how many went.
    async fn prune_webhooks(&self, before: OffsetDateTime, limit: u32) -> StoreResult<u64>;
}

mod sql {
    use super::*;
    use crate::error::StoreError;
    use crate::pipeline::{detached, Backend, SqlStore};
    use crate::repo;

    fn commit_error(source: sqlx::Error) -> StoreError {
        StoreError::database("commit", source)
    }

    #[async_trait]
    impl<DB: Backend> Webhooks for SqlStore<DB> {
        async fn webhook_endpoints(&self, organisation: &OrganisationId) -> StoreResult<Vec<StoredEndpoint>> {
            repo::webhook_endpoints(&mut *self.reader().await?, organisation).await
        }

        async fn webhook_endpoint(
            &self,
            organisation: &OrganisationId,
            id: &WebhookEndpointId,
        ) -> StoreResult<Option<StoredEndpoint>> {
            repo::webhook_endpoint(&mut *self.reader().await?, organisation, id).await
        }

        async fn due_webhook_endpoints(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<WebhookEndpointId>> {
            repo::due_webhook_endpoints(&mut *self.reader().await?, now, limit).await
        }

        async fn claim_webhook_deliveries(
            &self,
            endpoint: &WebhookEndpointId,
            now: OffsetDateTime,
            until: OffsetDateTime,
            claim: &str,
            limit: u32,
        ) -> StoreResult<Option<(StoredEndpoint, Vec<ClaimedDelivery>)>> {
            let Some(stored) = repo::enabled_webhook_endpoint(&mut *self.reader().await?, endpoint).await? else {
                return Ok(None);
            };
            let (pool, endpoint, claim) = (self.pool.clone(), endpoint.clone(), claim.to_owned());
            let claimed = detached(async move {
                let mut transaction = DB::writer(&pool).await?;
                let claimed =
                    repo::claim_webhook_deliveries(&mut *transaction, &endpoint, (now, until), &claim, limit).await?;
                transaction.commit().await.map_err(commit_error)?;
                Ok(claimed)
            })
            .await?;
            let mut reader = self.reader().await?;
            let mut deliveries = Vec::with_capacity(claimed.len());
            for (mut delivery, audit_event, warning) in claimed {
                delivery.payload = match (audit_event, warning) {
                    (Some(id), _) => {
                        repo::audit_event_by_id(&mut *reader, id).await?.map_or(Payload::Gone, Payload::Audit)
                    }
                    (None, Some(id)) => repo::warning_by_id(&mut *reader, id)
                        .await?
                        .map_or(Payload::Gone, |(data, at)| Payload::Warning { data, at }),
                    (None, None) => Payload::Gone,
                };
                deliveries.push(delivery);
            }
            Ok(Some((stored, deliveries)))
        }

        async fn finish_webhook_attempt(&self, attempt: &FinishedAttempt) -> StoreResult<Option<OffsetDateTime>> {
            let (pool, attempt) = (self.pool.clone(), attempt.clone());
            detached(async move {
                let mut transaction = DB::writer(&pool).await?;
                let since = repo::finish_webhook_attempt(&mut *transaction, &attempt).await?;
                transaction.commit().await.map_err(commit_error)?;
                Ok(since)
            })
            .await
        }

        async fn webhook_attempts(
            &self,
            endpoint: &WebhookEndpointId,
            pagination: keys_core::Pagination,
        ) -> StoreResult<keys_core::Page<AttemptRow>> {
            repo::webhook_attempts(&mut *self.reader().await?, endpoint, pagination).await
        }

        async fn retry_webhook_delivery(
            &self,
            endpoint: &WebhookEndpointId,
            message_id: &str,
            now: OffsetDateTime,
        ) -> StoreResult<bool> {
            let (pool, endpoint, message_id) = (self.pool.clone(), endpoint.clone(), message_id.to_owned());
            detached(async move {
                let mut transaction = DB::writer(&pool).await?;
                let retried = repo::retry_webhook_delivery(&mut *transaction, &endpoint, &message_id, now).await?;
                transaction.commit().await.map_err(commit_error)?;
                Ok(retried)
            })
            .await
        }

        async fn record_webhook_warnings(&self, warnings: &[Warning]) -> StoreResult<u64> {
            if warnings.is_empty() {
                return Ok(0);
            }
            let (pool, warnings) = (self.pool.clone(), warnings.to_vec());
            detached(async move {
                let mut transaction = DB::writer(&pool).await?;
                let mut stored = 0;
                for warning in &warnings {
                    stored += repo::insert_webhook_warning(&mut *transaction, warning).await?;
                }
                transaction.commit().await.map_err(commit_error)?;
                Ok(stored)
            })
            .await
        }

        async fn expiring_api_keys(
            &self,
            now: OffsetDateTime,
            lead: Duration,
            covered: &[i64],
            limit: u32,
        ) -> StoreResult<Vec<ExpiringKey>> {
            repo::expiring_api_keys(&mut *self.reader().await?, now, now + lead, covered, limit).await
        }

        async fn prune_webhooks(&self, before: OffsetDateTime, limit: u32) -> StoreResult<u64> {
            let pool = self.pool.clone();
            detached(async move {
                let mut transaction = DB::writer(&pool).await?;
                let pruned = repo::prune_webhooks(&mut *transaction, before, limit).await?;
                transaction.commit().await.map_err(commit_error)?;
                Ok(pruned)
            })
            .await
        }
    }
}
