//! Metering over HTTP (docs/API.md, Metering; docs/METERING.md), without a
//! socket and on both stores: keys created and patched with `ratelimits`
//! and `credits`, verifications that spend them (`cost`, named limits) and
//! are refused `rate_limited` or `usage_exceeded` without spending, `POST
//! …/credits/`, identities shared by the keys of one `external_id`, a roll
//! that hands limits and balance on, forward authentication's headers and
//! statuses, the audit events, and 400s that change nothing. Every answer
//! is what `/openapi.json` documents.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_core::Mode;
use keys_http::{App, AppConfig};
use keys_testkit::{Tenant, TestDb};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::support::openapi_check;

const KEYS: &str = "/v1/staging/ws_api_key/";
const VERIFY: &str = "/v1/verify/api_key/";

struct Harness {
    app: App,
    responses: openapi_check::Recorder,
    token: String,
    _db: TestDb,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

async fn harness(db: TestDb) -> Harness {
    let store = db.cached_store(keys_store::CacheConfig::default()).await;
    let app = App::new(Arc::clone(&store), AppConfig::default());
    let workspaces = [("staging", Some(Mode::Sandbox)), ("production", Some(Mode::Production))];
    let tenant = Tenant::new("default", &workspaces, "test", OffsetDateTime::now_utc(), &mut OsRng);
    let (_, token) = tenant.bootstrap(&*store).await;
    Harness { app, responses: openapi_check::Recorder::default(), token, _db: db }
}

impl Harness {
    async fn send(&self, request: Request<Full<Bytes>>, record: bool) -> Reply {
        let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
        let response = self.app.handle(request).await;
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if record {
            let content_type =
                headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
            self.responses.record(openapi_check::Observation {
                method,
                path,
                status: status.as_u16(),
                content_type,
                body: text.clone(),
            });
        }
        Reply { status, headers, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null), text }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("ServiceToken {}", self.token));
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        self.send(builder.body(Full::new(body)).expect("request"), true).await
    }

    /// A new key of `staging` from `body`: its answer.
    async fn create(&self, body: Value) -> Value {
        let created = self.call(Method::POST, KEYS, Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.body
    }

    /// `/v1/verify/api_key/` with `secret` and `extra` fields.
    async fn verify(&self, secret: &str, extra: Value) -> Value {
        let mut body = json!({"api_key": secret});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        let reply = self.call(Method::POST, VERIFY, Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body
    }

    /// `valid` or the reason.
    async fn outcome(&self, secret: &str, extra: Value) -> String {
        outcome(&self.verify(secret, extra).await)
    }

    async fn audited(&self, action: &str) -> Vec<Value> {
        let reply = self.call(Method::GET, &format!("/v1/audit_event/?action={action}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["results"].as_array().cloned().unwrap_or_default()
    }

    /// Forward authentication of `secret`, as a gateway asks.
    async fn forward(&self, secret: &str) -> Reply {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/v1/auth/forward")
            .header("x-keysd-service-token", &self.token)
            .header(header::AUTHORIZATION, format!("Bearer {secret}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(request, false).await
    }
}

fn outcome(verdict: &Value) -> String {
    if verdict["valid"] == true {
        "valid".to_owned()
    } else {
        verdict["reason"].as_str().unwrap_or("?").to_owned()
    }
}

fn text(value: &Value) -> String {
    value.as_str().expect("a string").to_owned()
}

fn header_of<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|value| value.to_str().ok())
}

keys_testkit::on_both_backends! {
    credits_are_spent_refused_without_spending_and_changed_by_hand => credits_are_spent_refused_without_spending_and_changed_by_hand_sqlite, credits_are_spent_refused_without_spending_and_changed_by_hand_postgres;
    rate_limits_admit_a_burst_then_refuse_and_named_limits_apply_when_named => rate_limits_admit_a_burst_then_refuse_and_named_limits_apply_when_named_sqlite, rate_limits_admit_a_burst_then_refuse_and_named_limits_apply_when_named_postgres;
    identities_share_limits_and_credits_among_their_keys => identities_share_limits_and_credits_among_their_keys_sqlite, identities_share_limits_and_credits_among_their_keys_postgres;
    a_roll_hands_limits_and_balance_on_and_the_old_key_shares_them => a_roll_hands_limits_and_balance_on_and_the_old_key_shares_them_sqlite, a_roll_hands_limits_and_balance_on_and_the_old_key_shares_them_postgres;
    forward_authentication_answers_metering_as_gateways_expect => forward_authentication_answers_metering_as_gateways_expect_sqlite, forward_authentication_answers_metering_as_gateways_expect_postgres;
    bad_metering_input_is_a_400_that_changes_nothing => bad_metering_input_is_a_400_that_changes_nothing_sqlite, bad_metering_input_is_a_400_that_changes_nothing_postgres;
}

/// A key with 5 credits answers 4, 3, 2, 1, 0 remaining, then
/// `usage_exceeded` (spending nothing: the balance stays 0); a cost of 0
/// looks without spending, a cost above the balance is refused and leaves
/// it; `POST …/credits/` sets, increments and decrements (clamped at 0),
/// each audited, and GET shows the balance.
async fn credits_are_spent_refused_without_spending_and_changed_by_hand(db: TestDb) {
    let harness = harness(db).await;
    let created = harness.create(json!({"name": "metered", "credits": {"remaining": 5}})).await;
    assert_eq!(created["credits"], json!({"remaining": 5, "refill": null}), "{created}");
    assert_eq!(created["ratelimits"], json!([]));
    let (id, secret) = (text(&created["id"]), text(&created["api_key"]));

    for left in (0..5).rev() {
        let verdict = harness.verify(&secret, json!({})).await;
        assert_eq!(outcome(&verdict), "valid", "{verdict}");
        assert_eq!(verdict["credits"], json!({"remaining": left}), "{verdict}");
    }
    let refused = harness.verify(&secret, json!({})).await;
    assert_eq!(outcome(&refused), "usage_exceeded", "{refused}");
    assert_eq!(refused["credits"], json!({"remaining": 0}));
    assert_eq!(harness.outcome(&secret, json!({"cost": 0})).await, "valid");

    let path = format!("{KEYS}{id}/credits/");
    let set = harness.call(Method::POST, &path, Some(json!({"operation": "set", "value": 10}))).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["credits"]["remaining"], 10, "{}", set.text);
    let expensive = harness.verify(&secret, json!({"cost": 11})).await;
    assert_eq!(outcome(&expensive), "usage_exceeded");
    assert_eq!(expensive["credits"], json!({"remaining": 10}), "a refusal spends nothing");
    let spent = harness.verify(&secret, json!({"cost": 4})).await;
    assert_eq!(spent["credits"], json!({"remaining": 6}), "{spent}");

    let increment = harness.call(Method::POST, &path, Some(json!({"operation": "increment", "value": 4}))).await;
    assert_eq!(increment.body["credits"]["remaining"], 10, "{}", increment.text);
    let decrement = harness.call(Method::POST, &path, Some(json!({"operation": "decrement", "value": 25}))).await;
    assert_eq!(decrement.body["credits"]["remaining"], 0, "{}", decrement.text);
    assert_eq!(harness.outcome(&secret, json!({})).await, "usage_exceeded");
    harness.call(Method::POST, &path, Some(json!({"operation": "set", "value": 3}))).await;
    assert_eq!(harness.outcome(&secret, json!({})).await, "valid");
    let got = harness.call(Method::GET, &format!("{KEYS}{id}/"), None).await;
    assert_eq!(got.body["credits"]["remaining"], 2, "{}", got.text);

    let events = harness.audited("api_key.credits_updated").await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events.iter().all(|event| event["target"]["id"] == id.as_str()), "{events:?}");
    assert!(!serde_json::to_string(&events).expect("json").contains(&secret), "no secret in the trail");

    // A set while this replica holds a slice of the old balance answers
    // the new balance (the old slice is void, not counted).
    let fresh = harness.create(json!({"name": "sliced", "credits": {"remaining": 100}})).await;
    let (fresh_id, fresh_secret) = (text(&fresh["id"]), text(&fresh["api_key"]));
    assert_eq!(harness.verify(&fresh_secret, json!({})).await["credits"], json!({"remaining": 99}));
    let fresh_path = format!("{KEYS}{fresh_id}/credits/");
    let set = harness.call(Method::POST, &fresh_path, Some(json!({"operation": "set", "value": 500}))).await;
    assert_eq!(set.body["credits"]["remaining"], 500, "{}", set.text);
    let got = harness.call(Method::GET, &format!("{KEYS}{fresh_id}/"), None).await;
    assert_eq!(got.body["credits"]["remaining"], 500, "{}", got.text);
    assert_eq!(harness.verify(&fresh_secret, json!({})).await["credits"], json!({"remaining": 499}));

    // Metering changes move the key's `updated_at`; a patch of the key and
    // its metering is one change, one event, all or nothing.
    let before = harness.call(Method::GET, &format!("{KEYS}{fresh_id}/"), None).await.body;
    let updated = harness.audited("api_key.updated").await.len();
    let past = json!({"name": "renamed", "expires_at": "2000-01-01T00:00:00Z", "credits": {"remaining": 1}});
    let refused = harness.call(Method::PATCH, &format!("{KEYS}{fresh_id}/"), Some(past)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);
    let unchanged = harness.call(Method::GET, &format!("{KEYS}{fresh_id}/"), None).await.body;
    assert_eq!((&unchanged["name"], &unchanged["credits"]["remaining"]), (&before["name"], &json!(499)));
    let both = json!({"name": "renamed", "ratelimits": [{"name": "r", "limit": 9, "duration_seconds": 9}]});
    let patched = harness.call(Method::PATCH, &format!("{KEYS}{fresh_id}/"), Some(both)).await;
    assert_eq!((&patched.body["name"], &patched.body["ratelimits"][0]["limit"]), (&json!("renamed"), &json!(9)));
    assert_eq!(harness.audited("api_key.updated").await.len(), updated + 1, "one event for one patch");
    assert_ne!(patched.body["updated_at"], before["updated_at"]);
    let topped = harness.call(Method::POST, &fresh_path, Some(json!({"operation": "increment", "value": 1}))).await;
    assert_ne!(topped.body["updated_at"], patched.body["updated_at"], "{}", topped.text);

    // A patch that sets credits null makes the key unmetered.
    let patched = harness.call(Method::PATCH, &format!("{KEYS}{id}/"), Some(json!({"credits": null}))).await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.text);
    assert_eq!(patched.body["credits"], Value::Null);
    let unmetered = harness.verify(&secret, json!({"cost": 1000})).await;
    assert_eq!(outcome(&unmetered), "valid", "{unmetered}");
    assert_eq!(unmetered["credits"], Value::Null);
}

