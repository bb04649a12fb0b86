//! Webhooks as use cases, on a real SQLite file with the test's clock: the
//! warnings verification and the expiry scan raise (each once), the retry
//! schedule the deliverer follows, and the endpoint it disables after five
//! days of failures. The receiver is an `Outbound` that records what it is
//! sent and answers as told: the network path itself (the SSRF guard, the
//! Standard Webhooks library verifying each delivery) is keysd's e2e suite.

use std::sync::{Arc, Mutex};

use keys_core::meter::{Credits, RateLimit, RateLimits};
use keys_core::webhook::RETRY_SCHEDULE;
use keys_core::{GracePeriod, Name};
use keys_service::api_keys::NewApiKey;
use keys_service::webhooks::{EndpointChange, NewEndpoint, Outbound};
use keys_service::{Clock, Service};
use keys_store::{MeterSetting, RecordedAuditEvent};

use crate::fixture::{fixture_with, Fixture};

/// What the receiver was sent: (webhook-id, type, body).
#[derive(Default)]
struct Receiver {
    sent: Mutex<Vec<(String, String, serde_json::Value)>>,
    status: Mutex<u16>,
}

impl Receiver {
    fn new(status: u16) -> Arc<Self> {
        Arc::new(Self { sent: Mutex::default(), status: Mutex::new(status) })
    }

    fn answer(&self, status: u16) {
        *self.status.lock().expect("lock") = status;
    }

    fn of_type(&self, kind: &str) -> Vec<serde_json::Value> {
        let sent = self.sent.lock().expect("lock");
        sent.iter().filter(|(_, sent_kind, _)| sent_kind == kind).map(|(_, _, body)| body.clone()).collect()
    }

    fn ids(&self) -> Vec<String> {
        self.sent.lock().expect("lock").iter().map(|(id, _, _)| id.clone()).collect()
    }
}

impl Outbound for Receiver {
    fn post<'a>(
        &'a self,
        _url: &'a str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u16, String>> + Send + 'a>> {
        Box::pin(async move {
            let id = headers.iter().find(|(name, _)| *name == "webhook-id").map(|(_, id)| id.clone());
            let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            let kind = body["type"].as_str().expect("type").to_owned();
            self.sent.lock().expect("lock").push((id.expect("webhook-id"), kind, body));
            Ok(*self.status.lock().expect("lock"))
        })
    }

    fn audit_data(&self, event: &RecordedAuditEvent) -> String {
        serde_json::json!({ "id": format!("evt_{}", event.id), "action": event.event.action.as_str() }).to_string()
    }
}

async fn webhooks(seed: u64) -> (Fixture, Arc<Service>) {
    let config = keys_service::ServiceConfig { rsa_pool_capacity: 0, ..keys_service::ServiceConfig::default() };
    let fixture = fixture_with(config, seed).await;
    let service = Arc::clone(&fixture.service);
    (fixture, service)
}

async fn subscribe(service: &Service, fixture: &Fixture, events: &[&str]) -> String {
    let new = NewEndpoint {
        url: "https://hooks.example.com/keysd".to_owned(),
        events: events.iter().map(|kind| (*kind).to_owned()).collect(),
        ..NewEndpoint::default()
    };
    service.create_webhook_endpoint(&fixture.caller, new).await.expect("endpoint").view.endpoint.id.to_string()
}

async fn deliver(service: &Arc<Service>, receiver: &Arc<Receiver>) -> usize {
    let outbound: Arc<dyn Outbound> = Arc::clone(receiver) as Arc<dyn Outbound>;
    service.deliver_due_webhooks(&outbound).await.expect("delivered")
}

fn new_workspace(text: &str) -> keys_core::NewWorkspace {
    keys_core::NewWorkspace { name: name(text), slug: None, description: None, mode: None }
}

fn name(text: &str) -> Name {
    Name::parse(text).expect("name")
}

