//! Metering through the store (docs/METERING.md): a key created with its
//! meter reads back whole; its balance is a `CreditPool` that replicas
//! reserve slices of and hand back, changed by hand in epochs and debts;
//! reservations and rate-limit tokens taken from two stores at once are
//! never oversold; a roll hands the meter root on; identities are put,
//! listed and deleted with their counters; a refill due sets the balance in
//! a new epoch before anything is reserved.

use std::sync::Arc;

use keys_core::meter::{CreditPool, CreditRule, Credits, CreditsOperation, RateLimit, RateLimits, Refill, Reserved};
use keys_core::{ApiKey, ApiKeyProfile, ExternalId, GracePeriod, KeyMeta, Workspace};
use keys_store::{
    Acting, ChangeCredits, CreateMeteredApiKey, CreditsOf, DeleteIdentity, KeyMeters, MeterOf, MeterSetting,
    PutIdentity, PutKeyMeter, Run as _, Store, StoreResult, StoredMeter, TokensTaken,
};
use time::{Duration, OffsetDateTime, Time};
use tokio::task::JoinSet;

use crate::support::{acme, assert_refused, name_of, not_found, TestDb, World};

/// A limit of `limit` tokens per `seconds`, applied to every verification.
fn limit(name: &str, limit: u64, seconds: u64) -> RateLimit {
    RateLimit::parse(name, limit, seconds, true).unwrap()
}

fn limits(items: impl IntoIterator<Item = RateLimit>) -> RateLimits {
    RateLimits::parse(items).unwrap()
}

/// A setting with these limits and a balance of `remaining`.
fn setting(rate_limits: RateLimits, remaining: Option<u64>, refill: Option<Refill>) -> MeterSetting {
    MeterSetting {
        rate_limits: Some(rate_limits),
        credits: Some(remaining.map(|remaining| Credits::parse(remaining, refill).unwrap())),
        meta: None,
    }
}

/// A key of `workspace` named `name` (owned by `owner`), created with its
/// meter by `CreateMeteredApiKey`.
async fn metered_key(
    store: &dyn Store,
    world: &mut World,
    workspace: &Workspace,
    name: &str,
    owner: Option<&str>,
    setting: MeterSetting,
) -> ApiKey {
    let key = key_of(world, workspace, name, owner);
    store.run(CreateMeteredApiKey { key: key.clone(), setting }).await.unwrap();
    key
}

/// A key with no meter, stored by the plain create.
async fn plain_key(
    store: &dyn Store,
    world: &mut World,
    workspace: &Workspace,
    name: &str,
    owner: Option<&str>,
) -> ApiKey {
    let key = key_of(world, workspace, name, owner);
    store.create_api_key(&key).await.unwrap();
    key
}

fn key_of(world: &mut World, workspace: &Workspace, name: &str, owner: Option<&str>) -> ApiKey {
    world.tick(10);
    let profile = ApiKeyProfile {
        external_id: owner.map(|owner| ExternalId::parse(owner).unwrap()),
        ..ApiKeyProfile::named(name_of(name))
    };
    world.api_key_with(workspace, profile)
}

async fn change_credits(
    store: &dyn Store,
    world: &World,
    workspace: &Workspace,
    of: CreditsOf,
    operation: CreditsOperation,
    now: OffsetDateTime,
) -> StoreResult<StoredMeter> {
    let acting = Acting::new(workspace.uid.clone(), world.actor.clone(), now);
    Ok(store.run(ChangeCredits { acting, of, operation }).await?.output)
}

async fn put_identity(
    store: &dyn Store,
    world: &mut World,
    workspace: &Workspace,
    external_id: &str,
    setting: MeterSetting,
) -> StoreResult<(StoredMeter, bool)> {
    let acting = Acting::new(workspace.uid.clone(), world.actor.clone(), world.tick(10));
    Ok(store.run(PutIdentity { acting, external_id: external_id.to_owned(), setting }).await?.output)
}

async fn delete_identity(
    store: &dyn Store,
    world: &mut World,
    workspace: &Workspace,
    external_id: &str,
) -> StoreResult<()> {
    let acting = Acting::new(workspace.uid.clone(), world.actor.clone(), world.tick(10));
    store.run(DeleteIdentity { acting, external_id: external_id.to_owned() }).await.map(drop)
}

/// A pool as (unleased, debt, epoch).
fn parts(pool: &CreditPool) -> (u64, u64, u64) {
    (pool.unleased(), pool.debt(), pool.epoch())
}

/// The stored pool of `of`, which must have a meter.
async fn stored_pool(store: &dyn Store, workspace: &Workspace, of: &MeterOf) -> CreditPool {
    store.meter(&workspace.uid, of).await.unwrap().expect("a meter").pool
}

