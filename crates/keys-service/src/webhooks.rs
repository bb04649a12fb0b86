//! Webhooks (docs/WEBHOOKS.md): the endpoints an admin manages, the
//! warnings verification and a periodic scan raise, and the deliverer that
//! sends every stored event to every endpoint subscribed when it happened.
//!
//! Where each guarantee lives:
//! - **No event lost.** The database writes one delivery row per
//!   subscribed endpoint in the transaction of each audit event and each
//!   warning (triggers of migration 0011), so an event that commits has
//!   its deliveries whatever its commit order, and a kill -9 loses none.
//! - **One attempt at a time, by one replica.** A replica claims a
//!   delivery for [`CLAIM`] (`SKIP LOCKED` on PostgreSQL) before it sends
//!   it; the attempt ends within the transport's timeout, well inside it.
//! - **Warnings once.** Each warning has a key the database keeps unique
//!   (`webhook_warnings.dedupe`); this process also remembers the keys it
//!   sent, so verification raises each one at most once per process.
//! - **No slow receiver starves the others.** Each endpoint has at most
//!   [`WebhookConfig::in_flight_per_endpoint`] attempts in flight here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use keys_core::webhook::{
    failed_too_long, next_attempt, EndpointStatus, EventFilter, WebhookEndpoint, WebhookEndpointId, WebhookUrl,
    WARNING_TYPES,
};
use keys_core::{Description, OrganisationId, Permission, WorkspaceSlug, WorkspaceUid};
use keys_store::{
    Acting, AttemptOutcome, AttemptRow, AuditAction, ChangeWebhookEndpoint, ClaimedDelivery, CreateWebhookEndpoint,
    DeleteWebhookEndpoint, DisableFailingWebhookEndpoint, EndpointPatch, FinishedAttempt, Payload, RecordedAuditEvent,
    Run, StoreError, StoredEndpoint, Warning,
};
use rand_core::RngCore;
use time::{Duration, OffsetDateTime};

use crate::usage::UsageFlusher;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// How long a replica holds a claimed delivery: longer than any attempt
/// (the transport's timeout is 10 s).
pub const CLAIM: Duration = Duration::seconds(30);

/// How often the deliverer looks for due deliveries when it is idle.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// How long finished deliveries, their attempts and warnings are kept.
pub const RETENTION: Duration = Duration::days(30);

/// The webhook policy of a [`Service`].
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `http://` URLs, and destinations that resolve to loopback, private,
    /// link-local, multicast or unspecified addresses, are allowed
    /// (`--webhook-allow-private-destinations`: tests, private networks).
    pub allow_private_destinations: bool,
    /// The lead times of `api_key.expiring` (default 7 days and 1 day).
    pub expiry_warnings: Vec<Duration>,
    /// Attempts in flight to one endpoint from this process.
    pub in_flight_per_endpoint: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_destinations: false,
            expiry_warnings: vec![Duration::days(7), Duration::days(1)],
            in_flight_per_endpoint: 4,
        }
    }
}

fn known_event_type(name: &str) -> bool {
    AuditAction::parse(name).is_some() || WARNING_TYPES.contains(&name)
}

/// An endpoint as management shows it: the record and its workspaces'
/// slugs (`None`: every workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointView {
    pub endpoint: WebhookEndpoint,
    pub workspaces: Option<Vec<WorkspaceSlug>>,
}

/// An endpoint just made, or whose secret was just rotated, with the
/// secret: the one answer that carries it.
#[derive(Debug)]
pub struct EndpointWithSecret {
    pub view: EndpointView,
    pub secret: keys_core::webhook::EndpointSecret,
}

/// A new endpoint, as a client asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    /// Slugs; `None` for every workspace and the organisation's events.
    pub workspaces: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A change of an endpoint: each `Some` replaces a field.
#[derive(Debug, Clone, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub workspaces: Option<Option<Vec<String>>>,
    pub description: Option<Option<String>>,
    pub status: Option<String>,
}

fn endpoint_not_found() -> ServiceError {
    StoreError::NotFound { kind: "webhook endpoint" }.into()
}