#[tokio::test]
async fn a_rolled_key_in_use_is_reported_once_an_hour() {
    let (fixture, service) = webhooks(11).await;
    subscribe(&service, &fixture, &["api_key.rolled_key_used"]).await;
    let staging = service.in_workspace(&fixture.caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(NewApiKey::named(name("old"))).await.expect("key");
    let grace = GracePeriod::from_seconds(7_200).expect("grace");
    staging.roll_api_key(&issued.key.id, Some(grace)).await.expect("rolled");
    let receiver = Receiver::new(200);
    for _ in 0..5 {
        let verified = service.verify_api_key(&fixture.caller, issued.secret.expose()).await.expect("store");
        assert!(verified.is_ok(), "a rolled key verifies during its grace");
    }
    deliver(&service, &receiver).await;
    let reported = receiver.of_type("api_key.rolled_key_used");
    assert_eq!(reported.len(), 1, "once, however many uses: {reported:?}");
    assert_eq!(reported[0]["data"]["key_id"], issued.key.id.as_str());
    assert!(!reported[0].to_string().contains(issued.secret.expose()), "no secret in a delivery");
    // The next hour, once more.
    fixture.clock.advance(3_600);
    service.verify_api_key(&fixture.caller, issued.secret.expose()).await.expect("store").expect("valid");
    deliver(&service, &receiver).await;
    assert_eq!(receiver.of_type("api_key.rolled_key_used").len(), 2);
}

#[tokio::test]
async fn an_exceeded_limit_is_reported_once_a_window_and_low_credits_once_a_crossing() {
    let (fixture, service) = webhooks(12).await;
    subscribe(&service, &fixture, &["ratelimit.exceeded", "credits.low"]).await;
    let staging = service.in_workspace(&fixture.caller, "staging").await.expect("workspace");
    let limits = RateLimits::parse([RateLimit::parse("burst", 3, 60, true).expect("limit")]).expect("limits");
    let setting = MeterSetting {
        rate_limits: Some(limits),
        credits: Some(Some(Credits::parse(10, None).expect("credits"))),
        meta: None,
    };
    let issued =
        staging.create_metered_api_key(NewApiKey::named(name("metered")), Some(setting)).await.expect("metered key");
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        let verdict = service.verify_api_key(&fixture.caller, issued.secret.expose()).await.expect("store");
        outcomes.push(verdict.map(|_| ()).map_err(|refusal| refusal.reason()));
    }
    assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 3, "{outcomes:?}");
    let receiver = Receiver::new(200);
    deliver(&service, &receiver).await;
    let exceeded = receiver.of_type("ratelimit.exceeded");
    assert_eq!(exceeded.len(), 1, "once in the window: {exceeded:?}");
    assert_eq!(exceeded[0]["data"]["name"], "burst");
    assert_eq!(exceeded[0]["data"]["limit"], 3);
    assert!(receiver.of_type("credits.low").is_empty(), "7 of 10 left is not low");

    // The next window: refused again, reported again.
    fixture.clock.advance(60);
    for _ in 0..4 {
        let _ = service.verify_api_key(&fixture.caller, issued.secret.expose()).await.expect("store");
    }
    deliver(&service, &receiver).await;
    assert_eq!(receiver.of_type("ratelimit.exceeded").len(), 2);
    // 10 − 6 = 4 left: not below 1 (10 % of 10) yet. Three more windows
    // spend the rest: the crossing below 1 is reported once.
    for _ in 0..3 {
        fixture.clock.advance(60);
        for _ in 0..3 {
            let _ = service.verify_api_key(&fixture.caller, issued.secret.expose()).await.expect("store");
        }
    }
    deliver(&service, &receiver).await;
    let low = receiver.of_type("credits.low");
    assert_eq!(low.len(), 1, "once per crossing: {low:?}");
    assert_eq!(low[0]["data"]["remaining"], 0);
}

#[tokio::test]
async fn expiring_keys_are_reported_once_per_lead_time() {
    let (fixture, service) = webhooks(13).await;
    subscribe(&service, &fixture, &["api_key.expiring"]).await;
    let staging = service.in_workspace(&fixture.caller, "staging").await.expect("workspace");
    let now = fixture.clock.now();
    let mut in_three_days = NewApiKey::named(name("soon"));
    in_three_days.expires_at = Some(now + time::Duration::days(3));
    let soon = staging.create_api_key(in_three_days).await.expect("key");
    let mut in_twelve_hours = NewApiKey::named(name("sooner"));
    in_twelve_hours.expires_at = Some(now + time::Duration::hours(12));
    let sooner = staging.create_api_key(in_twelve_hours).await.expect("key");
    let mut in_a_month = NewApiKey::named(name("later"));
    in_a_month.expires_at = Some(now + time::Duration::days(30));
    staging.create_api_key(in_a_month).await.expect("key");

    assert_eq!(service.scan_expiring_keys().await.expect("scan"), 2);
    assert_eq!(service.scan_expiring_keys().await.expect("scan again"), 0, "once per key and lead time");
    let receiver = Receiver::new(200);
    deliver(&service, &receiver).await;
    let expiring = receiver.of_type("api_key.expiring");
    let mut leads: Vec<(String, i64)> = expiring
        .iter()
        .map(|body| {
            let data = &body["data"];
            (data["key_id"].as_str().expect("id").to_owned(), data["lead_time_seconds"].as_i64().expect("lead"))
        })
        .collect();
    leads.sort();
    let mut expected = vec![(soon.key.id.to_string(), 604_800), (sooner.key.id.to_string(), 86_400)];
    expected.sort();
    assert_eq!(leads, expected, "each at the shortest lead it is within");
    // Two days on, the first key is within a day: reported again, at that lead.
    fixture.clock.advance(2 * 86_400 + 60);
    assert_eq!(service.scan_expiring_keys().await.expect("scan"), 1);
}