/// `limit` 3 per 60 s admits a burst of 3 and refuses the fourth with
/// `exceeded`, a reset and a retry in the future; a non-auto limit applies
/// only to the verifications that name it, with the cost they give it; a
/// name nobody defines is ignored; a rate-limited refusal spends no credit.
async fn rate_limits_admit_a_burst_then_refuse_and_named_limits_apply_when_named(db: TestDb) {
    let harness = harness(db).await;
    let limits = json!([
        {"name": "requests", "limit": 3, "duration_seconds": 60},
        {"name": "tokens", "limit": 10, "duration_seconds": 3600, "auto_apply": false}
    ]);
    let created = harness.create(json!({"name": "limited", "ratelimits": limits, "credits": {"remaining": 100}})).await;
    assert_eq!(created["ratelimits"][1]["auto_apply"], false, "{created}");
    let secret = text(&created["api_key"]);

    for left in (0..3).rev() {
        let verdict = harness.verify(&secret, json!({})).await;
        assert_eq!(outcome(&verdict), "valid", "{verdict}");
        let applied = verdict["ratelimits"].as_array().expect("applied limits");
        assert_eq!(applied.len(), 1, "only the auto-applied limit: {verdict}");
        assert_eq!((&applied[0]["name"], &applied[0]["remaining"]), (&json!("requests"), &json!(left)));
        assert_eq!(applied[0]["exceeded"], false);
    }
    let refused = harness.verify(&secret, json!({})).await;
    assert_eq!(outcome(&refused), "rate_limited", "{refused}");
    assert_eq!(refused["ratelimits"][0]["exceeded"], true, "{refused}");
    assert_eq!(refused["credits"], json!({"remaining": 97}), "a refusal spends no credit: {refused}");
    let reset = text(&refused["ratelimits"][0]["reset_at"]);
    let reset = OffsetDateTime::parse(&reset, &time::format_description::well_known::Rfc3339).expect("reset_at");
    assert!(reset > OffsetDateTime::now_utc(), "{refused}");

    // Another key is not limited by this one's counters.
    let other = text(
        &harness
            .create(json!({"name": "other", "ratelimits": [{"name": "requests", "limit": 1, "duration_seconds": 60}]}))
            .await["api_key"],
    );
    assert_eq!(harness.outcome(&other, json!({})).await, "valid");
    assert_eq!(harness.outcome(&other, json!({})).await, "rate_limited");

    // The named limit, on a key without the exhausted one.
    let named = harness
        .create(json!({"name": "named", "ratelimits": [{"name": "tokens", "limit": 10, "duration_seconds": 3600, "auto_apply": false}]}))
        .await;
    let named = text(&named["api_key"]);
    let plain = harness.verify(&named, json!({})).await;
    assert_eq!(plain["ratelimits"], json!([]), "not named, not applied: {plain}");
    let spend = json!({"ratelimits": [{"name": "tokens", "cost": 7}, {"name": "nobody-defines-this"}]});
    let first = harness.verify(&named, spend.clone()).await;
    assert_eq!(outcome(&first), "valid", "{first}");
    assert_eq!(first["ratelimits"][0]["remaining"], 3, "{first}");
    let second = harness.verify(&named, spend).await;
    assert_eq!(outcome(&second), "rate_limited", "{second}");
    assert_eq!(second["ratelimits"][0]["remaining"], 3, "a refusal takes no token: {second}");
}

