//! The outbox of webhooks: [`Webhooks`], the reads and writes of delivery
//! that are not commands, and its SQL store, which makes the reads on a
//! pooled connection and the claims, attempts, retries, warnings and prunes
//! each in a write transaction of its own, run to its end whatever becomes
//! of the caller (`pipeline::detached`). The delivery rows themselves are
//! written by the database's triggers in the transaction of each event
//! (migration 0011), and claimed, attempted and finished by the deliverers
//! of every replica.

use async_trait::async_trait;
use keys_core::webhook::WebhookEndpointId;
use keys_core::OrganisationId;
use time::{Duration, OffsetDateTime};

use crate::commands::RecordedAuditEvent;
use crate::error::StoreError;
use crate::error::StoreResult;
use crate::pipeline::{detached, Backend, SqlStore};
use crate::repo;
use crate::webhooks::{AttemptRow, ExpiringKey, FinishedAttempt, StoredEndpoint, Warning};

/// What a claimed delivery sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An audit event: its `data` is the event as the audit API shows it.
    Audit(Box<RecordedAuditEvent>),
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

    /// Live, active keys that an enabled endpoint would take the
    /// `api_key.expiring` warning of (its types and workspaces), that
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
        for row in claimed {
            let payload = match (row.audit_event_id, row.warning_id) {
                (Some(id), _) => repo::audit_event_by_id(&mut *reader, id, RecordedAuditEvent::decode)
                    .await?
                    .map_or(Payload::Gone, |event| Payload::Audit(Box::new(event))),
                (None, Some(id)) => repo::warning_by_id(&mut *reader, id)
                    .await?
                    .map_or(Payload::Gone, |(data, at)| Payload::Warning { data, at }),
                (None, None) => Payload::Gone,
            };
            deliveries.push(ClaimedDelivery {
                id: row.id,
                message_id: row.message_id,
                kind: row.kind,
                attempts: row.attempts,
                created_at: row.created_at,
                payload,
            });
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