/// Reserves `want` of a subject that spends credits: the slice and the pool
/// after it, which must be the pool stored.
async fn reserve(
    store: &dyn Store,
    workspace: &Workspace,
    of: &MeterOf,
    want: u64,
    now: OffsetDateTime,
) -> (Reserved, CreditPool) {
    let (slice, pool) = store.reserve_credits(&workspace.uid, of, 0, want, now).await.unwrap().expect("spends credits");
    assert_eq!(stored_pool(store, workspace, of).await, pool, "the pool answered is the pool stored");
    (slice, pool)
}

/// A key created with its meter reads back with its limits, refill and
/// pool; a reservation grants at most what is available and lowers
/// `unleased`; a hand-back of the current epoch returns the slice, one of
/// an older epoch (a set since) is dropped; a decrement beyond `unleased`
/// leaves a debt that hand-backs and increments pay first; a subject that
/// spends no credits reserves nothing.
pub async fn metering_key_reads_back_reserves_hands_back_and_changes_its_balance(db: &TestDb) {
    let (store, mut world, _, [alpha, beta]) = acme(db, 120, ["alpha", "beta"]).await;
    let key_limits = limits([limit("per-minute", 60, 60), RateLimit::parse("search", 5, 1, false).unwrap()]);
    let refill = Refill::parse("monthly", 500, Some(15)).unwrap();
    let key =
        metered_key(&*store, &mut world, &alpha, "metered", None, setting(key_limits.clone(), Some(100), Some(refill)))
            .await;
    let of = MeterOf::Key(key.id.clone());

    // It reads back whole, through key_meters and meter alike.
    let KeyMeters { root, key: meter, identity } =
        store.key_meters(&alpha.uid, &key.id, None).await.unwrap().expect("the key exists");
    assert_eq!((&root, &identity), (&key.id, &None));
    let meter = meter.expect("its meter");
    assert_eq!((&meter.workspace, &meter.of), (&alpha.uid, &of));
    assert_eq!(meter.meter.rate_limits, key_limits);
    assert_eq!(meter.meter.credits, Some(CreditRule { refill: Some(refill) }));
    assert_eq!(parts(&meter.pool), (100, 0, 0));
    assert_eq!(meter.pool.refilled_at(), key.created_at);
    assert_eq!((meter.meta.as_ref(), meter.created_at, meter.updated_at), (None, key.created_at, key.created_at));
    assert_eq!(store.meter(&alpha.uid, &of).await.unwrap(), Some(meter.clone()));
    // The owner's identity, named but never put, is none.
    let with_owner = store.key_meters(&alpha.uid, &key.id, Some("customer-1")).await.unwrap().unwrap();
    assert_eq!(with_owner, KeyMeters { root: key.id.clone(), key: Some(meter.clone()), identity: None });
    // Not in another workspace.
    assert_eq!(store.key_meters(&beta.uid, &key.id, None).await.unwrap(), None);
    assert_eq!(store.meter(&beta.uid, &of).await.unwrap(), None);
    assert_eq!(store.reserve_credits(&beta.uid, &of, 0, 10, world.now).await.unwrap(), None);

    // Reservations grant min(want, available) and lower `unleased`.
    let now = world.tick(10);
    let (slice, pool) = reserve(&*store, &alpha, &of, 30, now).await;
    assert_eq!(slice, Reserved { granted: 30, epoch: 0, refilled_at: key.created_at });
    assert_eq!(parts(&pool), (70, 0, 0));
    let (slice, pool) = reserve(&*store, &alpha, &of, 100, now).await;
    assert_eq!((slice.granted, slice.epoch, parts(&pool)), (70, 0, (0, 0, 0)));
    let (slice, pool) = reserve(&*store, &alpha, &of, 5, now).await;
    assert_eq!((slice.granted, parts(&pool)), (0, (0, 0, 0)), "nothing is left to grant");

    // A hand-back of the current epoch returns the unspent part.
    store.hand_back_credits(&alpha.uid, &of, 0, 25).await.unwrap();
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (25, 0, 0));

    // A set starts a new epoch: a slice of the old one handed back is
    // dropped, not added.
    let set = change_credits(&*store, &world, &alpha, CreditsOf::Key(key.id.clone()), CreditsOperation::Set(40), now)
        .await
        .unwrap();
    assert_eq!((parts(&set.pool), set.pool.refilled_at(), set.updated_at), ((40, 0, 1), now, now));
    assert_eq!(set.meter, meter.meter, "a change of the balance leaves the limits and the rule");
    assert_eq!(store.meter(&alpha.uid, &of).await.unwrap(), Some(set.clone()));
    store.hand_back_credits(&alpha.uid, &of, 0, 45).await.unwrap();
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (40, 0, 1), "an old epoch's slice is dropped");

    // A decrement beyond `unleased` leaves a debt: nothing is available
    // until the hand-backs have paid it.
    let by_hand = |operation| change_credits(&*store, &world, &alpha, CreditsOf::Key(key.id.clone()), operation, now);
    let decremented = by_hand(CreditsOperation::Decrement(50)).await.unwrap();
    assert_eq!(parts(&decremented.pool), (0, 10, 1));
    let (slice, _) = reserve(&*store, &alpha, &of, 5, now).await;
    assert_eq!(slice.granted, 0, "a debt leaves nothing available");
    store.hand_back_credits(&alpha.uid, &of, 1, 4).await.unwrap();
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (0, 6, 1), "a hand-back pays the debt first");
    store.hand_back_credits(&alpha.uid, &of, 1, 8).await.unwrap();
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (2, 0, 1), "and returns the rest");
    assert_eq!(parts(&by_hand(CreditsOperation::Decrement(5)).await.unwrap().pool), (0, 3, 1));
    assert_eq!(
        parts(&by_hand(CreditsOperation::Increment(2)).await.unwrap().pool),
        (0, 1, 1),
        "an increment pays the debt first"
    );
    assert_eq!(parts(&by_hand(CreditsOperation::Increment(10)).await.unwrap().pool), (9, 0, 1), "and adds the rest");
    assert_eq!(parts(&by_hand(CreditsOperation::Decrement(4)).await.unwrap().pool), (5, 0, 1));
    store.hand_back_credits(&alpha.uid, &of, 1, 3).await.unwrap();
    let (slice, pool) = reserve(&*store, &alpha, &of, 100, now).await;
    assert_eq!((slice.granted, slice.epoch, parts(&pool)), (8, 1, (0, 0, 1)));
    // Another store (another replica) reads and reserves the same row.
    let other = db.store().await;
    assert_eq!(other.meter(&alpha.uid, &of).await.unwrap().unwrap().pool, pool);
    other.hand_back_credits(&alpha.uid, &of, 1, 8).await.unwrap();
    let (slice, _) = other.reserve_credits(&alpha.uid, &of, 0, 3, now).await.unwrap().unwrap();
    assert_eq!(slice.granted, 3);
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (5, 0, 1));

    // Subjects that spend no credits answer None: a key with limits only,
    // a key with no meter at all, an identity never put.
    let limited =
        metered_key(&*store, &mut world, &alpha, "limited", None, setting(key_limits.clone(), None, None)).await;
    let limited_of = MeterOf::Key(limited.id.clone());
    let limited_meter = store.meter(&alpha.uid, &limited_of).await.unwrap().expect("a meter for its limits");
    assert_eq!((limited_meter.meter.credits, parts(&limited_meter.pool)), (None, (0, 0, 0)));
    assert_eq!(store.reserve_credits(&alpha.uid, &limited_of, 0, 10, now).await.unwrap(), None);
    let plain = plain_key(&*store, &mut world, &alpha, "plain", None).await;
    let plain_of = MeterOf::Key(plain.id.clone());
    let plain_meters = store.key_meters(&alpha.uid, &plain.id, None).await.unwrap();
    assert_eq!(plain_meters, Some(KeyMeters { root: plain.id.clone(), key: None, identity: None }));
    assert_eq!(store.reserve_credits(&alpha.uid, &plain_of, 0, 10, now).await.unwrap(), None);
    let nobody = MeterOf::Identity("nobody".to_owned());
    assert_eq!(store.reserve_credits(&alpha.uid, &nobody, 0, 10, now).await.unwrap(), None);
    // A hand-back to a subject without a meter makes none.
    store.hand_back_credits(&alpha.uid, &plain_of, 0, 10).await.unwrap();
    store.hand_back_credits(&alpha.uid, &nobody, 0, 10).await.unwrap();
    assert_eq!(store.meter(&alpha.uid, &plain_of).await.unwrap(), None);
    assert_eq!(store.meter(&alpha.uid, &nobody).await.unwrap(), None);
    // A key that spent no credits starts to, from 0, keeping its limits.
    let started = change_credits(
        &*store,
        &world,
        &alpha,
        CreditsOf::Key(limited.id.clone()),
        CreditsOperation::Increment(5),
        now,
    )
    .await
    .unwrap();
    assert_eq!(started.meter.credits, Some(CreditRule { refill: None }));
    assert_eq!((parts(&started.pool), &started.meter.rate_limits), ((5, 0, 0), &key_limits));
    assert_eq!(reserve(&*store, &alpha, &limited_of, 10, now).await.0.granted, 5);
    let started =
        change_credits(&*store, &world, &alpha, CreditsOf::Key(plain.id.clone()), CreditsOperation::Increment(7), now)
            .await
            .unwrap();
    assert_eq!(
        (started.of, started.meter.credits, parts(&started.pool)),
        (plain_of.clone(), Some(CreditRule { refill: None }), (7, 0, 0))
    );
    assert_eq!(reserve(&*store, &alpha, &plain_of, 10, now).await.0.granted, 7);
    // Missing keys and identities are not found, and nothing is made.
    let missing = world.api_key(&alpha, "never stored");
    let refused =
        change_credits(&*store, &world, &alpha, CreditsOf::Key(missing.id.clone()), CreditsOperation::Set(1), now)
            .await;
    assert_refused(refused, not_found("api key"));
    let refused =
        change_credits(&*store, &world, &beta, CreditsOf::Key(key.id.clone()), CreditsOperation::Set(1), now).await;
    assert_refused(refused, not_found("api key"));
    let refused = change_credits(
        &*store,
        &world,
        &alpha,
        CreditsOf::Identity("nobody".to_owned()),
        CreditsOperation::Increment(1),
        now,
    )
    .await;
    assert_refused(refused, not_found("identity"));
    assert_eq!(store.meter(&alpha.uid, &nobody).await.unwrap(), None);
    assert_eq!(store.key_meters(&alpha.uid, &missing.id, None).await.unwrap(), None);
}