#[tokio::test]
async fn failures_follow_the_schedule_and_five_days_of_them_disable_the_endpoint() {
    let (fixture, service) = webhooks(14).await;
    let id = subscribe(&service, &fixture, &["workspace.created", "webhook_endpoint.disabled"]).await;
    let receiver = Receiver::new(503);
    service.create_workspace(&fixture.caller, new_workspace("Acme")).await.expect("workspace");
    assert_eq!(deliver(&service, &receiver).await, 1, "the first attempt at once");
    assert_eq!(deliver(&service, &receiver).await, 0, "not again before its time");
    let attempts = service.webhook_attempts(&fixture.caller, &id, Default::default()).await.expect("attempts");
    let first = &attempts.items[0];
    assert_eq!((first.status_code, first.state.as_str()), (Some(503), "pending"));
    let wait = first.next_attempt_at.expect("a next attempt") - first.at;
    assert!(wait >= RETRY_SCHEDULE[0] && wait <= RETRY_SCHEDULE[0] * 1.2, "{wait}");

    // Every retry of the schedule, failing: the same webhook-id each time.
    let mut tries = 1;
    for wait in RETRY_SCHEDULE {
        let stretched: time::Duration = wait * 1.2;
        fixture.clock.advance(stretched.whole_seconds() + 1);
        tries += deliver(&service, &receiver).await;
    }
    assert_eq!(tries, RETRY_SCHEDULE.len() + 1);
    let ids = receiver.ids();
    assert!(ids.iter().all(|sent| sent == &ids[0]), "one event, one webhook-id: {ids:?}");
    let attempts = service.webhook_attempts(&fixture.caller, &id, Default::default()).await.expect("attempts");
    assert_eq!(attempts.items[0].state, "failed", "the schedule is spent");
    assert_eq!(attempts.items[0].next_attempt_at, None);

    // A manual retry sends it once more; a success clears the run.
    service.retry_webhook_delivery(&fixture.caller, &id, &ids[0]).await.expect("retried");
    receiver.answer(200);
    assert_eq!(deliver(&service, &receiver).await, 1);
    let endpoint = service.webhook_endpoint(&fixture.caller, &id).await.expect("endpoint");
    assert_eq!(endpoint.endpoint.failing_since, None);

    // Failing again for five days (new events keep coming): disabled, and
    // `webhook_endpoint.disabled` is audited.
    receiver.answer(500);
    for day in 0..6 {
        let slug = format!("w{day}");
        let new = new_workspace(&slug);
        service.create_workspace(&fixture.caller, new).await.expect("workspace");
        deliver(&service, &receiver).await;
        fixture.clock.advance(86_400);
    }
    service.create_workspace(&fixture.caller, new_workspace("last")).await.expect("workspace");
    deliver(&service, &receiver).await;
    let endpoint = service.webhook_endpoint(&fixture.caller, &id).await.expect("endpoint");
    assert_eq!(endpoint.endpoint.status, keys_core::webhook::EndpointStatus::Disabled);
    let events = service.store().audit_events(fixture.caller.scope().organisation_id(), 5).await.expect("audit");
    assert!(events.iter().any(|event| event.action.as_str() == "webhook_endpoint.disabled"), "{events:?}");
    // A disabled endpoint is sent nothing more; enabled again, it is.
    let before = receiver.ids().len();
    fixture.clock.advance(86_400);
    deliver(&service, &receiver).await;
    assert_eq!(receiver.ids().len(), before);
    let enable = EndpointChange { status: Some("enabled".to_owned()), ..EndpointChange::default() };
    let enabled = service.change_webhook_endpoint(&fixture.caller, &id, enable).await.expect("enabled");
    assert_eq!(enabled.endpoint.failing_since, None);
}
