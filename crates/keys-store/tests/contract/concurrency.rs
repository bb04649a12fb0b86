//! Concurrent writers through two stores (two connection pools, as two
//! processes would have) on one database: the invariants hold, every loser
//! gets the domain's refusal, never a database error.

use std::sync::Arc;

use keys_core::{CoreError, Organisation, PublicKey, SigningKeyStatus, Workspace, WorkspaceSigningKey};
use keys_store::{Conflict, Listing, Store, StoreResult};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::support::{Expected, TestDb, World};

/// Two stores on `db` and an organisation with one workspace.
async fn two_stores(db: &TestDb, world: &mut World) -> ([Arc<dyn Store>; 2], Organisation, Workspace) {
    let stores = [db.store().await, db.store().await];
    let organisation = world.stored_organisation(&*stores[0], "acme").await;
    let [workspace] = world.stored_workspaces(&*stores[0], &organisation, ["demo"]).await;
    (stores, organisation, workspace)
}

/// Runs every attempt at once (they all pass a barrier first) and returns
/// their results.
async fn race<T: Send + 'static>(attempts: Vec<Attempt<T>>) -> Vec<StoreResult<T>> {
    let barrier = Arc::new(Barrier::new(attempts.len()));
    let mut tasks = JoinSet::new();
    for attempt in attempts {
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            attempt.await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("task panicked"));
    }
    results
}

/// A write to race: a boxed future, so that different writes make one list.
pub(crate) type Attempt<T> = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<T>> + Send>>;

/// Makes `count` attempts, handing them the two stores in turn, races them
/// and tallies their results.
pub(crate) async fn race_alternating<T: std::fmt::Debug + Send + 'static>(
    count: usize,
    stores: &[Arc<dyn Store>; 2],
    mut attempt: impl FnMut(Arc<dyn Store>) -> Attempt<T>,
) -> (Vec<T>, Vec<Expected>) {
    let attempts = (0..count).map(|index| attempt(stores[index % 2].clone())).collect();
    tally(race(attempts).await)
}

/// Splits results into successes and refusals; any other error fails.
fn tally<T: std::fmt::Debug>(results: Vec<StoreResult<T>>) -> (Vec<T>, Vec<Expected>) {
    let mut successes = Vec::new();
    let mut refusals = Vec::new();
    for result in results {
        match result {
            Ok(value) => successes.push(value),
            Err(error) => match Expected::of(&error) {
                Some(refusal) => refusals.push(refusal),
                None => panic!("a concurrent writer got a non-domain error: {error:?}"),
            },
        }
    }
    (successes, refusals)
}

pub async fn concurrent_opens_migrate_once(db: &TestDb) {
    let mut tasks = JoinSet::new();
    for _ in 0..6 {
        let url = db.url.clone();
        tasks.spawn(async move { keys_store::open(&url).await.map(|_| ()) });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }
    db.store().await.ping().await.unwrap();
}

pub async fn concurrent_bootstraps_elect_one(db: &TestDb) {
    let stores = [db.store().await, db.store().await];
    let mut world = World::new(21);
    let bootstraps: Vec<_> = (0..20).map(|index| world.bootstrap(&format!("org-{index}"))).collect();
    let attempts = bootstraps
        .iter()
        .enumerate()
        .map(|(index, bootstrap)| {
            let (store, bootstrap) = (stores[index % 2].clone(), bootstrap.clone());
            Box::pin(async move { store.bootstrap_if_empty(&bootstrap).await }) as _
        })
        .collect();
    let (outcomes, refusals) = tally(race(attempts).await);
    assert!(refusals.is_empty(), "{refusals:?}");
    assert_eq!(outcomes.iter().filter(|bootstrapped| **bootstrapped).count(), 1);
    let mut existing = 0;
    for bootstrap in &bootstraps {
        if stores[1].organisation(&bootstrap.organisation.id).await.unwrap().is_some() {
            existing += 1;
            let listed = stores[1].list_workspaces(&bootstrap.organisation.id, Default::default()).await.unwrap();
            assert_eq!(listed.total, 2);
        }
    }
    assert_eq!(existing, 1);
}

pub async fn concurrent_signing_key_creates_leave_one_active(db: &TestDb) {
    let mut world = World::new(22);
    let (stores, _, workspace) = two_stores(db, &mut world).await;
    let (created, refusals) = race_alternating(60, &stores, |store| {
        let (uid, actor) = (workspace.uid.clone(), world.actor.clone());
        let (new, now) = (world.signing_key(), world.tick(1));
        Box::pin(async move { store.create_signing_key(&uid, new, &actor, now).await })
    })
    .await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(refusals.len(), 59);
    assert!(
        refusals.iter().all(|refusal| *refusal == Expected::Refused(CoreError::OnlyOneActiveSigningKey)),
        "{refusals:?}"
    );
    let live = stores[1].live_signing_keys(&workspace.uid).await.unwrap();
    assert_eq!(live, created);
}