/// Two stores (two processes) reserving slices of 7 from a balance of 1,000
/// from several tasks at once until they get nothing: the grants add up to
/// exactly 1,000, one reservation at a time, and the stored balance ends at
/// 0; hand-backs from both at once all arrive. Then the same for a rate
/// limit of 50 per hour: the tokens taken add up to exactly 50, and every
/// further take is refused with the instant the next token frees.
pub async fn metering_from_two_stores_at_once_never_oversells(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 121, ["alpha"]).await;
    let hourly = limit("hourly", 50, 3600);
    let key =
        metered_key(&*store, &mut world, &alpha, "shared", None, setting(limits([hourly.clone()]), Some(1000), None))
            .await;
    let of = MeterOf::Key(key.id.clone());
    let stores = [db.store().await, db.store().await];
    let now = world.tick(10);

    let mut tasks = JoinSet::new();
    for task in 0..8 {
        let (spender, workspace, of) = (Arc::clone(&stores[task % 2]), alpha.uid.clone(), of.clone());
        tasks.spawn(async move {
            let mut slices = Vec::new();
            loop {
                let reserved = spender.reserve_credits(&workspace, &of, 0, 7, now).await.unwrap();
                let (slice, pool) = reserved.expect("the key spends credits");
                assert_eq!(slice.epoch, 0, "nothing set the balance");
                assert!(slice.granted <= 7, "{slice:?}: more than asked");
                if slice.granted == 0 {
                    assert_eq!(parts(&pool), (0, 0, 0));
                    return slices;
                }
                slices.push((slice.granted, pool.unleased()));
            }
        });
    }
    let mut slices = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        slices.extend(joined.unwrap());
    }
    assert_eq!(slices.iter().map(|(granted, _)| granted).sum::<u64>(), 1000, "granted exactly the balance");
    // One reservation at a time: 142 slices of 7, then the 6 left, each
    // leaving a different balance behind (no update was lost).
    let mut grants: Vec<u64> = slices.iter().map(|(granted, _)| *granted).collect();
    grants.sort_unstable();
    let mut expected_grants = vec![6];
    expected_grants.extend([7; 142]);
    assert_eq!(grants, expected_grants);
    let mut left: Vec<u64> = slices.iter().map(|(_, unleased)| *unleased).collect();
    left.sort_unstable();
    let mut expected_left: Vec<u64> = (1..=142).map(|slice| 1000 - 7 * slice).collect();
    expected_left.push(0);
    expected_left.sort_unstable();
    assert_eq!(left, expected_left);
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (0, 0, 0));

    // Every slice hands back 3 unspent, from both stores at once.
    let mut tasks = JoinSet::new();
    for (index, _) in slices.iter().enumerate() {
        let (spender, workspace, of) = (Arc::clone(&stores[index % 2]), alpha.uid.clone(), of.clone());
        tasks.spawn(async move { spender.hand_back_credits(&workspace, &of, 0, 3).await.unwrap() });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (143 * 3, 0, 0), "every hand-back arrived");

    // Tokens: batches of up to 3 from 50 per hour, all at one instant.
    let mut tasks = JoinSet::new();
    for task in 0..8 {
        let (taker, workspace, of, hourly) =
            (Arc::clone(&stores[task % 2]), alpha.uid.clone(), of.clone(), hourly.clone());
        tasks.spawn(async move {
            let mut batches = Vec::new();
            loop {
                match taker.take_tokens(&workspace, &of, &hourly, 1, 3, now).await.unwrap() {
                    Ok(batch) => batches.push(batch),
                    Err(retry_at) => return (batches, retry_at),
                }
            }
        });
    }
    let mut batches = Vec::new();
    // One token frees every 3600 s / 50 = 72 s.
    let next_token = now + Duration::seconds(72);
    while let Some(joined) = tasks.join_next().await {
        let (taken, retry_at) = joined.unwrap();
        assert_eq!(retry_at, Some(next_token), "a refusal names the instant the next token frees");
        batches.extend(taken);
    }
    assert_eq!(batches.iter().map(|batch| u64::from(*batch)).sum::<u64>(), 50, "taken exactly the limit");
    batches.sort_unstable();
    let mut expected_batches = vec![2];
    expected_batches.extend([3; 16]);
    assert_eq!(batches, expected_batches, "one take at a time");
    let take = |store: Arc<dyn Store>, at: OffsetDateTime, want: u32| {
        let (workspace, of, hourly) = (alpha.uid.clone(), of.clone(), hourly.clone());
        async move { store.take_tokens(&workspace, &of, &hourly, 1, want, at).await.unwrap() }
    };
    for (spender, at) in [(&stores[0], now), (&stores[1], now), (&store, next_token - Duration::NANOSECOND)] {
        assert_eq!(take(Arc::clone(spender), at, 1).await, Err(Some(next_token)), "further takes are refused");
    }
    // At the instant named, one token is free, and only one.
    assert_eq!(take(Arc::clone(&stores[1]), next_token, 3).await, Ok(1));
    let after_that: TokensTaken = Err(Some(next_token + Duration::seconds(72)));
    assert_eq!(take(Arc::clone(&stores[0]), next_token, 1).await, after_that);
    // Tokens given back (a lease not spent) are taken again, no more.
    store.give_back_tokens(&alpha.uid, &of, &hourly, 2, next_token, next_token).await.unwrap();
    assert_eq!(take(Arc::clone(&stores[0]), next_token, 3).await, Ok(2));
    assert_eq!(take(Arc::clone(&stores[1]), next_token, 1).await, after_that);
    // A batch of more than the limit is never admitted; a subject with no
    // meter has no counters.
    assert_eq!(store.take_tokens(&alpha.uid, &of, &hourly, 51, 60, next_token).await.unwrap(), Err(None));
    let nobody = MeterOf::Identity("nobody".to_owned());
    assert_eq!(store.take_tokens(&alpha.uid, &nobody, &hourly, 1, 1, now).await.unwrap(), Err(None));
}