impl Service {
    fn webhook_id(id: &str) -> ServiceResult<WebhookEndpointId> {
        WebhookEndpointId::parse(id).map_err(|_| endpoint_not_found())
    }

    /// The uids of the caller's organisation's workspaces named by `slugs`.
    async fn workspace_uids(
        &self,
        organisation: &OrganisationId,
        slugs: &[String],
    ) -> ServiceResult<Vec<WorkspaceUid>> {
        if slugs.is_empty() {
            let message = "workspaces: name at least one workspace, or null for every workspace";
            return Err(ServiceError::Invalid(message.to_owned()));
        }
        if slugs.len() > WebhookEndpoint::MAX_WORKSPACES {
            let max = WebhookEndpoint::MAX_WORKSPACES;
            return Err(StoreError::Refused(keys_core::CoreError::TooMany { field: "workspaces", max }).into());
        }
        let mut uids: Vec<WorkspaceUid> = Vec::with_capacity(slugs.len());
        for slug in slugs {
            let parsed = WorkspaceSlug::parse(slug).map_err(StoreError::Refused)?;
            let workspace = self.store.workspace_by_slug(organisation, parsed.as_str()).await?;
            let workspace = workspace
                .ok_or_else(|| ServiceError::Invalid(format!("workspaces: workspace '{parsed}' does not exist")))?;
            if !uids.contains(&workspace.uid) {
                uids.push(workspace.uid.clone());
            }
        }
        Ok(uids)
    }

    async fn endpoint_view(&self, endpoint: WebhookEndpoint) -> ServiceResult<EndpointView> {
        let workspaces = match &endpoint.workspaces {
            None => None,
            Some(uids) => {
                let mut slugs = Vec::with_capacity(uids.len());
                for uid in uids {
                    if let Some(workspace) = self.store.workspace_by_uid(uid).await? {
                        slugs.push(workspace.slug.clone());
                    }
                }
                Some(slugs)
            }
        };
        Ok(EndpointView { endpoint, workspaces })
    }

    fn events(types: &[String]) -> ServiceResult<EventFilter> {
        Ok(EventFilter::parse(types, known_event_type).map_err(StoreError::Refused)?)
    }

    /// Makes a webhook endpoint of the caller's organisation, with a fresh
    /// signing secret. Needs [`Permission::ManageWebhooks`].
    pub async fn create_webhook_endpoint(
        &self,
        caller: &Caller,
        new: NewEndpoint,
    ) -> ServiceResult<EndpointWithSecret> {
        caller.require(Permission::ManageWebhooks)?;
        let organisation = caller.scope().organisation_id().clone();
        let allow_http = self.config.webhooks.allow_private_destinations;
        let url = WebhookUrl::parse(&new.url, allow_http).map_err(StoreError::Refused)?;
        let events = Self::events(&new.events)?;
        let description = Description::parse(new.description.as_deref()).map_err(StoreError::Refused)?;
        let workspaces = match &new.workspaces {
            None => None,
            Some(slugs) => Some(self.workspace_uids(&organisation, slugs).await?),
        };
        let now = keys_core::timestamp(self.now());
        let mut rng = self.rng();
        let secret = keys_crypto::webhook::generate_secret(&mut rng);
        let endpoint = WebhookEndpoint {
            id: WebhookEndpointId::generate(now, &mut rng),
            organisation_id: organisation,
            url,
            events,
            workspaces,
            description,
            status: EndpointStatus::Enabled,
            failing_since: None,
            created_at: now,
            created_by: Some(caller.actor().clone()),
            updated_at: now,
        };
        let secrets = keys_core::webhook::EndpointSecrets { current: secret.clone(), previous: None };
        let stored = StoredEndpoint { endpoint, secrets };
        self.mutations(caller).run(CreateWebhookEndpoint { stored: stored.clone() }).await?;
        Ok(EndpointWithSecret { view: self.endpoint_view(stored.endpoint).await?, secret })
    }