/// Two keys with one `external_id` draw on their identity's 3 credits and
/// its limit, besides their own; GET shows the balance and both keys;
/// DELETE removes the identity (a 404 after) and its keys keep working
/// unmetered; each change is audited.
async fn identities_share_limits_and_credits_among_their_keys(db: TestDb) {
    let harness = harness(db).await;
    let path = "/v1/staging/identity/customer-42/";
    let missing = harness.call(Method::GET, path, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
    let body = json!({
        "ratelimits": [{"name": "per-customer", "limit": 100, "duration_seconds": 60}],
        "credits": {"remaining": 3, "refill": {"interval": "monthly", "amount": 3, "refill_day": 31}},
        "meta": {"plan": "pro"}
    });
    let put = harness.call(Method::PUT, path, Some(body)).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text);
    assert_eq!(put.body["credits"]["refill"], json!({"interval": "monthly", "amount": 3, "refill_day": 31}));
    assert_eq!(put.body["meta"], json!({"plan": "pro"}));

    let first = harness.create(json!({"name": "one", "external_id": "customer-42"})).await;
    let second = harness.create(json!({"name": "two", "external_id": "customer-42"})).await;
    let (first, second) = (text(&first["api_key"]), text(&second["api_key"]));
    let verdict = harness.verify(&first, json!({})).await;
    assert_eq!(verdict["credits"], json!({"remaining": 2}), "the identity's balance: {verdict}");
    assert_eq!(verdict["ratelimits"][0]["name"], "per-customer", "{verdict}");
    assert_eq!(harness.outcome(&second, json!({})).await, "valid");
    assert_eq!(harness.outcome(&first, json!({})).await, "valid");
    assert_eq!(harness.outcome(&second, json!({})).await, "usage_exceeded");

    let got = harness.call(Method::GET, path, None).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.body["credits"]["remaining"], 0, "{}", got.text);
    assert_eq!(got.body["key_ids"].as_array().map(Vec::len), Some(2), "{}", got.text);

    let deleted = harness.call(Method::DELETE, path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(harness.call(Method::GET, path, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(harness.call(Method::DELETE, path, None).await.status, StatusCode::NOT_FOUND);
    let after = harness.verify(&second, json!({})).await;
    assert_eq!(outcome(&after), "valid", "{after}");
    assert_eq!(after["credits"], Value::Null);

    assert_eq!(harness.audited("identity.updated").await.len(), 1);
    assert_eq!(harness.audited("identity.deleted").await.len(), 1);

    // Deleted and made again: the new balance is all there is (nothing of
    // the former one comes back with it).
    let reborn = "/v1/staging/identity/reborn/";
    harness.call(Method::PUT, reborn, Some(json!({"credits": {"remaining": 100}}))).await;
    let member = text(&harness.create(json!({"name": "member", "external_id": "reborn"})).await["api_key"]);
    assert_eq!(harness.verify(&member, json!({})).await["credits"], json!({"remaining": 99}));
    assert_eq!(harness.call(Method::DELETE, reborn, None).await.status, StatusCode::NO_CONTENT);
    let again = harness.call(Method::PUT, reborn, Some(json!({"credits": {"remaining": 5}}))).await;
    assert_eq!(again.body["credits"]["remaining"], 5, "{}", again.text);
    let mut admitted = 0;
    for _ in 0..10 {
        if harness.outcome(&member, json!({})).await == "valid" {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "the identity made again admits its own 5 credits, no more");
}

/// A roll hands the key's limits and balance to the new key, and during its
/// grace the old key spends from the same balance and limit.
async fn a_roll_hands_limits_and_balance_on_and_the_old_key_shares_them(db: TestDb) {
    let harness = harness(db).await;
    let limits = json!([{"name": "burst", "limit": 4, "duration_seconds": 3600, "auto_apply": true}]);
    let created = harness.create(json!({"name": "rolling", "ratelimits": limits, "credits": {"remaining": 10}})).await;
    let (id, old) = (text(&created["id"]), text(&created["api_key"]));
    assert_eq!(harness.outcome(&old, json!({})).await, "valid");
    let rolled =
        harness.call(Method::POST, &format!("{KEYS}{id}/roll/"), Some(json!({"grace_period_seconds": 3600}))).await;
    assert_eq!(rolled.status, StatusCode::CREATED, "{}", rolled.text);
    assert_eq!(rolled.body["ratelimits"], limits, "{}", rolled.text);
    assert_eq!(rolled.body["credits"]["remaining"], 9, "{}", rolled.text);
    let new = text(&rolled.body["api_key"]);
    assert_eq!(harness.verify(&new, json!({})).await["credits"], json!({"remaining": 8}));
    assert_eq!(harness.verify(&old, json!({})).await["credits"], json!({"remaining": 7}));
    // 3 of the 4 tokens are used: one more, then the shared limit refuses both.
    assert_eq!(harness.outcome(&new, json!({})).await, "valid");
    assert_eq!(harness.outcome(&old, json!({})).await, "rate_limited");
    assert_eq!(harness.outcome(&new, json!({})).await, "rate_limited");
}

/// A granted metered key carries `RateLimit-Policy`, `RateLimit` and
/// `X-Keysd-Credits-Remaining`; `rate_limited` is a 429 with
/// `Retry-After`, `usage_exceeded` a 403, each with `X-Keysd-Reason`.
async fn forward_authentication_answers_metering_as_gateways_expect(db: TestDb) {
    let harness = harness(db).await;
    let limits = json!([{"name": "gateway", "limit": 2, "duration_seconds": 60}]);
    let limited = text(&harness.create(json!({"name": "limited", "ratelimits": limits})).await["api_key"]);
    let granted = harness.forward(&limited).await;
    assert_eq!(granted.status, StatusCode::OK, "{:?}", granted.headers);
    assert_eq!(header_of(&granted, "ratelimit-policy"), Some("\"gateway\";q=2;w=60"));
    let current = header_of(&granted, "ratelimit").expect("RateLimit");
    assert!(current.starts_with("\"gateway\";r=1;t="), "{current}");
    assert_eq!(harness.forward(&limited).await.status, StatusCode::OK);
    let throttled = harness.forward(&limited).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", throttled.headers);
    assert_eq!(header_of(&throttled, "x-keysd-reason"), Some("rate_limited"));
    let retry: u64 = header_of(&throttled, "retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");

    let metered = text(&harness.create(json!({"name": "metered", "credits": {"remaining": 1}})).await["api_key"]);
    let granted = harness.forward(&metered).await;
    assert_eq!(granted.status, StatusCode::OK);
    assert_eq!(header_of(&granted, "x-keysd-credits-remaining"), Some("0"));
    let exhausted = harness.forward(&metered).await;
    assert_eq!(exhausted.status, StatusCode::FORBIDDEN);
    assert_eq!(header_of(&exhausted, "x-keysd-reason"), Some("usage_exceeded"));

    let plain = text(&harness.create(json!({"name": "plain"})).await["api_key"]);
    let unmetered = harness.forward(&plain).await;
    assert_eq!(unmetered.status, StatusCode::OK);
    assert!(
        header_of(&unmetered, "ratelimit").is_none() && header_of(&unmetered, "x-keysd-credits-remaining").is_none()
    );
}

/// Out-of-range and malformed metering input is a 400 in the SuprSend
/// shape, and neither creates a key nor spends anything.
async fn bad_metering_input_is_a_400_that_changes_nothing(db: TestDb) {
    let harness = harness(db).await;
    let before = harness.call(Method::GET, KEYS, None).await.body["meta"]["count"].clone();
    for body in [
        json!({"name": "x", "ratelimits": [{"name": "Bad Name", "limit": 1, "duration_seconds": 1}]}),
        json!({"name": "x", "ratelimits": [{"name": "a", "limit": 0, "duration_seconds": 1}]}),
        json!({"name": "x", "ratelimits": [{"name": "a", "limit": 1, "duration_seconds": 86401}]}),
        json!({"name": "x", "ratelimits": [{"name": "a", "limit": 1, "duration_seconds": 1}, {"name": "a", "limit": 2, "duration_seconds": 1}]}),
        json!({"name": "x", "ratelimits": [{"name": "a", "limit": 1, "duration_seconds": 1, "colour": "red"}]}),
        json!({"name": "x", "credits": {"remaining": 1_000_000_000_001u64}}),
        json!({"name": "x", "credits": {"remaining": 1, "refill": {"interval": "weekly", "amount": 1}}}),
        json!({"name": "x", "credits": {"remaining": 1, "refill": {"interval": "daily", "amount": 1, "refill_day": 3}}}),
        json!({"name": "x", "credits": {"remaining": "lots"}}),
    ] {
        let reply = harness.call(Method::POST, KEYS, Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text);
        assert!(reply.body["message"].is_string(), "{}", reply.text);
    }
    assert_eq!(harness.call(Method::GET, KEYS, None).await.body["meta"]["count"], before);

    let created = harness.create(json!({"name": "metered", "credits": {"remaining": 2}})).await;
    let (id, secret) = (text(&created["id"]), text(&created["api_key"]));
    for extra in [
        json!({"cost": 1_000_001}),
        json!({"cost": -1}),
        json!({"cost": 1.5}),
        json!({"cost": "1"}),
        json!({"ratelimits": "all"}),
        json!({"ratelimits": [{"cost": 1}]}),
    ] {
        let mut body = json!({"api_key": secret});
        body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        let reply = harness.call(Method::POST, VERIFY, Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text);
    }
    for body in [
        json!({"operation": "double", "value": 1}),
        json!({"operation": "set", "value": -1}),
        json!({"operation": "set"}),
    ] {
        let reply = harness.call(Method::POST, &format!("{KEYS}{id}/credits/"), Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.text);
    }
    // 1.0 is 1, and fields a named limit does not take are ignored.
    let verdict = harness.verify(&secret, json!({"cost": 1.0, "ratelimits": [{"name": "a", "colour": 1}]})).await;
    assert_eq!(verdict["credits"], json!({"remaining": 1}), "nothing was spent before: {verdict}");
    let missing = harness
        .call(Method::POST, &format!("{KEYS}ws_apik_nope/credits/"), Some(json!({"operation": "set", "value": 1})))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
}