/// A roll gives the new key the old key's meter root: both read the same
/// meter, a change through either is the other's, a second roll keeps the
/// first root, and the meter outlives the deleted first key.
pub async fn metering_root_passes_to_the_key_a_roll_makes(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 122, ["alpha"]).await;
    let key_limits = limits([limit("per-second", 10, 1)]);
    let key =
        metered_key(&*store, &mut world, &alpha, "rolled", None, setting(key_limits.clone(), Some(100), None)).await;
    let root = MeterOf::Key(key.id.clone());
    let now = world.tick(10);
    assert_eq!(reserve(&*store, &alpha, &root, 10, now).await.0.granted, 10);
    store.take_tokens(&alpha.uid, &root, &key_limits.as_slice()[0], 1, 4, now).await.unwrap().unwrap();

    let (now, material) = (world.tick(10), world.api_key_material());
    let grace = GracePeriod::from_seconds(3600).ok();
    let (rolled, fresh) = store.roll_api_key(&alpha.uid, &key.id, grace, material, &world.actor, now).await.unwrap();
    assert_eq!(rolled.id, key.id);
    let old = store.key_meters(&alpha.uid, &key.id, None).await.unwrap().expect("the rolled key");
    let new = store.key_meters(&alpha.uid, &fresh.id, None).await.unwrap().expect("the new key");
    assert_eq!((&old.root, &new.root), (&key.id, &key.id), "both name the first key's root");
    assert_eq!(old.key, new.key, "both read one meter");
    let shared = new.key.expect("the meter");
    assert_eq!(shared.of, root);
    assert_eq!((parts(&shared.pool), &shared.meter.rate_limits), ((90, 0, 0), &key_limits), "a roll resets nothing");
    assert_eq!(store.meter(&alpha.uid, &MeterOf::Key(fresh.id.clone())).await.unwrap(), None, "no row of its own");
    // The counters are the root's: the tokens taken before the roll count.
    let taken = store.take_tokens(&alpha.uid, &root, &key_limits.as_slice()[0], 1, 10, now).await.unwrap();
    assert_eq!(taken, Ok(6));

    // A change through the new key is the old key's, and the other way round.
    let by_new =
        change_credits(&*store, &world, &alpha, CreditsOf::Key(fresh.id.clone()), CreditsOperation::Increment(5), now)
            .await
            .unwrap();
    assert_eq!((&by_new.of, parts(&by_new.pool)), (&root, (95, 0, 0)));
    let by_old =
        change_credits(&*store, &world, &alpha, CreditsOf::Key(key.id.clone()), CreditsOperation::Decrement(15), now)
            .await
            .unwrap();
    assert_eq!((&by_old.of, parts(&by_old.pool)), (&root, (80, 0, 0)));
    let wider = limits([limit("per-second", 20, 1), limit("per-day", 1000, 86_400)]);
    let acting = Acting::new(alpha.uid.clone(), world.actor.clone(), world.tick(10));
    let put = MeterSetting { rate_limits: Some(wider.clone()), credits: None, meta: None };
    let command = PutKeyMeter { acting, id: fresh.id.clone(), patch: Default::default(), setting: put };
    let (_, put) = store.run(command).await.unwrap().output;
    assert_eq!((&put.of, &put.meter.rate_limits, parts(&put.pool)), (&root, &wider, (80, 0, 0)));
    let old = store.key_meters(&alpha.uid, &key.id, None).await.unwrap().unwrap();
    assert_eq!(old.key, Some(put.clone()), "the old key sees the new key's limits");

    // A second roll keeps the first root; deleting the first key leaves the
    // meter to the keys that name it.
    let (now, material) = (world.tick(10), world.api_key_material());
    let (_, newest) = store.roll_api_key(&alpha.uid, &fresh.id, None, material, &world.actor, now).await.unwrap();
    let now = world.tick(10);
    store.delete_api_key(&alpha.uid, &key.id, &world.actor, now).await.unwrap();
    let last = store.key_meters(&alpha.uid, &newest.id, None).await.unwrap().unwrap();
    assert_eq!((&last.root, &last.key), (&key.id, &Some(put.clone())));
    let deleted = store.key_meters(&alpha.uid, &key.id, None).await.unwrap().unwrap();
    assert_eq!(deleted.root, key.id);
    let refused =
        change_credits(&*store, &world, &alpha, CreditsOf::Key(key.id.clone()), CreditsOperation::Set(1), now).await;
    assert_refused(refused, not_found("api key"));
    let by_newest =
        change_credits(&*store, &world, &alpha, CreditsOf::Key(newest.id.clone()), CreditsOperation::Set(1), now)
            .await
            .unwrap();
    assert_eq!((&by_newest.of, parts(&by_newest.pool)), (&root, (1, 0, 1)));
}