    /// The caller's organisation's endpoints, newest first.
    pub async fn list_webhook_endpoints(&self, caller: &Caller) -> ServiceResult<Vec<EndpointView>> {
        caller.require(Permission::ManageWebhooks)?;
        let stored = self.store.webhook_endpoints(caller.scope().organisation_id()).await?;
        let mut views = Vec::with_capacity(stored.len());
        for stored in stored {
            views.push(self.endpoint_view(stored.endpoint).await?);
        }
        Ok(views)
    }

    /// One endpoint of the caller's organisation.
    pub async fn webhook_endpoint(&self, caller: &Caller, id: &str) -> ServiceResult<EndpointView> {
        caller.require(Permission::ManageWebhooks)?;
        let id = Self::webhook_id(id)?;
        let stored = self.store.webhook_endpoint(caller.scope().organisation_id(), &id).await?;
        self.endpoint_view(stored.ok_or_else(endpoint_not_found)?.endpoint).await
    }

    /// Changes an endpoint (`status: "enabled"` also starts its run of
    /// failures over).
    pub async fn change_webhook_endpoint(
        &self,
        caller: &Caller,
        id: &str,
        change: EndpointChange,
    ) -> ServiceResult<EndpointView> {
        caller.require(Permission::ManageWebhooks)?;
        let id = Self::webhook_id(id)?;
        let organisation = caller.scope().organisation_id().clone();
        let allow_http = self.config.webhooks.allow_private_destinations;
        let mut patch = EndpointPatch {
            url: change
                .url
                .as_deref()
                .map(|url| WebhookUrl::parse(url, allow_http))
                .transpose()
                .map_err(StoreError::Refused)?,
            events: change.events.as_deref().map(Self::events).transpose()?,
            ..EndpointPatch::default()
        };
        patch.description = match change.description {
            None => None,
            Some(text) => Some(Description::parse(text.as_deref()).map_err(StoreError::Refused)?),
        };
        patch.status = change.status.as_deref().map(EndpointStatus::parse).transpose().map_err(StoreError::Refused)?;
        patch.workspaces = match change.workspaces {
            None => None,
            Some(None) => Some(None),
            Some(Some(slugs)) => Some(Some(self.workspace_uids(&organisation, &slugs).await?)),
        };
        let acting = Acting::new(organisation, caller.actor().clone(), keys_core::timestamp(self.now()));
        let stored = self.mutations(caller).run(ChangeWebhookEndpoint { acting, id, patch }).await?.output;
        self.endpoint_view(stored.endpoint).await
    }

    /// Issues a new signing secret; the one before it keeps signing for
    /// `keys_core::webhook::SECRET_OVERLAP`.
    pub async fn rotate_webhook_secret(&self, caller: &Caller, id: &str) -> ServiceResult<EndpointWithSecret> {
        caller.require(Permission::ManageWebhooks)?;
        let id = Self::webhook_id(id)?;
        let secret = keys_crypto::webhook::generate_secret(&mut self.rng());
        let patch = EndpointPatch { secret: Some(secret.clone()), ..EndpointPatch::default() };
        let organisation = caller.scope().organisation_id().clone();
        let acting = Acting::new(organisation, caller.actor().clone(), keys_core::timestamp(self.now()));
        let stored = self.mutations(caller).run(ChangeWebhookEndpoint { acting, id, patch }).await?.output;
        Ok(EndpointWithSecret { view: self.endpoint_view(stored.endpoint).await?, secret })
    }

    /// Deletes an endpoint and its deliveries.
    pub async fn delete_webhook_endpoint(&self, caller: &Caller, id: &str) -> ServiceResult<()> {
        caller.require(Permission::ManageWebhooks)?;
        let id = Self::webhook_id(id)?;
        let organisation = caller.scope().organisation_id().clone();
        let acting = Acting::new(organisation, caller.actor().clone(), keys_core::timestamp(self.now()));
        self.mutations(caller).run(DeleteWebhookEndpoint { acting, id }).await?;
        Ok(())
    }