pub async fn concurrent_rolls_leave_one_active(db: &TestDb) {
    let mut world = World::new(23);
    let (stores, _, workspace) = two_stores(db, &mut world).await;
    let actor = world.actor.clone();
    let original =
        stores[0].create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(1)).await.unwrap();
    let (rolls, refusals) = race_alternating(50, &stores, |store| {
        let (uid, actor) = (workspace.uid.clone(), actor.clone());
        let (key, new, now) = (original.uid.clone(), world.signing_key(), world.tick(1));
        Box::pin(async move { store.roll_signing_key(&uid, &key, None, new, &actor, now).await })
    })
    .await;
    assert_eq!(rolls.len(), 1, "{rolls:?}");
    assert_eq!(refusals.len(), 49);
    assert!(
        refusals.iter().all(|refusal| matches!(
            refusal,
            Expected::Refused(CoreError::SigningKeyNotActive) | Expected::NotFound("signing key")
        )),
        "{refusals:?}"
    );
    let (rolled, fresh): &(WorkspaceSigningKey, WorkspaceSigningKey) = &rolls[0];
    assert_eq!(rolled.uid, original.uid);
    let live = stores[1].live_signing_keys(&workspace.uid).await.unwrap();
    assert_eq!(live.len(), 2);
    let active: Vec<_> = live.iter().filter(|key| key.status() == SigningKeyStatus::Active).collect();
    assert_eq!(active, vec![fresh]);
}

pub async fn concurrent_public_key_creates_keep_one_default(db: &TestDb) {
    let mut world = World::new(24);
    let (stores, _, workspace) = two_stores(db, &mut world).await;
    let (created, refusals): (Vec<PublicKey>, _) = race_alternating(30, &stores, |store| {
        let (new, actor, now) = (world.new_public_key(&workspace.uid, "k"), world.actor.clone(), world.tick(1));
        Box::pin(async move { store.create_public_key(new, &actor, now).await })
    })
    .await;
    assert!(refusals.is_empty(), "{refusals:?}");
    assert_eq!(created.len(), 30);
    assert_eq!(created.iter().filter(|key| key.is_default).count(), 1);
    let listed = stores[1]
        .list_public_keys(&workspace.uid, Listing::new(keys_core::Pagination::new(100, 0).unwrap(), false))
        .await;
    let listed = listed.unwrap();
    assert_eq!(listed.total, 30);
    assert_eq!(listed.items.iter().filter(|key| key.is_default).count(), 1);
}

pub async fn concurrent_workspace_creates_refuse_taken_slug(db: &TestDb) {
    let mut world = World::new(25);
    let (stores, organisation, _) = two_stores(db, &mut world).await;
    let (created, refusals) = race_alternating(20, &stores, |store| {
        let workspace = world.workspace(&organisation, "shared");
        Box::pin(async move { store.create_workspace(&workspace).await })
    })
    .await;
    assert_eq!(created.len(), 1);
    assert_eq!(refusals.len(), 19);
    assert!(
        refusals.iter().all(|refusal| *refusal == Expected::Conflict(Conflict::SlugTaken("shared".into()))),
        "{refusals:?}"
    );
}

/// Two replicas revoking an organisation's last two admin tokens at once:
/// exactly one revocation goes through, whatever the interleaving (the
/// organisation's lock serializes them), so one admin token always stays.
pub async fn concurrent_revocations_keep_one_admin_token(db: &TestDb) {
    let mut world = World::new(26);
    let stores = [db.store().await, db.store().await];
    for round in 0..5 {
        let organisation = world.stored_organisation(&*stores[0], &format!("org-{round}")).await;
        let pair = [world.service_token(&organisation), world.service_token(&organisation)];
        for token in &pair {
            stores[0].create_service_token(token).await.unwrap();
        }
        let now = world.tick(1);
        let attempts = pair
            .iter()
            .enumerate()
            .map(|(index, token)| {
                let (store, organisation, id) = (stores[index].clone(), organisation.id.clone(), token.id.clone());
                Box::pin(async move { store.revoke_service_token(&organisation, &id, None, now).await }) as Attempt<_>
            })
            .collect();
        let (revoked, refusals): (Vec<keys_core::ServiceTokenRecord>, _) = tally(race(attempts).await);
        assert_eq!(revoked.len(), 1, "{revoked:?}");
        assert_eq!(refusals, vec![Expected::Refused(CoreError::LastAdminToken)]);
        let survivor = pair.iter().find(|token| token.id != revoked[0].id).unwrap();
        assert!(stores[1].service_token_by_digest(&survivor.digest).await.unwrap().is_some());
    }
}