/// An identity is created, then replaced (what a put leaves unsaid stays);
/// its live keys are listed oldest first; a delete removes its meter and
/// its counters (its keys stay), and a second delete is not found.
pub async fn metering_identities_are_put_listed_and_deleted_with_their_counters(db: &TestDb) {
    let (store, mut world, _, [alpha, beta]) = acme(db, 123, ["alpha", "beta"]).await;
    let first = plain_key(&*store, &mut world, &alpha, "first", Some("customer-1")).await;
    let gone = plain_key(&*store, &mut world, &alpha, "gone", Some("customer-1")).await;
    let _other = plain_key(&*store, &mut world, &alpha, "other", Some("customer-2")).await;
    let _unowned = plain_key(&*store, &mut world, &alpha, "unowned", None).await;
    let second = metered_key(
        &*store,
        &mut world,
        &alpha,
        "second",
        Some("customer-1"),
        setting(limits([limit("own", 5, 60)]), Some(10), None),
    )
    .await;
    let theirs = plain_key(&*store, &mut world, &beta, "theirs", Some("customer-1")).await;
    let now = world.tick(10);
    store.delete_api_key(&alpha.uid, &gone.id, &world.actor, now).await.unwrap();

    // Created.
    let calls = limit("calls", 10, 60);
    let meta = KeyMeta::parse(r#"{"plan":"pro"}"#).unwrap();
    let put = MeterSetting {
        rate_limits: Some(limits([calls.clone()])),
        credits: Some(Some(Credits::parse(50, None).unwrap())),
        meta: Some(Some(meta.clone())),
    };
    let (made, created) = put_identity(&*store, &mut world, &alpha, "customer-1", put).await.unwrap();
    assert!(created, "a new identity");
    let of = MeterOf::Identity("customer-1".to_owned());
    assert_eq!((&made.workspace, &made.of, &made.meta), (&alpha.uid, &of, &Some(meta.clone())));
    assert_eq!(made.meter.rate_limits, limits([calls.clone()]));
    assert_eq!(made.meter.credits, Some(CreditRule { refill: None }));
    // Its epoch is its creation instant in microseconds, not 0: an
    // identity deleted and made again takes back no slice of its former
    // balance.
    let first_epoch = u64::try_from(made.created_at.unix_timestamp_nanos() / 1_000).unwrap();
    assert_eq!((parts(&made.pool), made.pool.refilled_at()), ((50, 0, first_epoch), made.created_at));
    assert_eq!(made.created_at, made.updated_at);
    assert_eq!(store.meter(&alpha.uid, &of).await.unwrap(), Some(made.clone()));
    assert_eq!(store.meter(&beta.uid, &of).await.unwrap(), None, "an identity is of one workspace");

    // Replaced: what the put says changes, what it leaves unsaid stays.
    let (_, reserved) = reserve(&*store, &alpha, &of, 20, world.now).await;
    assert_eq!(parts(&reserved), (30, 0, first_epoch));
    let narrower = limits([limit("calls", 4, 60)]);
    let put = MeterSetting { rate_limits: Some(narrower.clone()), credits: None, meta: Some(None) };
    let (replaced, created) = put_identity(&*store, &mut world, &alpha, "customer-1", put).await.unwrap();
    assert!(!created, "the identity existed");
    assert_eq!((&replaced.meter.rate_limits, &replaced.meta), (&narrower, &None));
    assert_eq!((replaced.meter.credits, replaced.pool), (made.meter.credits, reserved), "the balance stays");
    assert_eq!((replaced.created_at, replaced.updated_at), (made.created_at, world.now));
    assert_eq!(store.meter(&alpha.uid, &of).await.unwrap(), Some(replaced.clone()));
    // A balance given is set in a new epoch.
    let put = MeterSetting { credits: Some(Some(Credits::parse(20, None).unwrap())), ..MeterSetting::default() };
    let (reset, created) = put_identity(&*store, &mut world, &alpha, "customer-1", put).await.unwrap();
    assert!(!created);
    assert_eq!((parts(&reset.pool), reset.pool.refilled_at()), ((20, 0, first_epoch + 1), world.now));
    assert_eq!(reset.meter.rate_limits, narrower);

    // Its keys: the live ones of this workspace with its external_id,
    // oldest first.
    assert_eq!(store.identity_key_ids(&alpha.uid, "customer-1").await.unwrap(), [first.id.clone(), second.id.clone()]);
    assert_eq!(store.identity_key_ids(&beta.uid, "customer-1").await.unwrap(), std::slice::from_ref(&theirs.id));
    assert_eq!(store.identity_key_ids(&alpha.uid, "nobody").await.unwrap(), []);
    let drawn = store.key_meters(&alpha.uid, &second.id, Some("customer-1")).await.unwrap().unwrap();
    assert_eq!(drawn.identity, Some(reset.clone()));
    assert_eq!(drawn.key.map(|meter| meter.of), Some(MeterOf::Key(second.id.clone())));
    let drawn = store.key_meters(&alpha.uid, &first.id, Some("customer-1")).await.unwrap().unwrap();
    assert_eq!((drawn.key, drawn.identity), (None, Some(reset.clone())));

    // Its counters are taken from; a delete removes them with the meter.
    let now = world.tick(10);
    let narrow = narrower.as_slice()[0].clone();
    assert_eq!(store.take_tokens(&alpha.uid, &of, &narrow, 1, 3, now).await.unwrap(), Ok(3));
    let counters = "UPDATE ratelimit_counters SET name = name WHERE workspace_uid = $1 AND subject = $2";
    let meters = "UPDATE meters SET ratelimits = ratelimits WHERE workspace_uid = $1 AND subject = $2";
    let subject = [alpha.uid.as_str(), "identity:customer-1"];
    let rows = |statement: &'static str| db.execute(statement, &subject);
    assert_eq!((rows(counters).await, rows(meters).await), (Ok(1), Ok(1)));
    delete_identity(&*store, &mut world, &alpha, "customer-1").await.unwrap();
    assert_eq!((rows(counters).await, rows(meters).await), (Ok(0), Ok(0)), "its rows are gone");
    assert_eq!(store.meter(&alpha.uid, &of).await.unwrap(), None);
    let drawn = store.key_meters(&alpha.uid, &second.id, Some("customer-1")).await.unwrap().unwrap();
    assert_eq!(drawn.identity, None);
    assert!(drawn.key.is_some(), "the key's own meter stays");
    assert_eq!(store.take_tokens(&alpha.uid, &of, &narrow, 1, 1, now).await.unwrap(), Err(None));
    assert_eq!(store.reserve_credits(&alpha.uid, &of, 0, 1, now).await.unwrap(), None);
    let refused = change_credits(
        &*store,
        &world,
        &alpha,
        CreditsOf::Identity("customer-1".to_owned()),
        CreditsOperation::Set(5),
        now,
    )
    .await;
    assert_refused(refused, not_found("identity"));
    // Its keys keep working.
    assert_eq!(store.identity_key_ids(&alpha.uid, "customer-1").await.unwrap(), [first.id.clone(), second.id.clone()]);
    assert!(store.api_key(&alpha.uid, &first.id).await.unwrap().is_some_and(|key| !key.is_deleted()));

    // A second delete is not found; so is one in another workspace.
    assert_refused(delete_identity(&*store, &mut world, &alpha, "customer-1").await, not_found("identity"));
    assert_refused(delete_identity(&*store, &mut world, &beta, "customer-2").await, not_found("identity"));

    // Put again, it starts afresh: a full bucket, no counter left over.
    let put = MeterSetting { rate_limits: Some(narrower.clone()), ..MeterSetting::default() };
    let (again, created) = put_identity(&*store, &mut world, &alpha, "customer-1", put).await.unwrap();
    assert!(created, "made anew");
    assert_eq!((again.meter.credits, again.meta), (None, None));
    assert_eq!(store.take_tokens(&alpha.uid, &of, &narrow, 1, 10, now).await.unwrap(), Ok(4));
}

/// A daily refill of 10, last set two days ago with a debt: a reservation
/// today first sets the balance to 10 in a new epoch (the debt and the
/// older slices void), once a day.
pub async fn metering_refill_due_sets_the_balance_in_a_new_epoch_before_a_reservation(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 124, ["alpha"]).await;
    let daily = Refill::parse("daily", 10, None).unwrap();
    let key =
        metered_key(&*store, &mut world, &alpha, "refilled", None, setting(limits([]), Some(100), Some(daily))).await;
    let of = MeterOf::Key(key.id.clone());
    let today = world.tick(10);
    let midnight = |at: OffsetDateTime| at.replace_time(Time::MIDNIGHT);
    let (slice, _) = reserve(&*store, &alpha, &of, 30, today).await;
    assert_eq!((slice.granted, slice.epoch), (30, 0));

    // Set two days ago, then decremented past it: a debt of 2.
    let two_days_ago = today - Duration::days(2);
    let by_hand =
        |operation, at| change_credits(&*store, &world, &alpha, CreditsOf::Key(key.id.clone()), operation, at);
    let set = by_hand(CreditsOperation::Set(3), two_days_ago).await.unwrap();
    assert_eq!((parts(&set.pool), set.pool.refilled_at()), ((3, 0, 1), two_days_ago));
    let decremented = by_hand(CreditsOperation::Decrement(5), two_days_ago + Duration::HOUR).await.unwrap();
    assert_eq!((parts(&decremented.pool), decremented.pool.refilled_at()), ((0, 2, 1), two_days_ago));
    assert_eq!(stored_pool(&*store, &alpha, &of).await, decremented.pool);

    // Today's reservation refills first: 10 in epoch 2, as of midnight.
    let (slice, pool) = reserve(&*store, &alpha, &of, 4, today).await;
    assert_eq!(slice, Reserved { granted: 4, epoch: 2, refilled_at: midnight(today) });
    assert_eq!((parts(&pool), pool.refilled_at()), ((6, 0, 2), midnight(today)));
    // The slices of the older epochs are void.
    store.hand_back_credits(&alpha.uid, &of, 0, 30).await.unwrap();
    store.hand_back_credits(&alpha.uid, &of, 1, 3).await.unwrap();
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (6, 0, 2));
    // Once a day: later today nothing is refilled again.
    let later = today + Duration::hours(3);
    let (slice, pool) = reserve(&*store, &alpha, &of, 100, later).await;
    assert_eq!((slice.granted, slice.epoch, parts(&pool)), (6, 2, (0, 0, 2)));
    store.hand_back_credits(&alpha.uid, &of, 2, 2).await.unwrap();
    assert_eq!(parts(&stored_pool(&*store, &alpha, &of).await), (2, 0, 2));
    // A change by hand refills first too: tomorrow's increment adds to 10.
    let tomorrow = today + Duration::DAY;
    let incremented = by_hand(CreditsOperation::Increment(1), tomorrow).await.unwrap();
    assert_eq!((parts(&incremented.pool), incremented.pool.refilled_at()), ((11, 0, 3), midnight(tomorrow)));
    // Three days on, several refill days at once set it once, not thrice.
    let (slice, pool) = reserve(&*store, &alpha, &of, 0, tomorrow + Duration::days(3)).await;
    assert_eq!((slice.granted, parts(&pool)), (0, (10, 0, 4)));
    assert_eq!(pool.refilled_at(), midnight(tomorrow + Duration::days(3)));
}
