//! Webhooks through the store (migration 0011): the database writes one
//! delivery per subscribed, enabled endpoint in the transaction of each
//! audit event and each warning; deliverers find them through
//! `due_webhook_endpoints`, claim them one replica at a time, record each
//! attempt and its outcome, and retry or prune them; warnings are stored
//! once per `dedupe`; the expiry scan finds each key once per lead; and the
//! endpoint commands keep their cap, cascade and five-day rule.

use std::collections::BTreeSet;

use keys_core::webhook::{
    EndpointSecret, EndpointSecrets, EndpointStatus, EventFilter, WebhookEndpoint, WebhookEndpointId, WebhookUrl,
};
use keys_core::{
    Actor, ApiKey, ApiKeyProfile, CoreError, Organisation, OrganisationId, Pagination, Workspace, WorkspaceUid,
};
use keys_store::{
    Acting, AttemptOutcome, AttemptRow, AuditAction, AuditFilter, AuditOrder, AuditQuery, ChangeWebhookEndpoint,
    ClaimedDelivery, CreateWebhookEndpoint, DeleteWebhookEndpoint, DisableFailingWebhookEndpoint, EndpointPatch,
    ExpiringKey, FinishedAttempt, Payload, RecordedAuditEvent, Run as _, Store, StoredEndpoint, Warning,
};
use time::{Duration, OffsetDateTime};

use crate::concurrency::race_alternating;
use crate::support::{acme, assert_refused, name_of, not_found, Expected, TestDb, World};

/// How long the tests' claims hold.
const CLAIM: Duration = Duration::seconds(60);

/// Moves the world's clock by whole seconds.
fn later(world: &mut World, seconds: i64) -> OffsetDateTime {
    world.tick(seconds * 1_000_000)
}

fn types(names: &[&str]) -> EventFilter {
    EventFilter::Types(names.iter().map(|name| (*name).to_owned()).collect())
}

/// A new endpoint of `organisation` (not stored).
fn endpoint(
    world: &mut World,
    organisation: &Organisation,
    events: EventFilter,
    workspaces: Option<Vec<WorkspaceUid>>,
    status: EndpointStatus,
) -> StoredEndpoint {
    let now = world.tick(1);
    let id = WebhookEndpointId::generate(now, &mut world.rng);
    let secret = EndpointSecret::new(format!("whsec_{}", world.text(32)));
    StoredEndpoint {
        endpoint: WebhookEndpoint {
            id,
            organisation_id: organisation.id.clone(),
            url: WebhookUrl::parse("https://hooks.example.com/keysd", false).unwrap(),
            events,
            workspaces,
            description: None,
            status,
            failing_since: None,
            created_at: now,
            created_by: Some(world.actor.clone()),
            updated_at: now,
        },
        secrets: EndpointSecrets { current: secret, previous: None },
    }
}

/// An enabled endpoint, stored by `CreateWebhookEndpoint`.
async fn stored_endpoint(
    store: &dyn Store,
    world: &mut World,
    organisation: &Organisation,
    events: EventFilter,
    workspaces: Option<Vec<WorkspaceUid>>,
) -> WebhookEndpointId {
    let stored = endpoint(world, organisation, events, workspaces, EndpointStatus::Enabled);
    store.run(CreateWebhookEndpoint { stored: stored.clone() }).await.unwrap();
    stored.endpoint.id
}

async fn set_status(
    store: &dyn Store,
    world: &mut World,
    organisation: &Organisation,
    id: &WebhookEndpointId,
    status: EndpointStatus,
) -> StoredEndpoint {
    let acting = Acting::new(organisation.id.clone(), world.actor.clone(), world.tick(1));
    let patch = EndpointPatch { status: Some(status), ..EndpointPatch::default() };
    store.run(ChangeWebhookEndpoint { acting, id: id.clone(), patch }).await.unwrap().output
}

/// The organisation's audit trail, oldest first.
async fn trail(store: &dyn Store, organisation: &OrganisationId) -> Vec<RecordedAuditEvent> {
    let filter = AuditFilter::organisation(organisation.clone());
    let query = AuditQuery { filter, order: AuditOrder::OldestFirst, after: None, limit: 1_000 };
    store.audit_page(&query).await.unwrap()
}

/// The one event of `trail` with this action and target.
fn event_of<'a>(trail: &'a [RecordedAuditEvent], action: AuditAction, target: &str) -> &'a RecordedAuditEvent {
    let mut found =
        trail.iter().filter(|recorded| recorded.event.action == action && recorded.event.target_id == target);
    let event = found.next().unwrap_or_else(|| panic!("no {action} of {target} in the trail"));
    assert!(found.next().is_none(), "one {action} of {target}");
    event
}

/// Claims every due delivery of `endpoint` at `now` as `claim` (the
/// endpoint must be enabled).
async fn claim(
    store: &dyn Store,
    endpoint: &WebhookEndpointId,
    now: OffsetDateTime,
    claim: &str,
) -> Vec<ClaimedDelivery> {
    let claimed = store.claim_webhook_deliveries(endpoint, now, now + CLAIM, claim, 1_000).await.unwrap();
    let (stored, deliveries) = claimed.expect("an enabled endpoint");
    assert_eq!(&stored.endpoint.id, endpoint);
    deliveries
}

async fn due(store: &dyn Store, now: OffsetDateTime) -> BTreeSet<WebhookEndpointId> {
    store.due_webhook_endpoints(now, 100).await.unwrap().into_iter().collect()
}

fn message_ids(deliveries: &[ClaimedDelivery]) -> Vec<String> {
    deliveries.iter().map(|delivery| delivery.message_id.clone()).collect()
}

/// What the deliveries of these events are, in order.
fn expected_of(events: &[&RecordedAuditEvent]) -> Vec<(String, String, OffsetDateTime, Payload)> {
    events
        .iter()
        .map(|recorded| {
            let event = &recorded.event;
            (
                format!("evt_{}", recorded.id),
                event.action.as_str().to_owned(),
                event.at,
                Payload::Audit(Box::new((*recorded).clone())),
            )
        })
        .collect()
}

