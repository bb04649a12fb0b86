//! Usage counts as an embedding service sees them (docs/API.md, Usage;
//! SPEC 13), on both stores, with the test's clock: a known mix of API
//! keys, public keys and organisation-key JWTs, valid and refused, is
//! counted per key and outcome in memory, written by one flush, and read
//! back exactly through `InWorkspace::usage`; a flush of nothing writes
//! nothing; a failed write keeps its counts for the next flush, which
//! writes them once. (The totals by kind and outcome, including
//! verifications that found no key, are keys-http's `/metrics`.)

use std::sync::Arc;

use keys_core::usage::{Granularity, UsageWindow};
use keys_core::{ApiKeyProfile, ExternalId, KeyScopes, Name, NewServiceToken};
use keys_crypto::jwt::Algorithm;
use keys_crypto::{mint, ApiKeySecret, PublicKeyValue};
use keys_service::usage_counts::{UsagePage, UsageRequest};
use keys_service::{Caller, Clock, PublicKeyRequest, Service, ServiceConfig};
use keys_store::{UsageOf, UsageRow};
use keys_testkit::{Kind, SeededEntropy, TestClock, TestDb};
use rand_core::OsRng;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::fixture::T0;

/// A service counting usage on a fresh database of `kind`, at [`T0`] on
/// the test's clock, bootstrapped; its admin caller.
struct Counting {
    service: Service,
    clock: Arc<TestClock>,
    caller: Caller,
    db: TestDb,
}

async fn counting(kind: Kind, count_usage: bool) -> Counting {
    let db = TestDb::new(kind).await;
    let store = keys_store::open(db.url()).await.expect("store opens");
    let clock = Arc::new(TestClock::at(T0));
    let config = ServiceConfig { rsa_pool_capacity: 0, count_usage, ..ServiceConfig::default() };
    let entropy = Arc::new(SeededEntropy::new(24));
    let service = Service::with_sources(store, config, Arc::clone(&clock) as Arc<dyn Clock>, entropy);
    let bootstrapped = service.bootstrap_if_empty().await.expect("bootstrap").expect("an empty database");
    let caller = service.authenticate(bootstrapped.token.expose()).await.expect("lookup").expect("token is valid");
    Counting { service, clock, caller, db }
}

fn name(text: &str) -> Name {
    Name::parse(text).expect("name")
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(T0).expect("T0")
}

/// A row as (seconds after [`T0`], key id, outcome, count).
type Flat = (i64, Option<String>, String, u64);

fn flat(rows: &[UsageRow]) -> Vec<Flat> {
    rows.iter()
        .map(|row| ((row.at - t0()).whole_seconds(), row.key_id.clone(), row.outcome.clone(), row.count))
        .collect()
}

fn row(offset: i64, key: Option<&str>, outcome: &str, count: u64) -> Flat {
    (offset, key.map(str::to_owned), outcome.to_owned(), count)
}

impl Counting {
    /// One page of `staging`'s usage of `of` at `granularity`, over the
    /// day either side of [`T0`].
    async fn page(&self, of: UsageOf, granularity: Granularity, limit: u32, after: Option<UsagePage>) -> UsagePage {
        let window = UsageWindow::new(granularity, Some(t0() - Duration::DAY), Some(t0() + Duration::DAY), t0())
            .expect("window");
        let after = after.and_then(|page| page.next);
        let request = UsageRequest { window, of, after, limit };
        let staging = self.service.in_workspace(&self.caller, "staging").await.expect("workspace");
        staging.usage(request).await.expect("usage")
    }

    /// Every row of `staging`'s usage of `of` at `granularity`.
    async fn usage(&self, of: UsageOf, granularity: Granularity) -> Vec<Flat> {
        let page = self.page(of, granularity, 10_000, None).await;
        assert!(page.next.is_none(), "one page holds it all");
        flat(&page.rows)
    }

    /// `valid` or the reason, for the API key `secret` needing `scopes`.
    async fn api_key(&self, caller: &Caller, secret: &str, scopes: &[&str]) -> String {
        let verdict = self.service.verify_api_key_with_scopes(caller, secret, scopes).await.expect("store");
        verdict.map_or_else(|refusal| refusal.reason().to_owned(), |_| "valid".to_owned())
    }