    /// A page of an endpoint's attempts, newest first.
    pub async fn webhook_attempts(
        &self,
        caller: &Caller,
        id: &str,
        pagination: keys_core::Pagination,
    ) -> ServiceResult<keys_core::Page<AttemptRow>> {
        caller.require(Permission::ManageWebhooks)?;
        let id = Self::webhook_id(id)?;
        if self.store.webhook_endpoint(caller.scope().organisation_id(), &id).await?.is_none() {
            return Err(endpoint_not_found());
        }
        Ok(self.store.webhook_attempts(&id, pagination).await?)
    }

    /// Sends an endpoint's delivery of `event_id` again, now.
    pub async fn retry_webhook_delivery(&self, caller: &Caller, id: &str, event_id: &str) -> ServiceResult<()> {
        caller.require(Permission::ManageWebhooks)?;
        let id = Self::webhook_id(id)?;
        if self.store.webhook_endpoint(caller.scope().organisation_id(), &id).await?.is_none() {
            return Err(endpoint_not_found());
        }
        if event_id.len() > 64 || !self.store.retry_webhook_delivery(&id, event_id, self.now()).await? {
            return Err(StoreError::NotFound { kind: "delivery" }.into());
        }
        self.webhooks.wake.notify_one();
        Ok(())
    }
}

/// What the deliverer needs of the world outside: a `POST` of a body with
/// headers to a URL (with the SSRF guard, the timeout and no redirects),
/// and the audit event's `data` as the audit API shows it.
pub trait Outbound: Send + Sync + 'static {
    /// The receiver's status code, or why there is none.
    fn post<'a>(
        &'a self,
        url: &'a str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Pin<Box<dyn Future<Output = Result<u16, String>> + Send + 'a>>;

    /// The `data` of an audit event's delivery, as JSON text.
    fn audit_data(&self, event: &RecordedAuditEvent) -> String;
}

/// This process's webhook state: the warnings waiting to be stored, the
/// dedupe keys already raised, and what is in flight per endpoint.
#[derive(Debug, Default)]
pub(crate) struct WebhookState {
    warnings: Mutex<Pending>,
    in_flight: Mutex<HashMap<WebhookEndpointId, usize>>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct Pending {
    queue: Vec<Warning>,
    /// Dedupe keys raised by this process, with when (forgotten after a
    /// day, or when there are too many).
    raised: HashMap<String, OffsetDateTime>,
}

/// The most warnings waiting at once; more are dropped (and raised again
/// by the next verification that meets the condition).
const MAX_PENDING_WARNINGS: usize = 10_000;

/// The most attempts in flight from one process, over every endpoint (each
/// holds a socket).
pub const MAX_IN_FLIGHT: usize = 256;
const MAX_RAISED: usize = 100_000;

impl WebhookState {
    /// Queues the warning `build` makes unless this process raised
    /// `dedupe` already (then nothing is built).
    pub(crate) fn raise(&self, dedupe: String, at: OffsetDateTime, build: impl FnOnce(String) -> Warning) {
        let mut pending = self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if pending.raised.contains_key(&dedupe) || pending.queue.len() >= MAX_PENDING_WARNINGS {
            return;
        }
        if pending.raised.len() >= MAX_RAISED {
            let cutoff = at - Duration::hours(1);
            pending.raised.retain(|_, raised| *raised > cutoff);
            if pending.raised.len() >= MAX_RAISED {
                pending.raised.clear();
            }
        }
        pending.raised.insert(dedupe.clone(), at);
        pending.queue.push(build(dedupe));
    }

    fn take(&self) -> Vec<Warning> {
        let mut pending = self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut pending.queue)
    }

    /// Warnings a failed write took, back at the head of the queue (what
    /// does not fit is dropped, and forgotten, so that it is raised again).
    fn put_back(&self, mut warnings: Vec<Warning>) {
        let mut pending = self.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let room = MAX_PENDING_WARNINGS.saturating_sub(pending.queue.len());
        for dropped in warnings.drain(room.min(warnings.len())..) {
            pending.raised.remove(&dropped.dedupe);
        }
        warnings.append(&mut pending.queue);
        pending.queue = warnings;
    }