fn seen(deliveries: &[ClaimedDelivery]) -> Vec<(String, String, OffsetDateTime, Payload)> {
    deliveries
        .iter()
        .map(|delivery| {
            assert_eq!(delivery.attempts, 0, "{delivery:?}");
            (delivery.message_id.clone(), delivery.kind.clone(), delivery.created_at, delivery.payload.clone())
        })
        .collect()
}

fn attempt(
    delivery: &ClaimedDelivery,
    endpoint: &WebhookEndpointId,
    claim: &str,
    at: OffsetDateTime,
    answer: (Option<u16>, Option<&str>),
    outcome: AttemptOutcome,
) -> FinishedAttempt {
    FinishedAttempt {
        delivery_id: delivery.id,
        endpoint_id: endpoint.clone(),
        claim: claim.to_owned(),
        at,
        status_code: answer.0,
        error: answer.1.map(str::to_owned),
        duration: Duration::milliseconds(1_500),
        outcome,
    }
}

/// Records an attempt; the endpoint's `failing_since` after it.
async fn finish(store: &dyn Store, finished: FinishedAttempt) -> Option<OffsetDateTime> {
    store.finish_webhook_attempt(&finished).await.unwrap()
}

async fn attempts(store: &dyn Store, endpoint: &WebhookEndpointId) -> (u64, Vec<AttemptRow>) {
    let page = store.webhook_attempts(endpoint, Pagination::new(100, 0).unwrap()).await.unwrap();
    (page.total, page.items)
}