    async fn public_key(&self, value: &str) -> String {
        let request = PublicKeyRequest { api_key: value, ..Default::default() };
        let verdict = self.service.verify_public_key(&self.caller, request).await.expect("store");
        verdict.map_or_else(|refusal| refusal.reason().to_owned(), |_| "valid".to_owned())
    }

    async fn jwt(&self, token: &str) -> String {
        let verdict = self.service.verify_jwt(&self.caller, token).await.expect("store");
        verdict.map_or_else(|refusal| refusal.reason().to_owned(), |_| "valid".to_owned())
    }

    /// Verifies `times` times, each answering `expected`.
    async fn repeat<F: std::future::Future<Output = String>>(
        &self,
        times: usize,
        expected: &str,
        verify: impl Fn() -> F,
    ) {
        for time in 0..times {
            assert_eq!(verify().await, expected, "verification {time}");
        }
    }
}

/// The mix: API keys (valid in two minutes, insufficient scope, disabled,
/// unknown, malformed, another organisation's caller), public keys
/// (valid, secure without a user token, unknown) and organisation-key
/// JWTs (valid, expired); one flush writes exactly what was answered for
/// a key that was found, per key, per owner and in the workspace's
/// totals; a second flush writes nothing.
async fn a_known_mix_is_counted_exactly(kind: Kind) {
    let counting = counting(kind, true).await;
    let Counting { service, clock, caller, .. } = &counting;
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    let owned = |key: &str, owner: &str, scopes: &[&str]| ApiKeyProfile {
        external_id: Some(ExternalId::parse(owner).expect("external id")),
        scopes: KeyScopes::parse(scopes.iter().copied()).expect("scopes"),
        ..ApiKeyProfile::named(name(key))
    };
    let valid = staging.create_api_key(owned("valid", "customer-1", &["orders:read"])).await.expect("created");
    let disabled = staging.create_api_key(owned("disabled", "customer-1", &[])).await.expect("created");
    let unused = staging.create_api_key(owned("unused", "customer-2", &[])).await.expect("created");
    let new = keys_service::public_keys::NewPublicKey { name: name("web"), description: None };
    let public = staging.create_public_key(new).await.expect("public key");
    let new = keys_service::public_keys::NewPublicKey { name: name("secure"), description: None };
    let secure = staging.create_public_key(new).await.expect("public key");
    let patch = keys_core::PublicKeyPatch { is_secure_mode_enabled: Some(true), ..Default::default() };
    staging.patch_public_key(&secure.id, patch).await.expect("secure mode on");
    let organisation = caller.scope().organisation_id().as_str().to_owned();
    let issued = service.create_organisation_key(caller, &organisation, name("org")).await.expect("created");
    let claims = |exp: i64| json!({"iss": format!("https://versori.com/sk/{}", issued.key.id), "sub": "u", "exp": exp});
    let sign = |exp| mint::sign(&claims(exp), None, &issued.pair.private_key_pem(), Algorithm::Rs256).expect("signs");
    let (live_token, expired_token) = (sign(T0 + 3_600), sign(T0 - 3_600));
    let other = service.create_organisation(name("other")).await.expect("organisation");
    let token = service.create_service_token(&other, NewServiceToken::admin(name("ci"))).await.expect("token");
    let outsider = service.authenticate(token.token.expose()).await.expect("lookup").expect("valid");
    let unknown = ApiKeySecret::generate_for(None, &mut OsRng);
    let unknown_public = PublicKeyValue::generate(&mut OsRng);
    assert_eq!(service.pending_usage_counts(), 0, "nothing verified yet");

    let secret = valid.secret.expose();
    let c = &counting;
    c.repeat(5, "valid", || c.api_key(caller, secret, &["orders:read"])).await;
    c.repeat(2, "insufficient_scope", || c.api_key(caller, secret, &["orders:write"])).await;
    c.repeat(1, "unknown_key", || c.api_key(&outsider, secret, &[])).await;
    staging.disable_api_key(&disabled.key.id).await.expect("disabled");
    c.repeat(3, "key_disabled", || c.api_key(caller, disabled.secret.expose(), &[])).await;
    c.repeat(4, "unknown_key", || c.api_key(caller, unknown.expose(), &[])).await;
    c.repeat(1, "malformed", || c.api_key(caller, "nope", &[])).await;
    c.repeat(3, "valid", || c.public_key(&public.api_key)).await;
    c.repeat(2, "user_token_required", || c.public_key(&secure.api_key)).await;
    c.repeat(1, "unknown_key", || c.public_key(unknown_public.as_str())).await;
    // Four keys have counts (unknown and malformed texts have no key). The
    // organisation key's entries are counted in
    // `one_key_is_one_pending_entry_whatever_token_presents_it`.
    assert_eq!(service.pending_usage_counts(), 4, "valid, disabled, web and secure");
    c.repeat(2, "valid", || c.jwt(&live_token)).await;
    c.repeat(1, "token_expired", || c.jwt(&expired_token)).await;
    // A minute later: the same key in the next minute's bucket.
    clock.advance(60);
    c.repeat(2, "valid", || c.api_key(caller, secret, &[])).await;

    // Nothing is in the store before the flush.
    assert_eq!(counting.usage(UsageOf::Workspace, Granularity::Minute).await, []);

    // One flush writes every count that has a key: 10 + 3 + 3 + 2 + 3.
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 21);
    assert_eq!(service.pending_usage_counts(), 0, "all written");
    let key = valid.key.id.as_str();
    assert_eq!(
        counting.usage(UsageOf::Key(key.to_owned()), Granularity::Minute).await,
        [
            row(60, Some(key), "valid", 2),
            row(0, Some(key), "insufficient_scope", 2),
            row(0, Some(key), "unknown_key", 1),
            row(0, Some(key), "valid", 5),
        ],
        "the valid key's minutes"
    );
    // T0 starts an hour: both minutes are in it.
    assert_eq!(
        counting.usage(UsageOf::Key(key.to_owned()), Granularity::Hour).await,
        [
            row(0, Some(key), "insufficient_scope", 2),
            row(0, Some(key), "unknown_key", 1),
            row(0, Some(key), "valid", 7)
        ],
    );
    let disabled_id = disabled.key.id.as_str();
    assert_eq!(
        counting.usage(UsageOf::Key(disabled_id.to_owned()), Granularity::Hour).await,
        [row(0, Some(disabled_id), "key_disabled", 3)]
    );
    assert_eq!(counting.usage(UsageOf::Key(unused.key.id.as_str().to_owned()), Granularity::Hour).await, []);
    let (public_id, secure_id) = (public.id.as_str(), secure.id.as_str());
    assert_eq!(
        counting.usage(UsageOf::Key(public_id.to_owned()), Granularity::Minute).await,
        [row(0, Some(public_id), "valid", 3)]
    );
    assert_eq!(
        counting.usage(UsageOf::Key(secure_id.to_owned()), Granularity::Minute).await,
        [row(0, Some(secure_id), "user_token_required", 2)]
    );
    // The owner's keys, row by row: customer-1 has the valid and the
    // disabled key.
    let mut owner = vec![
        row(0, Some(key), "insufficient_scope", 2),
        row(0, Some(key), "unknown_key", 1),
        row(0, Some(key), "valid", 7),
        row(0, Some(disabled_id), "key_disabled", 3),
    ];
    owner.sort();
    assert_eq!(counting.usage(UsageOf::ExternalId("customer-1".to_owned()), Granularity::Hour).await, owner);
    assert_eq!(counting.usage(UsageOf::ExternalId("customer-2".to_owned()), Granularity::Hour).await, []);
    // The workspace's totals: every key of staging (the organisation key
    // belongs to no workspace).
    let workspace_totals = [
        row(60, None, "valid", 2),
        row(0, None, "insufficient_scope", 2),
        row(0, None, "key_disabled", 3),
        row(0, None, "unknown_key", 1),
        row(0, None, "user_token_required", 2),
        row(0, None, "valid", 5 + 3),
    ];
    assert_eq!(counting.usage(UsageOf::Workspace, Granularity::Minute).await, workspace_totals);
    let whole: u64 = workspace_totals.iter().map(|row| row.3).sum();
    assert_eq!(whole, 18, "21 counted, 3 of them the organisation key's");
    let production = service.in_workspace(caller, "production").await.expect("workspace");
    let window = UsageWindow::new(Granularity::Day, Some(t0() - Duration::DAY), Some(t0() + Duration::DAY), t0());
    let request = UsageRequest { window: window.expect("window"), of: UsageOf::Workspace, after: None, limit: 100 };
    assert_eq!(production.usage(request).await.expect("usage").rows, [], "production verified nothing");

    // Pages of two through the cursor: the same rows, once each.
    let mut paged = Vec::new();
    let mut page = counting.page(UsageOf::Workspace, Granularity::Minute, 2, None).await;
    loop {
        assert!(page.rows.len() <= 2);
        paged.extend(flat(&page.rows));
        if page.next.is_none() {
            break;
        }
        page = counting.page(UsageOf::Workspace, Granularity::Minute, 2, Some(page)).await;
    }
    assert_eq!(paged, workspace_totals);
    let exact = counting.page(UsageOf::Workspace, Granularity::Minute, 6, None).await;
    assert_eq!((exact.rows.len(), exact.next), (6, None), "a page that holds the rest has no cursor");

    // A flush of nothing writes nothing.
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 0);
    assert_eq!(counting.usage(UsageOf::Workspace, Granularity::Minute).await, workspace_totals);

    // More counts add to the rows written.
    c.repeat(3, "valid", || c.api_key(caller, secret, &[])).await;
    assert_eq!(service.pending_usage_counts(), 1);
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 3);
    let minutes = counting.usage(UsageOf::Key(key.to_owned()), Granularity::Minute).await;
    assert_eq!(minutes[0], row(60, Some(key), "valid", 5));
    counting.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_mix_is_counted_exactly_sqlite() {
    a_known_mix_is_counted_exactly(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_mix_is_counted_exactly_postgres() {
    a_known_mix_is_counted_exactly(Kind::Postgres).await;
}

/// A flush with nothing counted adds nothing; without `count_usage`
/// nothing is counted per key, and a flush writes nothing.
async fn nothing_counted_writes_nothing(kind: Kind) {
    let on = counting(kind, true).await;
    assert_eq!(on.service.flush_usage_counts().await.expect("flush"), 0);
    assert_eq!(on.service.pending_usage_counts(), 0);
    assert_eq!(on.usage(UsageOf::Workspace, Granularity::Minute).await, []);
    on.db.cleanup().await;

    let off = counting(kind, false).await;
    let staging = off.service.in_workspace(&off.caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(ApiKeyProfile::named(name("k"))).await.expect("created");
    for _ in 0..3 {
        assert_eq!(off.api_key(&off.caller, issued.secret.expose(), &[]).await, "valid");
    }
    assert_eq!(off.service.pending_usage_counts(), 0, "nothing per key");
    assert_eq!(off.service.flush_usage_counts().await.expect("flush"), 0);
    assert_eq!(off.usage(UsageOf::Workspace, Granularity::Minute).await, []);
    off.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_counted_writes_nothing_sqlite() {
    nothing_counted_writes_nothing(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_counted_writes_nothing_postgres() {
    nothing_counted_writes_nothing(Kind::Postgres).await;
}

/// A flush whose write fails keeps its counts (pending, with the batch's
/// id); counts made meanwhile join them; the next flush that can write
/// writes every one of them once.
async fn a_failed_flush_keeps_its_counts_for_the_next(kind: Kind) {
    let counting = counting(kind, true).await;
    let Counting { service, caller, db, .. } = &counting;
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(ApiKeyProfile::named(name("k"))).await.expect("created");
    let secret = issued.secret.expose();
    for _ in 0..4 {
        assert_eq!(counting.api_key(caller, secret, &[]).await, "valid");
    }
    // The table away: the write fails as a database that is down would.
    db.execute("ALTER TABLE usage_counts RENAME TO usage_counts_away", &[]).await.expect("rename");
    assert!(service.flush_usage_counts().await.is_err(), "the write cannot succeed");
    assert_eq!(service.pending_usage_counts(), 1, "the batch is kept");
    counting.clock.advance(60);
    for _ in 0..2 {
        assert_eq!(counting.api_key(caller, secret, &[]).await, "valid");
    }
    assert!(service.flush_usage_counts().await.is_err(), "still cannot write");
    assert_eq!(service.pending_usage_counts(), 2, "the kept batch and the new key entry");
    db.execute("ALTER TABLE usage_counts_away RENAME TO usage_counts", &[]).await.expect("rename back");

    assert_eq!(service.flush_usage_counts().await.expect("flush"), 6);
    assert_eq!(service.pending_usage_counts(), 0);
    let key = issued.key.id.as_str();
    assert_eq!(
        counting.usage(UsageOf::Key(key.to_owned()), Granularity::Minute).await,
        [row(60, Some(key), "valid", 2), row(0, Some(key), "valid", 4)]
    );
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 0);
    assert_eq!(counting.usage(UsageOf::Key(key.to_owned()), Granularity::Hour).await, [row(0, Some(key), "valid", 6)]);
    counting.db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_keeps_its_counts_for_the_next_sqlite() {
    a_failed_flush_keeps_its_counts_for_the_next(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flush_keeps_its_counts_for_the_next_postgres() {
    a_failed_flush_keeps_its_counts_for_the_next(Kind::Postgres).await;
}

/// One key is one pending entry however it is presented: an organisation
/// key verified with twenty different tokens is one key with a count, as
/// an API key verified twenty times is (docs: "no allocation after a key's
/// first use in an interval"); the flush writes all twenty either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_is_one_pending_entry_whatever_token_presents_it() {
    let counting = counting(Kind::Sqlite, true).await;
    let Counting { service, caller, .. } = &counting;
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(ApiKeyProfile::named(name("k"))).await.expect("created");
    for _ in 0..20 {
        assert_eq!(counting.api_key(caller, issued.secret.expose(), &[]).await, "valid");
    }
    assert_eq!(service.pending_usage_counts(), 1, "one API key");
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 20);

    let organisation = caller.scope().organisation_id().as_str().to_owned();
    let key = service.create_organisation_key(caller, &organisation, name("org")).await.expect("created");
    let pem = key.pair.private_key_pem();
    for user in 0..20 {
        let claims = json!({"iss": format!("https://versori.com/sk/{}", key.key.id), "sub": format!("user-{user}"),
                            "exp": T0 + 3_600});
        let token = mint::sign(&claims, None, &pem, Algorithm::Rs256).expect("signs");
        assert_eq!(counting.jwt(&token).await, "valid");
    }

    // The counter's lock is chosen by the key, not by the token's bytes.
    assert_eq!(service.pending_usage_counts(), 1, "one organisation key");
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 20);
    assert_eq!(service.pending_usage_counts(), 0);
}

/// `prune_usage` deletes, on the service's clock, the buckets past each
/// default retention (48 hours of minutes, 90 days of hours, 730 days of
/// days) and nothing younger: a bucket stays while any part of it is
/// inside its retention.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_follows_each_retention_on_the_clock() {
    let counting = counting(Kind::Sqlite, true).await;
    let Counting { service, caller, clock, .. } = &counting;
    let staging = service.in_workspace(caller, "staging").await.expect("workspace");
    let issued = staging.create_api_key(ApiKeyProfile::named(name("k"))).await.expect("created");
    for _ in 0..3 {
        assert_eq!(counting.api_key(caller, issued.secret.expose(), &[]).await, "valid");
    }
    assert_eq!(service.flush_usage_counts().await.expect("flush"), 3);
    let id = issued.key.id.as_str();
    let held = || async {
        let mut held = Vec::new();
        for granularity in Granularity::ALL {
            let rows = counting.usage(UsageOf::Key(id.to_owned()), granularity).await;
            held.push(rows.iter().map(|row| row.3).sum::<u64>());
        }
        held
    };
    // Moves the clock to `seconds` after T0.
    let at = |seconds: i64| clock.advance(T0 + seconds - clock.now().unix_timestamp());
    // T0 starts a minute and an hour; its day started 8 hours before.
    let (hour, day) = (3_600, 86_400);
    assert_eq!(T0 % day, 8 * hour);
    let steps = [
        (48 * hour, 0, [3, 3, 3]),
        (48 * hour + 60, 1, [0, 3, 3]),
        (90 * day, 0, [0, 3, 3]),
        (90 * day + hour, 1, [0, 0, 3]),
        (730 * day, 0, [0, 0, 3]),
        (731 * day - 8 * hour - 1, 0, [0, 0, 3]),
        (731 * day - 8 * hour, 1, [0, 0, 0]),
    ];
    for (seconds, pruned, expected) in steps {
        at(seconds);
        assert_eq!(service.prune_usage().await.expect("prune"), pruned, "T0 + {seconds} s");
        assert_eq!(held().await, expected, "T0 + {seconds} s: minutes, hours, days");
    }
}