    /// How many more attempts to `endpoint` may start: its own room, and
    /// the process's ([`MAX_IN_FLIGHT`]).
    fn enter(&self, endpoint: &WebhookEndpointId, limit: usize) -> usize {
        let in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let total: usize = in_flight.values().sum();
        let own = limit.saturating_sub(in_flight.get(endpoint).copied().unwrap_or(0));
        own.min(MAX_IN_FLIGHT.saturating_sub(total))
    }

    fn add(&self, endpoint: &WebhookEndpointId, count: usize) {
        if count == 0 {
            return;
        }
        let mut in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *in_flight.entry(endpoint.clone()).or_default() += count;
    }

    fn leave(&self, endpoint: &WebhookEndpointId) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = in_flight.get_mut(endpoint) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                in_flight.remove(endpoint);
            }
        }
    }
}

/// An attempt's place in its endpoint's room, given back when dropped.
struct Place<'a> {
    service: &'a Service,
    endpoint: &'a WebhookEndpointId,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.service.webhooks.leave(self.endpoint);
        self.service.webhooks.wake.notify_one();
    }
}

/// The body of a delivery: `{"type", "timestamp", "data"}`.
fn body(kind: &str, at: OffsetDateTime, data: &str) -> Vec<u8> {
    let kind = serde_json::Value::String(kind.to_owned());
    let timestamp = serde_json::Value::String(keys_core::format_timestamp(at));
    format!(r#"{{"type":{kind},"timestamp":{timestamp},"data":{data}}}"#).into_bytes()
}

/// The handles of the webhook tasks ([`Service::spawn_webhooks`]).
#[derive(Debug)]
pub struct WebhookTasks {
    tasks: Vec<UsageFlusher>,
}

impl WebhookTasks {
    /// Stops the tasks once their work under way has finished (attempts
    /// in flight finish on their own tasks; their claims run out if the
    /// process ends first, and another replica sends them again).
    pub async fn stop(self) {
        for task in self.tasks {
            task.stop().await;
        }
    }
}

impl Service {
    /// The warnings one API key verification raises: a rolled key still
    /// in use (once per key per hour), a limit exceeded (once per key,
    /// limit and window), a balance below its threshold (once per subject
    /// and epoch: a set or a refill arms it again). Cheap when none holds.
    pub(crate) fn verification_warnings(
        &self,
        key: &keys_core::ApiKey,
        workspace: &keys_core::Workspace,
        admitted: bool,
        meter: Option<&keys_core::meter::Decision>,
        now: OffsetDateTime,
    ) {
        use keys_core::meter::Decision;
        let raise = |kind: &'static str, dedupe: String, data: &dyn Fn() -> serde_json::Value| {
            self.webhooks.raise(dedupe, now, |dedupe| Warning {
                organisation_id: workspace.organisation_id.clone(),
                workspace: Some(workspace.uid.clone()),
                kind,
                dedupe,
                data: data().to_string(),
                at: keys_core::timestamp(now),
            });
        };
        let external_id = || key.profile.external_id.as_ref().map(|id| id.as_str());
        if admitted && key.status() == keys_core::ApiKeyStatus::Rolled {
            let hour = now.unix_timestamp().div_euclid(3600);
            let data = || {
                serde_json::json!({
                    "key_id": key.id.as_str(),
                    "workspace": workspace.slug.as_str(),
                    "name": key.profile.name.as_str(),
                    "expires_at": key.profile.expires_at.map(keys_core::format_timestamp),
                    "used_at": keys_core::format_timestamp(now),
                })
            };
            raise("api_key.rolled_key_used", format!("api_key.rolled_key_used:{}:{hour}", key.id), &data);
        }
        match meter {
            Some(Decision::RateLimited { owner, name, report, .. }) => {
                let Some(line) = report.rate_limits.iter().find(|line| line.owner == *owner && line.name == *name)
                else {
                    return;
                };
                let window = now.unix_timestamp().div_euclid(i64::from(line.duration_seconds.max(1)));
                let owner = match owner {
                    keys_core::meter::MeterOwner::Key => "key",
                    keys_core::meter::MeterOwner::Identity => "identity",
                };
                let data = || {
                    serde_json::json!({
                        "key_id": key.id.as_str(),
                        "workspace": workspace.slug.as_str(),
                        "external_id": external_id(),
                        "owner": owner,
                        "name": name.as_str(),
                        "limit": line.limit,
                        "duration_seconds": line.duration_seconds,
                        "reset_at": keys_core::format_timestamp(line.reset_at),
                    })
                };
                let dedupe = format!("ratelimit.exceeded:{}:{owner}:{}:{window}", key.id, name.as_str());
                raise("ratelimit.exceeded", dedupe, &data);
            }
            Some(decision) if decision.report().credits.is_some() => {
                if let Some((subject, epoch, remaining)) = self.metering.credits_low(&key.id) {
                    let data = || {
                        serde_json::json!({
                            "key_id": key.id.as_str(),
                            "workspace": workspace.slug.as_str(),
                            "external_id": external_id(),
                            "subject": subject,
                            "remaining": remaining,
                        })
                    };
                    let dedupe = format!("credits.low:{}:{subject}:{epoch}", workspace.uid);
                    raise("credits.low", dedupe, &data);
                }
            }
            _ => {}
        }
    }

    /// Starts the deliverer, the warnings' writer and the expiry scan.
    pub fn spawn_webhooks(self: &Arc<Self>, outbound: Arc<dyn Outbound>) -> WebhookTasks {
        let deliverer = {
            let outbound = Arc::clone(&outbound);
            let wake = Some(Arc::clone(&self.webhooks.wake));
            crate::usage::every_or_woken(self, POLL_INTERVAL, wake, move |service| {
                let outbound = Arc::clone(&outbound);
                async move {
                    if let Err(error) = service.store_warnings().await {
                        tracing::warn!(%error, "storing webhook warnings failed; retrying");
                    }
                    // Busy: go on at once while there is work, up to a
                    // bound, so that a burst drains fast.
                    for _ in 0..64 {
                        match service.deliver_due(&outbound).await.map(|started| started.len()) {
                            Ok(0) => break,
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "claiming webhook deliveries failed; retrying");
                                break;
                            }
                        }
                    }
                }
            })
        };
        let scan = crate::usage::every(self, std::time::Duration::from_secs(60), |service| async move {
            if let Err(error) = service.scan_expiring_keys().await {
                tracing::warn!(%error, "the expiring keys' scan failed; retrying");
            }
            // In bounded rounds, until one finds less than a full batch.
            let before = service.now() - RETENTION;
            for _ in 0..100 {
                match service.store.prune_webhooks(before, 10_000).await {
                    Ok(pruned) if pruned >= 10_000 => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "pruning webhook deliveries failed; retrying");
                        break;
                    }
                }
            }
        });
        WebhookTasks { tasks: vec![deliverer, scan] }
    }

    /// Stores the warnings raised since the last call.
    pub async fn store_warnings(&self) -> ServiceResult<u64> {
        let warnings = self.webhooks.take();
        match self.store.record_webhook_warnings(&warnings).await {
            Ok(stored) => Ok(stored),
            Err(error) => {
                // They wait for the next call (within the queue's bound).
                self.webhooks.put_back(warnings);
                Err(error.into())
            }
        }
    }

    /// Raises `api_key.expiring` for each live key that crossed a lead
    /// time (the shortest lead it is within; once per key and lead).
    pub async fn scan_expiring_keys(&self) -> ServiceResult<u64> {
        let mut leads: Vec<i64> =
            self.config.webhooks.expiry_warnings.iter().map(|lead| lead.whole_seconds()).filter(|s| *s > 0).collect();
        leads.sort_unstable();
        leads.dedup();
        let now = self.now();
        let mut stored = 0;
        // Shortest lead first, each stored before the next is read: a key
        // within a day is not also reported at a week.
        for (index, lead) in leads.iter().enumerate() {
            let mut warnings = Vec::new();
            let covered = &leads[..=index];
            for key in self.store.expiring_api_keys(now, Duration::seconds(*lead), covered, 1_000).await? {
                let data = serde_json::json!({
                    "key_id": key.key_id,
                    "workspace": key.workspace_slug,
                    "name": key.name,
                    "expires_at": keys_core::format_timestamp(key.expires_at),
                    "lead_time_seconds": lead,
                });
                warnings.push(Warning {
                    organisation_id: key.organisation_id,
                    workspace: Some(key.workspace),
                    kind: "api_key.expiring",
                    dedupe: format!("api_key.expiring:{}:{lead}", key.key_id),
                    data: data.to_string(),
                    at: now,
                });
            }
            stored += self.store.record_webhook_warnings(&warnings).await?;
        }
        Ok(stored)
    }

    /// Makes one pass of the deliverer (what [`Service::spawn_webhooks`]
    /// does every [`POLL_INTERVAL`]): stores the warnings raised, claims
    /// the due deliveries of every endpoint with room and attempts them;
    /// returns how many attempts it made, once they are recorded. For
    /// embedders that drive delivery themselves, and for tests.
    pub async fn deliver_due_webhooks(self: &Arc<Self>, outbound: &Arc<dyn Outbound>) -> ServiceResult<usize> {
        self.store_warnings().await?;
        let started = self.deliver_due(outbound).await?;
        let count = started.len();
        for attempt in started {
            let _ = attempt.await;
        }
        Ok(count)
    }

    /// Claims and starts the due deliveries of every endpoint with room;
    /// returns the attempts it started.
    async fn deliver_due(
        self: &Arc<Self>,
        outbound: &Arc<dyn Outbound>,
    ) -> ServiceResult<Vec<tokio::task::JoinHandle<()>>> {
        let limit = self.config.webhooks.in_flight_per_endpoint.max(1);
        let mut started = Vec::new();
        let claim = format!("{:016x}", self.rng().next_u64());
        let mut due = self.store.due_webhook_endpoints(self.now(), 10_000).await?;
        // No endpoint always first: a pass that runs out of room mid-way
        // leaves a different one behind each time.
        let offset = usize::try_from(self.rng().next_u32()).unwrap_or(0) % due.len().max(1);
        due.rotate_left(offset);
        for endpoint in due {
            let room = self.webhooks.enter(&endpoint, limit);
            if room == 0 {
                continue;
            }
            let room = u32::try_from(room).unwrap_or(u32::MAX);
            // The claim runs from now, not from the pass's start: a slow
            // pass never hands out a claim shorter than CLAIM.
            let now = self.now();
            let claimed = self.store.claim_webhook_deliveries(&endpoint, now, now + CLAIM, &claim, room).await?;
            let Some((stored, deliveries)) = claimed else { continue };
            self.webhooks.add(&endpoint, deliveries.len());
            let stored = Arc::new(stored);
            for delivery in deliveries {
                let (service, outbound, stored, claim) =
                    (Arc::clone(self), Arc::clone(outbound), Arc::clone(&stored), claim.clone());
                started.push(tokio::spawn(async move {
                    // Gives the endpoint's place back however the attempt
                    // ends (a panic included), and wakes the deliverer.
                    let _place = Place { service: &service, endpoint: &stored.endpoint.id };
                    if let Err(error) = service.attempt(&outbound, &stored, delivery, &claim).await {
                        tracing::warn!(%error, endpoint = %stored.endpoint.id, "recording a webhook attempt failed");
                    }
                }));
            }
        }
        Ok(started)
    }

    /// Makes one attempt of a claimed delivery and records it.
    async fn attempt(
        &self,
        outbound: &Arc<dyn Outbound>,
        stored: &StoredEndpoint,
        delivery: ClaimedDelivery,
        claim: &str,
    ) -> ServiceResult<()> {
        let started = self.now();
        let data = match &delivery.payload {
            Payload::Audit(event) => Some((outbound.audit_data(event), event.event.at)),
            Payload::Warning { data, at } => Some((data.clone(), *at)),
            Payload::Gone => None,
        };
        let (status_code, error) = match data {
            None => (None, Some("the event is no longer stored (the audit trail was pruned)".to_owned())),
            Some((data, at)) => {
                let body = body(&delivery.kind, at, &data);
                let timestamp = started.unix_timestamp();
                let secrets = stored.secrets.signing(started);
                let signature = keys_crypto::webhook::signature(&secrets, &delivery.message_id, timestamp, &body);
                let headers = vec![
                    ("content-type", "application/json".to_owned()),
                    ("webhook-id", delivery.message_id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ];
                match outbound.post(stored.endpoint.url.as_str(), headers, body).await {
                    Ok(status) if (200..300).contains(&status) => (Some(status), None),
                    Ok(status) => (Some(status), Some(format!("the receiver answered {status}"))),
                    Err(error) => (None, Some(error)),
                }
            }
        };
        let at = self.now();
        let attempts = delivery.attempts + 1;
        let outcome = match (&error, &delivery.payload) {
            (None, _) => AttemptOutcome::Delivered,
            (Some(_), Payload::Gone) => AttemptOutcome::Failed,
            (Some(_), _) => {
                let jitter = f64::from(self.rng().next_u32()) / f64::from(u32::MAX);
                next_attempt(attempts, at, jitter).map_or(AttemptOutcome::Failed, AttemptOutcome::RetryAt)
            }
        };
        let finished = FinishedAttempt {
            delivery_id: delivery.id,
            endpoint_id: stored.endpoint.id.clone(),
            claim: claim.to_owned(),
            at,
            status_code,
            error,
            duration: at - started,
            outcome,
        };
        let failing_since = self.store.finish_webhook_attempt(&finished).await?;
        if failed_too_long(failing_since, at) {
            let organisation = stored.endpoint.organisation_id.clone();
            let acting = Acting::new(organisation, None, keys_core::timestamp(at));
            let id = stored.endpoint.id.clone();
            if self.store.run(DisableFailingWebhookEndpoint { acting, id }).await?.output {
                tracing::warn!(endpoint = %stored.endpoint.id, "disabled a webhook endpoint that failed for 5 days");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(dedupe: &str) -> Warning {
        Warning {
            organisation_id: OrganisationId::parse("01J0000000000000000000000A").expect("id"),
            workspace: None,
            kind: "credits.low",
            dedupe: dedupe.to_owned(),
            data: "{}".to_owned(),
            at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_warning_is_queued_once_and_a_failed_write_puts_it_back() {
        let state = WebhookState::default();
        let at = OffsetDateTime::UNIX_EPOCH;
        state.raise("a".to_owned(), at, |dedupe| warning(&dedupe));
        state.raise("a".to_owned(), at, |_| panic!("not built twice"));
        state.raise("b".to_owned(), at, |dedupe| warning(&dedupe));
        let taken = state.take();
        assert_eq!(taken.iter().map(|warning| warning.dedupe.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        state.raise("c".to_owned(), at, |dedupe| warning(&dedupe));
        // The write failed: what it took comes back first, and is still
        // remembered as raised.
        state.put_back(taken);
        let again = state.take();
        assert_eq!(again.iter().map(|warning| warning.dedupe.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        state.raise("a".to_owned(), at, |_| panic!("still raised"));
    }

    #[test]
    fn rooms_are_per_endpoint_and_bounded_over_all() {
        let state = WebhookState::default();
        let one = WebhookEndpointId::parse("we_01J00000000000000000000001").expect("id");
        let two = WebhookEndpointId::parse("we_01J00000000000000000000002").expect("id");
        assert_eq!(state.enter(&one, 4), 4);
        state.add(&one, 4);
        assert_eq!(state.enter(&one, 4), 0);
        assert_eq!(state.enter(&two, 4), 4);
        state.add(&two, MAX_IN_FLIGHT - 5);
        assert_eq!(state.enter(&two, MAX_IN_FLIGHT), 1, "the process's bound");
        state.leave(&one);
        assert_eq!(state.enter(&one, 4), 1);
    }
}