fn warning(
    organisation: &Organisation,
    workspace: Option<&Workspace>,
    kind: &'static str,
    dedupe: &str,
    at: OffsetDateTime,
) -> Warning {
    Warning {
        organisation_id: organisation.id.clone(),
        workspace: workspace.map(|workspace| workspace.uid.clone()),
        kind,
        dedupe: dedupe.to_owned(),
        data: format!(r#"{{"dedupe":"{dedupe}"}}"#),
        at,
    }
}

/// How many rows of `table` belong to the endpoint, counted below the
/// store (an update that changes nothing reports the rows it matched).
async fn rows_of(db: &TestDb, table: &str, column: &str, endpoint: &WebhookEndpointId) -> u64 {
    let statement = format!("UPDATE {table} SET {column} = {column} WHERE endpoint_id = $1");
    db.execute(&statement, &[endpoint.as_str()]).await.unwrap()
}

fn expiring_key(world: &mut World, workspace: &Workspace, name: &str, expires_at: OffsetDateTime) -> ApiKey {
    world.api_key_with(workspace, ApiKeyProfile { expires_at: Some(expires_at), ..ApiKeyProfile::named(name_of(name)) })
}

fn found(organisation: &Organisation, workspace: &Workspace, key: &ApiKey) -> ExpiringKey {
    ExpiringKey {
        organisation_id: organisation.id.clone(),
        workspace: workspace.uid.clone(),
        workspace_slug: workspace.slug.as_str().to_owned(),
        key_id: key.id.as_str().to_owned(),
        name: key.name.as_str().to_owned(),
        expires_at: key.expires_at.unwrap(),
    }
}

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;

pub async fn deliveries_follow_each_endpoints_subscription(db: &TestDb) {
    let (store, mut world, organisation, [alpha, beta]) = acme(db, 51, ["alpha", "beta"]).await;
    let globex = world.stored_organisation(&*store, "globex").await;
    let [foreign_workspace] = world.stored_workspaces(&*store, &globex, ["foreign"]).await;

    let everything = stored_endpoint(&*store, &mut world, &organisation, EventFilter::All, None).await;
    let generated = stored_endpoint(&*store, &mut world, &organisation, types(&["api_key.generated"]), None).await;
    let only_alpha =
        stored_endpoint(&*store, &mut world, &organisation, EventFilter::All, Some(vec![alpha.uid.clone()])).await;
    // Made disabled: it takes nothing until it is enabled.
    let disabled = endpoint(&mut world, &organisation, EventFilter::All, None, EndpointStatus::Disabled);
    store.run(CreateWebhookEndpoint { stored: disabled.clone() }).await.unwrap();
    let disabled = disabled.endpoint.id;
    let foreign = stored_endpoint(&*store, &mut world, &globex, EventFilter::All, None).await;

    world.tick(10);
    let in_alpha = world.api_key(&alpha, "in alpha");
    store.create_api_key(&in_alpha).await.unwrap();
    world.tick(10);
    let in_beta = world.api_key(&beta, "in beta");
    store.create_api_key(&in_beta).await.unwrap();
    let [gamma] = world.stored_workspaces(&*store, &organisation, ["gamma"]).await;
    let token = world.service_token(&organisation);
    store.create_service_token(&token).await.unwrap();
    world.tick(10);
    let in_globex = world.api_key(&foreign_workspace, "in globex");
    store.create_api_key(&in_globex).await.unwrap();

    let acme_trail = trail(&*store, &organisation.id).await;
    let created = |id: &WebhookEndpointId| event_of(&acme_trail, AuditAction::WebhookEndpointCreated, id.as_str());
    let alpha_key = event_of(&acme_trail, AuditAction::ApiKeyGenerated, in_alpha.id.as_str());
    let beta_key = event_of(&acme_trail, AuditAction::ApiKeyGenerated, in_beta.id.as_str());
    let gamma_created = event_of(&acme_trail, AuditAction::WorkspaceCreated, gamma.uid.as_str());
    let token_created = event_of(&acme_trail, AuditAction::ServiceTokenGenerated, token.id.as_str());
    assert_eq!((alpha_key.event.workspace.as_ref(), token_created.event.workspace.as_ref()), (Some(&alpha.uid), None));

    let now = world.tick(1);
    let expected_due = BTreeSet::from([everything.clone(), generated.clone(), only_alpha.clone(), foreign.clone()]);
    assert_eq!(due(&*store, now).await, expected_due, "the disabled endpoint is never due");
    assert!(due(&*store, created(&everything).event.at - Duration::microseconds(1)).await.is_empty(), "nothing before");

    // Every event from its own creation on (its creation is written in the
    // transaction that stores it, after it), each as the trail holds it.
    let claimed = claim(&*store, &everything, now, "one").await;
    let own_on: Vec<_> = acme_trail.iter().filter(|recorded| recorded.id >= created(&everything).id).collect();
    assert_eq!(
        own_on.iter().map(|recorded| recorded.event.action).collect::<Vec<_>>(),
        [
            AuditAction::WebhookEndpointCreated,
            AuditAction::WebhookEndpointCreated,
            AuditAction::WebhookEndpointCreated,
            AuditAction::WebhookEndpointCreated,
            AuditAction::ApiKeyGenerated,
            AuditAction::ApiKeyGenerated,
            AuditAction::WorkspaceCreated,
            AuditAction::ServiceTokenGenerated,
        ]
    );
    assert_eq!(seen(&claimed), expected_of(&own_on));
    assert_eq!(claimed[4].message_id, format!("evt_{}", alpha_key.id));
    assert!(claimed.windows(2).all(|pair| pair[0].id < pair[1].id), "in the order of the events");

    // A list of types: those types only, in every workspace.
    let claimed = claim(&*store, &generated, now, "one").await;
    assert_eq!(seen(&claimed), expected_of(&[alpha_key, beta_key]));

    // One workspace: neither another workspace's events nor the
    // organisation's own (endpoints, tokens, a new workspace).
    let claimed = claim(&*store, &only_alpha, now, "one").await;
    assert_eq!(seen(&claimed), expected_of(&[alpha_key]));
    assert!(!message_ids(&claimed).contains(&format!("evt_{}", gamma_created.id)));

    // The triggers decide what keys-core's `WebhookEndpoint::subscribes`
    // says of each event since the endpoint's creation.
    for (id, expected) in [
        (&everything, own_on.iter().map(|recorded| recorded.id).collect::<Vec<_>>()),
        (&generated, vec![alpha_key.id, beta_key.id]),
        (&only_alpha, vec![alpha_key.id]),
    ] {
        let endpoint = store.webhook_endpoint(&organisation.id, id).await.unwrap().unwrap().endpoint;
        let decided: Vec<i64> = acme_trail
            .iter()
            .filter(|recorded| recorded.id >= created(id).id)
            .filter(|recorded| endpoint.subscribes(recorded.event.action.as_str(), recorded.event.workspace.as_ref()))
            .map(|recorded| recorded.id)
            .collect();
        assert_eq!(decided, expected, "keys-core and the trigger agree on {id}");
    }

    // Disabled: nothing to claim, nothing written meanwhile; enabled, it
    // takes the events from then on (its own update first).
    let refused = store.claim_webhook_deliveries(&disabled, now, now + CLAIM, "one", 100).await.unwrap();
    assert_eq!(refused, None);
    set_status(&*store, &mut world, &organisation, &disabled, EndpointStatus::Enabled).await;
    let enabled_at = world.tick(1);
    let acme_trail = trail(&*store, &organisation.id).await;
    let enabled = event_of(&acme_trail, AuditAction::WebhookEndpointUpdated, disabled.as_str());
    let expected_due = BTreeSet::from([disabled.clone(), everything.clone(), foreign.clone()]);
    assert_eq!(due(&*store, enabled_at).await, expected_due);
    assert_eq!(seen(&claim(&*store, &disabled, enabled_at, "one").await), expected_of(&[enabled]));
    let claimed = claim(&*store, &everything, enabled_at, "one").await;
    assert_eq!(seen(&claimed), expected_of(&[enabled]), "an endpoint hears of the others' changes");

    // Another organisation's endpoint: its own events only.
    let globex_trail = trail(&*store, &globex.id).await;
    let claimed = claim(&*store, &foreign, now, "one").await;
    let expected = [
        event_of(&globex_trail, AuditAction::WebhookEndpointCreated, foreign.as_str()),
        event_of(&globex_trail, AuditAction::ApiKeyGenerated, in_globex.id.as_str()),
    ];
    assert_eq!(seen(&claimed), expected_of(&expected));
    assert!(due(&*store, later(&mut world, 1)).await.is_empty(), "every delivery is claimed");
}

pub async fn claims_attempts_and_retries_move_a_delivery_on(db: &TestDb) {
    let (store, mut world, organisation, [workspace]) = acme(db, 52, ["demo"]).await;
    let endpoint = stored_endpoint(&*store, &mut world, &organisation, types(&["api_key.generated"]), None).await;
    let other = stored_endpoint(&*store, &mut world, &organisation, types(&["workspace.created"]), None).await;
    for name in ["first", "second"] {
        world.tick(10);
        store.create_api_key(&world.api_key(&workspace, name)).await.unwrap();
    }
    world.stored_workspaces(&*store, &organisation, ["second"]).await;

    // A claim holds until it runs out: a second claim at the same time
    // finds nothing, and the endpoint is not due meanwhile.
    let t0 = later(&mut world, 1);
    let claimed = claim(&*store, &endpoint, t0, "a").await;
    assert_eq!(claimed.len(), 2);
    let [first, second] = [claimed[0].clone(), claimed[1].clone()];
    assert!(claim(&*store, &endpoint, t0, "b").await.is_empty(), "nothing is claimed twice");
    assert_eq!(due(&*store, t0).await, BTreeSet::from([other.clone()]));
    assert_eq!(due(&*store, t0 + CLAIM).await, BTreeSet::from([other.clone()]), "held until its end");
    let lapsed = t0 + CLAIM + Duration::microseconds(1);
    assert_eq!(due(&*store, lapsed).await, BTreeSet::from([endpoint.clone(), other.clone()]));

    // A failure to retry, then a failure with the schedule spent: the
    // endpoint has failed since the first.
    let t1 = t0 + Duration::seconds(1);
    let retry_at = t0 + Duration::seconds(10);
    let answered = (Some(500), Some("the receiver answered 500"));
    let since = finish(&*store, attempt(&first, &endpoint, "a", t1, answered, AttemptOutcome::RetryAt(retry_at))).await;
    assert_eq!(since, Some(t1));
    let t2 = t0 + Duration::seconds(2);
    let refused = (None, Some("connection refused"));
    let since = finish(&*store, attempt(&second, &endpoint, "a", t2, refused, AttemptOutcome::Failed)).await;
    assert_eq!(since, Some(t1), "failing since the first failure");
    let stored = store.webhook_endpoint(&organisation.id, &endpoint).await.unwrap().unwrap();
    assert_eq!(stored.endpoint.failing_since, Some(t1));

    // Due again at its time only, and never the failed one.
    assert_eq!(due(&*store, retry_at - Duration::microseconds(1)).await, BTreeSet::from([other.clone()]));
    assert_eq!(due(&*store, retry_at).await, BTreeSet::from([endpoint.clone(), other.clone()]));
    let again = claim(&*store, &endpoint, retry_at, "c").await;
    assert_eq!(message_ids(&again), vec![first.message_id.clone()]);
    assert_eq!((again[0].id, again[0].attempts, &again[0].payload), (first.id, 1, &first.payload));

    let (total, rows) = attempts(&*store, &endpoint).await;
    assert_eq!(total, 2);
    let expected = [
        AttemptRow {
            id: rows[0].id,
            message_id: second.message_id.clone(),
            kind: "api_key.generated".to_owned(),
            at: t2,
            status_code: None,
            error: Some("connection refused".to_owned()),
            duration_ms: 1_500,
            state: "failed".to_owned(),
            next_attempt_at: None,
        },
        AttemptRow {
            id: rows[1].id,
            message_id: first.message_id.clone(),
            kind: "api_key.generated".to_owned(),
            at: t1,
            status_code: Some(500),
            error: Some("the receiver answered 500".to_owned()),
            duration_ms: 1_500,
            state: "pending".to_owned(),
            next_attempt_at: Some(retry_at),
        },
    ];
    assert_eq!(rows, expected, "newest first, with the delivery's state now");
    assert!(rows[0].id > rows[1].id);

    // Delivered: never due again, and the run of failures ends.
    let t3 = retry_at + Duration::seconds(1);
    let delivered = attempt(&again[0], &endpoint, "c", t3, (Some(204), None), AttemptOutcome::Delivered);
    assert_eq!(finish(&*store, delivered).await, None);
    assert_eq!(
        store.webhook_endpoint(&organisation.id, &endpoint).await.unwrap().unwrap().endpoint.failing_since,
        None
    );
    assert_eq!(due(&*store, t3 + Duration::days(365)).await, BTreeSet::from([other.clone()]));
    let (total, rows) = attempts(&*store, &endpoint).await;
    assert_eq!(total, 3);
    assert_eq!(
        rows.iter()
            .map(|row| (row.message_id.as_str(), row.status_code, row.state.as_str(), row.next_attempt_at))
            .collect::<Vec<_>>(),
        [
            (first.message_id.as_str(), Some(204), "delivered", None),
            (second.message_id.as_str(), None, "failed", None),
            (first.message_id.as_str(), Some(500), "delivered", None),
        ]
    );
    let page = store.webhook_attempts(&endpoint, Pagination::new(1, 1).unwrap()).await.unwrap();
    assert_eq!((page.total, page.items.iter().map(|row| row.id).collect::<Vec<_>>()), (3, vec![rows[1].id]));
    assert_eq!(attempts(&*store, &other).await, (0, Vec::new()), "attempts are per endpoint");

    // A retry makes a delivered one due at once; unknown ids, or another
    // endpoint's, are not found.
    let t4 = t3 + Duration::seconds(5);
    assert!(store.retry_webhook_delivery(&endpoint, &first.message_id, t4).await.unwrap());
    assert!(!store.retry_webhook_delivery(&endpoint, "evt_999999999", t4).await.unwrap());
    let of_other = claim(&*store, &other, t4, "d").await;
    assert_eq!(of_other.len(), 1);
    let foreign_message = &of_other[0].message_id;
    assert!(!store.retry_webhook_delivery(&endpoint, foreign_message, t4).await.unwrap(), "another endpoint's");
    assert!(store.retry_webhook_delivery(&other, foreign_message, t4).await.unwrap(), "the other endpoint's own");
    assert_eq!(due(&*store, t4 - Duration::microseconds(1)).await, BTreeSet::new());
    assert!(due(&*store, t4).await.contains(&endpoint));
    let retried = claim(&*store, &endpoint, t4, "e").await;
    assert_eq!((message_ids(&retried), retried[0].attempts), (vec![first.message_id.clone()], 2));
    assert_eq!(attempts(&*store, &endpoint).await.1[0].state, "pending");

    // A new run of failures starts at its first failure.
    let t5 = t4 + Duration::seconds(1);
    let failed = attempt(&retried[0], &endpoint, "e", t5, refused, AttemptOutcome::Failed);
    assert_eq!(finish(&*store, failed).await, Some(t5));
}

pub async fn warnings_are_stored_once_when_an_endpoint_subscribes(db: &TestDb) {
    let (store, mut world, organisation, [alpha, beta]) = acme(db, 53, ["alpha", "beta"]).await;
    let globex = world.stored_organisation(&*store, "globex").await;
    let [foreign] = world.stored_workspaces(&*store, &globex, ["foreign"]).await;
    let expiring = types(&["api_key.expiring"]);
    let subscriber = stored_endpoint(&*store, &mut world, &organisation, expiring, Some(vec![alpha.uid.clone()])).await;
    let disabled = endpoint(&mut world, &organisation, types(&["credits.low"]), None, EndpointStatus::Disabled);
    store.run(CreateWebhookEndpoint { stored: disabled }).await.unwrap();

    let at = later(&mut world, 1);
    let subscribed = warning(&organisation, Some(&alpha), "api_key.expiring", "api_key.expiring:a:604800", at);
    let unsubscribed = [
        warning(&organisation, Some(&beta), "api_key.expiring", "api_key.expiring:b:604800", at),
        warning(&organisation, None, "api_key.expiring", "api_key.expiring:org:604800", at),
        warning(&organisation, Some(&alpha), "credits.low", "credits.low:a", at),
        warning(&globex, Some(&foreign), "api_key.expiring", "api_key.expiring:f:604800", at),
    ];
    let mut batch = vec![unsubscribed[0].clone(), subscribed.clone()];
    batch.extend_from_slice(&unsubscribed[1..]);
    assert_eq!(store.record_webhook_warnings(&batch).await.unwrap(), 1);
    assert_eq!(store.record_webhook_warnings(&[]).await.unwrap(), 0);

    // Once per dedupe, whatever the data and whichever store records it.
    assert_eq!(store.record_webhook_warnings(std::slice::from_ref(&subscribed)).await.unwrap(), 0);
    let again = Warning { data: r#"{"other":true}"#.to_owned(), at: later(&mut world, 1), ..subscribed.clone() };
    assert_eq!(db.store().await.record_webhook_warnings(&[again]).await.unwrap(), 0);

    let now = later(&mut world, 1);
    assert_eq!(due(&*store, now).await, BTreeSet::from([subscriber.clone()]));
    let claimed = claim(&*store, &subscriber, now, "one").await;
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let delivery = &claimed[0];
    let number = delivery.message_id.strip_prefix("wrn_").expect("a warning's message id");
    assert!(number.parse::<u64>().is_ok(), "{}", delivery.message_id);
    assert_eq!((delivery.kind.as_str(), delivery.created_at, delivery.attempts), ("api_key.expiring", at, 0));
    assert_eq!(delivery.payload, Payload::Warning { data: subscribed.data.clone(), at });

    // An endpoint of every event takes what the first did not; both get
    // the same message id for a warning both subscribe to.
    let everything = stored_endpoint(&*store, &mut world, &organisation, EventFilter::All, None).await;
    let at = later(&mut world, 1);
    let in_beta = warning(&organisation, Some(&beta), "api_key.expiring", "api_key.expiring:b2:604800", at);
    let in_alpha = warning(&organisation, Some(&alpha), "api_key.expiring", "api_key.expiring:a2:604800", at);
    assert_eq!(store.record_webhook_warnings(&[in_beta.clone(), in_alpha.clone()]).await.unwrap(), 2);
    let now = later(&mut world, 1);
    let claimed = claim(&*store, &subscriber, now, "two").await;
    assert_eq!(
        claimed.iter().map(|delivery| &delivery.payload).collect::<Vec<_>>(),
        [&Payload::Warning { data: in_alpha.data.clone(), at }]
    );
    let of_everything = claim(&*store, &everything, now, "two").await;
    let warnings: Vec<_> = of_everything.iter().filter(|delivery| delivery.message_id.starts_with("wrn_")).collect();
    assert_eq!(
        warnings.iter().map(|delivery| delivery.payload.clone()).collect::<Vec<_>>(),
        [Payload::Warning { data: in_beta.data.clone(), at }, Payload::Warning { data: in_alpha.data.clone(), at }]
    );
    assert_eq!(warnings[1].message_id, claimed[0].message_id, "one message per warning");
    let first_number: u64 = number.parse().unwrap();
    let later_number: u64 = warnings[0].message_id.strip_prefix("wrn_").unwrap().parse().unwrap();
    assert!(later_number > first_number);
}

/// Two claimers at once (two stores, as two replicas) never take the same
/// delivery, and between them take every due one: on PostgreSQL each skips
/// the rows the other holds (`SKIP LOCKED`); on SQLite they take turns.
pub async fn concurrent_claims_never_take_a_delivery_twice(db: &TestDb) {
    let (store, mut world, organisation, _) = acme(db, 54, ["demo"]).await;
    let other = db.store().await;
    let endpoint = stored_endpoint(&*store, &mut world, &organisation, types(&["credits.low"]), None).await;
    let at = later(&mut world, 1);
    let warnings: Vec<_> =
        (0..50).map(|index| warning(&organisation, None, "credits.low", &format!("credits.low:{index}"), at)).collect();
    assert_eq!(store.record_webhook_warnings(&warnings).await.unwrap(), 50);

    let mut all_ids = None;
    for (round, limit) in [50, 50, 50, 50, 50, 20, 20, 20, 20, 20].into_iter().enumerate() {
        // Each round comes after the last one's claims ran out.
        let now = at + Duration::seconds(120 * (i64::try_from(round).unwrap() + 1));
        let (one, two) = tokio::join!(
            store.claim_webhook_deliveries(&endpoint, now, now + CLAIM, "one", limit),
            other.claim_webhook_deliveries(&endpoint, now, now + CLAIM, "two", limit),
        );
        let ids = |claimed: Option<(StoredEndpoint, Vec<ClaimedDelivery>)>| -> BTreeSet<i64> {
            claimed.expect("an enabled endpoint").1.iter().map(|delivery| delivery.id).collect()
        };
        let (one, two) = (ids(one.unwrap()), ids(two.unwrap()));
        assert!(one.is_disjoint(&two), "round {round}: both claimed {:?}", one.intersection(&two).collect::<Vec<_>>());
        assert!(one.len() <= limit as usize && two.len() <= limit as usize);
        let union: BTreeSet<i64> = one.union(&two).copied().collect();
        if limit == 50 {
            assert_eq!(union.len(), 50, "round {round}: together they claim every due delivery");
            assert_eq!(all_ids.get_or_insert_with(|| union.clone()), &union);
        } else {
            assert_eq!((one.len(), two.len()), (20, 20), "round {round}: each finds its 20 among the 50");
        }
        let rest = store.claim_webhook_deliveries(&endpoint, now, now + CLAIM, "three", 50).await.unwrap();
        assert_eq!(rest.unwrap().1.len(), 50 - union.len(), "round {round}: a third claimer takes the rest");
    }
}

pub async fn expiring_keys_are_found_once_per_lead(db: &TestDb) {
    let (store, mut world, organisation, [workspace]) = acme(db, 55, ["demo"]).await;
    stored_endpoint(&*store, &mut world, &organisation, types(&["api_key.expiring"]), None).await;
    // Organisations without an enabled endpoint: none, or a disabled one.
    let globex = world.stored_organisation(&*store, "globex").await;
    let [globex_workspace] = world.stored_workspaces(&*store, &globex, ["demo"]).await;
    let initech = world.stored_organisation(&*store, "initech").await;
    let [initech_workspace] = world.stored_workspaces(&*store, &initech, ["demo"]).await;
    let disabled = endpoint(&mut world, &initech, EventFilter::All, None, EndpointStatus::Disabled);
    store.run(CreateWebhookEndpoint { stored: disabled }).await.unwrap();
    // Enabled endpoints that would not take the warning: of other types,
    // or of another workspace. Their keys' warnings are never stored, so
    // a scan that found them would find them again every time, before
    // the keys it can warn of.
    let hooli = world.stored_organisation(&*store, "hooli").await;
    let [hooli_workspace, unwatched] = world.stored_workspaces(&*store, &hooli, ["demo", "unwatched"]).await;
    stored_endpoint(&*store, &mut world, &hooli, types(&["api_key.generated"]), None).await;
    let watched = Some(vec![hooli_workspace.uid.clone()]);
    stored_endpoint(&*store, &mut world, &hooli, types(&["api_key.expiring", "credits.low"]), watched).await;

    let made = world.now;
    let in_two_days = expiring_key(&mut world, &workspace, "two days", made + Duration::days(2));
    let in_twelve_hours = expiring_key(&mut world, &workspace, "twelve hours", made + Duration::hours(12));
    let in_a_month = expiring_key(&mut world, &workspace, "a month", made + Duration::days(30));
    let past = expiring_key(&mut world, &workspace, "past", made + Duration::seconds(60));
    let deleted = expiring_key(&mut world, &workspace, "deleted", made + Duration::hours(1));
    let disabled_key = expiring_key(&mut world, &workspace, "disabled", made + Duration::hours(1));
    let never = world.api_key(&workspace, "never");
    let foreign = [
        expiring_key(&mut world, &globex_workspace, "globex", made + Duration::hours(1)),
        expiring_key(&mut world, &initech_workspace, "initech", made + Duration::hours(1)),
        expiring_key(&mut world, &unwatched, "unwatched", made + Duration::hours(1)),
    ];
    for key in [&in_two_days, &in_twelve_hours, &in_a_month, &past, &deleted, &disabled_key, &never]
        .into_iter()
        .chain(&foreign)
    {
        store.create_api_key(key).await.unwrap();
    }
    let actor: Actor = world.actor.clone();
    store.delete_api_key(&workspace.uid, &deleted.id, &actor, world.tick(1)).await.unwrap();
    let disable = keys_store::ApiKeyChange::Disable;
    store.change_api_key(&workspace.uid, &disabled_key.id, disable, &actor, world.tick(1)).await.unwrap();

    let now = made + Duration::seconds(120);
    let expiring = async |lead: i64, covered: &[i64]| {
        store.expiring_api_keys(now, Duration::seconds(lead), covered, 100).await.unwrap()
    };
    let [two_days, twelve_hours] = [&in_two_days, &in_twelve_hours].map(|key| found(&organisation, &workspace, key));
    assert_eq!(expiring(DAY, &[DAY]).await, vec![twelve_hours.clone()]);
    assert_eq!(expiring(WEEK, &[DAY, WEEK]).await, [twelve_hours.clone(), two_days.clone()], "soonest first");
    assert_eq!(expiring(WEEK, &[]).await, [twelve_hours.clone(), two_days.clone()]);
    let limited = store.expiring_api_keys(now, Duration::days(60), &[], 2).await.unwrap();
    assert_eq!(limited, [twelve_hours.clone(), two_days.clone()], "at most the limit");
    assert_eq!(expiring(60 * DAY, &[]).await.len(), 3);
    let unwatched_warning = warning(&hooli, Some(&unwatched), "api_key.expiring", "api_key.expiring:u:86400", now);
    assert_eq!(store.record_webhook_warnings(&[unwatched_warning]).await.unwrap(), 0, "no endpoint would take it");

    // The week's warning of the two-day key.
    let week_warning = |key: &ApiKey, lead: i64| {
        warning(
            &organisation,
            Some(&workspace),
            "api_key.expiring",
            &format!("api_key.expiring:{}:{lead}", key.id.as_str()),
            now,
        )
    };
    assert_eq!(store.record_webhook_warnings(&[week_warning(&in_two_days, WEEK)]).await.unwrap(), 1);
    assert_eq!(expiring(WEEK, &[DAY, WEEK]).await, vec![twelve_hours.clone()]);
    assert_eq!(expiring(DAY, &[DAY]).await, vec![twelve_hours.clone()]);
    assert_eq!(expiring(WEEK, &[DAY]).await, [twelve_hours.clone(), two_days.clone()], "only the covered leads count");

    // The day's warning of the twelve-hour key covers the week's lead.
    assert_eq!(store.record_webhook_warnings(&[week_warning(&in_twelve_hours, DAY)]).await.unwrap(), 1);
    assert!(expiring(DAY, &[DAY]).await.is_empty());
    assert!(expiring(WEEK, &[DAY, WEEK]).await.is_empty());
    assert_eq!(expiring(WEEK, &[WEEK]).await, vec![twelve_hours.clone()]);
    assert_eq!(expiring(60 * DAY, &[DAY, WEEK]).await, [found(&organisation, &workspace, &in_a_month)]);

    // Once a key expires, it is no longer found.
    let after = made + Duration::hours(13);
    assert_eq!(store.expiring_api_keys(after, Duration::seconds(WEEK), &[], 100).await.unwrap(), [two_days]);
}

pub async fn endpoint_commands_cascade_cap_and_disable_after_five_days(db: &TestDb) {
    let (store, mut world, organisation, [workspace]) = acme(db, 56, ["demo"]).await;
    let actor = world.actor.clone();

    // A delete takes its deliveries and their attempts with it.
    let doomed = stored_endpoint(&*store, &mut world, &organisation, EventFilter::All, None).await;
    let kept = stored_endpoint(&*store, &mut world, &organisation, EventFilter::All, None).await;
    store.create_api_key(&world.api_key(&workspace, "event")).await.unwrap();
    let now = later(&mut world, 1);
    let claimed = claim(&*store, &doomed, now, "a").await;
    let failed = attempt(&claimed[0], &doomed, "a", now, (Some(500), Some("500")), AttemptOutcome::RetryAt(now));
    store.finish_webhook_attempt(&failed).await.unwrap();
    assert_eq!(rows_of(db, "webhook_deliveries", "claim", &doomed).await, 3, "its creation, the other's, the key's");
    assert_eq!(rows_of(db, "webhook_attempts", "error", &doomed).await, 1);
    let kept_deliveries = rows_of(db, "webhook_deliveries", "claim", &kept).await;
    let acting = Acting::new(organisation.id.clone(), actor.clone(), world.tick(1));
    store.run(DeleteWebhookEndpoint { acting: acting.clone(), id: doomed.clone() }).await.unwrap();
    assert_eq!(rows_of(db, "webhook_deliveries", "claim", &doomed).await, 0);
    assert_eq!(rows_of(db, "webhook_attempts", "error", &doomed).await, 0);
    assert_eq!(store.webhook_endpoint(&organisation.id, &doomed).await.unwrap(), None);
    assert_eq!(store.claim_webhook_deliveries(&doomed, now, now + CLAIM, "b", 10).await.unwrap(), None);
    assert_eq!(attempts(&*store, &doomed).await, (0, Vec::new()));
    assert!(!due(&*store, later(&mut world, 1)).await.contains(&doomed));
    let deleted = trail(&*store, &organisation.id).await.pop().unwrap();
    assert_eq!(
        (deleted.event.action, deleted.event.target_id.as_str()),
        (AuditAction::WebhookEndpointDeleted, doomed.as_str())
    );
    assert_eq!(rows_of(db, "webhook_deliveries", "claim", &kept).await, kept_deliveries + 1, "the deletion's event");
    let again = store.run(DeleteWebhookEndpoint { acting: acting.clone(), id: doomed.clone() }).await;
    assert_refused(again.map(|_| ()), not_found("webhook endpoint"));

    // At most 32 endpoints in an organisation.
    let globex = world.stored_organisation(&*store, "globex").await;
    let foreign = stored_endpoint(&*store, &mut world, &globex, types(&["credits.low"]), None).await;
    let acting = Acting::new(organisation.id.clone(), actor.clone(), world.tick(1));
    let refused = store.run(DeleteWebhookEndpoint { acting, id: foreign.clone() }).await;
    assert_refused(refused.map(|_| ()), not_found("webhook endpoint"));
    for _ in 1..WebhookEndpoint::MAX_PER_ORGANISATION - 2 {
        stored_endpoint(&*store, &mut world, &organisation, types(&["credits.low"]), None).await;
    }
    // Creates racing through two stores for the last two places: the
    // count is taken under the organisation's lock.
    let stores = [store.clone(), db.store().await];
    let (created, refusals) = race_alternating(6, &stores, |store| {
        let stored = endpoint(&mut world, &organisation, types(&["credits.low"]), None, EndpointStatus::Enabled);
        Box::pin(async move { store.run(CreateWebhookEndpoint { stored }).await.map(|executed| executed.output) })
    })
    .await;
    let too_many = CoreError::TooMany { field: "webhook endpoints in an organisation", max: 32 };
    assert_eq!((created.len(), refusals.len()), (2, 4), "{refusals:?}");
    assert!(refusals.iter().all(|refusal| *refusal == Expected::Refused(too_many.clone())), "{refusals:?}");
    assert_eq!(store.webhook_endpoints(&organisation.id).await.unwrap().len(), WebhookEndpoint::MAX_PER_ORGANISATION);
    let events = trail(&*store, &organisation.id).await.len();
    let one_more = endpoint(&mut world, &organisation, EventFilter::All, None, EndpointStatus::Enabled);
    let refused = store.run(CreateWebhookEndpoint { stored: one_more.clone() }).await;
    assert_refused(refused.map(|_| ()), too_many);
    assert_eq!(store.webhook_endpoints(&organisation.id).await.unwrap().len(), 32);
    assert_eq!(trail(&*store, &organisation.id).await.len(), events, "a refusal writes nothing");
    stored_endpoint(&*store, &mut world, &globex, EventFilter::All, None).await;
    let acting = Acting::new(organisation.id.clone(), actor.clone(), world.tick(1));
    store.run(DeleteWebhookEndpoint { acting, id: kept.clone() }).await.unwrap();
    store.run(CreateWebhookEndpoint { stored: one_more.clone() }).await.unwrap();

    // Disabled after five days of failures, decided on `now`.
    let failing = one_more.endpoint.id.clone();
    let healthy = stored_endpoint(&*store, &mut world, &globex, EventFilter::All, None).await;
    let disable = |organisation: &Organisation, id: &WebhookEndpointId, now| DisableFailingWebhookEndpoint {
        acting: Acting::new(organisation.id.clone(), None, now),
        id: id.clone(),
    };
    let now = later(&mut world, 1);
    let claimed = claim(&*store, &failing, now, "f").await;
    let failed = attempt(&claimed[0], &failing, "f", now, (None, Some("timed out")), AttemptOutcome::RetryAt(now));
    assert_eq!(store.finish_webhook_attempt(&failed).await.unwrap(), Some(now));
    let almost = now + Duration::days(5) - Duration::microseconds(1);
    assert!(!store.run(disable(&organisation, &failing, almost)).await.unwrap().output);
    assert!(!store.run(disable(&globex, &healthy, now + Duration::days(30))).await.unwrap().output, "never failed");
    assert!(!store.run(disable(&globex, &failing, now + Duration::days(30))).await.unwrap().output, "not globex's");
    let stored = store.webhook_endpoint(&organisation.id, &failing).await.unwrap().unwrap();
    assert_eq!((stored.endpoint.status, stored.endpoint.failing_since), (EndpointStatus::Enabled, Some(now)));
    let events = trail(&*store, &organisation.id).await.len();

    let five_days = now + Duration::days(5);
    assert!(store.run(disable(&organisation, &failing, five_days)).await.unwrap().output);
    let stored = store.webhook_endpoint(&organisation.id, &failing).await.unwrap().unwrap();
    assert_eq!((stored.endpoint.status, stored.endpoint.updated_at), (EndpointStatus::Disabled, five_days));
    let acme_trail = trail(&*store, &organisation.id).await;
    assert_eq!(acme_trail.len(), events + 1);
    let disabled = &acme_trail[events].event;
    assert_eq!(
        (
            disabled.action,
            disabled.target_id.as_str(),
            disabled.actor.as_ref(),
            disabled.workspace.as_ref(),
            disabled.at
        ),
        (AuditAction::WebhookEndpointDisabled, failing.as_str(), None, None, five_days)
    );
    assert!(!store.run(disable(&organisation, &failing, five_days + Duration::days(1))).await.unwrap().output, "once");
    assert_eq!(trail(&*store, &organisation.id).await.len(), events + 1);
    assert!(!due(&*store, five_days).await.contains(&failing), "a disabled endpoint is not due");
}

pub async fn prune_deletes_only_finished_deliveries_past_the_cutoff(db: &TestDb) {
    let (store, mut world, organisation, [workspace]) = acme(db, 57, ["demo"]).await;
    let events = types(&["api_key.generated", "credits.low"]);
    let endpoint = stored_endpoint(&*store, &mut world, &organisation, events, None).await;
    for name in ["delivered", "failed", "pending"] {
        store.create_api_key(&world.api_key(&workspace, name)).await.unwrap();
    }
    let t0 = later(&mut world, 1);
    let old_warning = warning(&organisation, None, "credits.low", "credits.low:old", t0);
    assert_eq!(store.record_webhook_warnings(&[old_warning]).await.unwrap(), 1);

    let t1 = later(&mut world, 10);
    let claimed = claim(&*store, &endpoint, t1, "a").await;
    assert_eq!(claimed.len(), 4);
    let outcomes = [
        AttemptOutcome::Delivered,
        AttemptOutcome::Failed,
        AttemptOutcome::RetryAt(t1 + Duration::days(1)),
        AttemptOutcome::Delivered,
    ];
    for (delivery, outcome) in claimed.iter().zip(outcomes) {
        let answer = if outcome == AttemptOutcome::Delivered { (Some(200), None) } else { (Some(503), Some("503")) };
        store.finish_webhook_attempt(&attempt(delivery, &endpoint, "a", t1, answer, outcome)).await.unwrap();
    }
    let cutoff = later(&mut world, 3_600);

    // After the cutoff: a delivered event and a pending warning.
    let t3 = later(&mut world, 10);
    store.create_api_key(&world.api_key(&workspace, "recent")).await.unwrap();
    let new_warning = warning(&organisation, None, "credits.low", "credits.low:new", t3);
    assert_eq!(store.record_webhook_warnings(std::slice::from_ref(&new_warning)).await.unwrap(), 1);
    let t4 = later(&mut world, 1);
    let recent = claim(&*store, &endpoint, t4, "b").await;
    assert_eq!(recent.len(), 2, "{recent:?}");
    let delivered = attempt(&recent[0], &endpoint, "b", t4, (Some(200), None), AttemptOutcome::Delivered);
    store.finish_webhook_attempt(&delivered).await.unwrap();
    assert_eq!(attempts(&*store, &endpoint).await.0, 5);

    // Three finished deliveries and one warning are older than the cutoff,
    // in bounded rounds.
    assert_eq!(store.prune_webhooks(cutoff, 1).await.unwrap(), 2, "one delivery and one warning");
    assert_eq!(store.prune_webhooks(cutoff, 100).await.unwrap(), 2, "the other two deliveries");
    assert_eq!(store.prune_webhooks(cutoff, 100).await.unwrap(), 0);
    let (total, rows) = attempts(&*store, &endpoint).await;
    assert_eq!(total, 2, "the pruned deliveries' attempts went with them");
    assert_eq!(
        rows.iter().map(|row| row.message_id.clone()).collect::<Vec<_>>(),
        [recent[0].message_id.clone(), claimed[2].message_id.clone()]
    );
    assert_eq!(rows_of(db, "webhook_deliveries", "claim", &endpoint).await, 3);
    for pruned in [&claimed[0], &claimed[1], &claimed[3]] {
        assert!(!store.retry_webhook_delivery(&endpoint, &pruned.message_id, t4).await.unwrap(), "{pruned:?}");
    }

    // The pending ones are still delivered, with what they send.
    let pending = claim(&*store, &endpoint, t1 + Duration::days(1), "c").await;
    assert_eq!(message_ids(&pending), [claimed[2].message_id.clone(), recent[1].message_id.clone()]);
    assert_eq!(pending[0].payload, claimed[2].payload);
    assert_eq!(pending[1].payload, Payload::Warning { data: new_warning.data.clone(), at: t3 });
    // The recent warning is kept, and so its dedupe.
    assert_eq!(store.record_webhook_warnings(&[new_warning]).await.unwrap(), 0);

    // An event pruned from the audit trail before its delivery succeeded
    // is gone from what the delivery sends; the delivery stays.
    let now = t1 + Duration::days(2);
    store.prune_audit_events(&organisation.id, now, now).await.unwrap();
    let gone = claim(&*store, &endpoint, now, "d").await;
    assert_eq!(message_ids(&gone), message_ids(&pending), "the claims of before ran out");
    assert_eq!((gone[0].kind.as_str(), &gone[0].payload), ("api_key.generated", &Payload::Gone));
    assert_eq!(gone[1].payload, pending[1].payload, "a warning is not the audit trail's");
}
