//! The per-organisation caps ([`Quotas`]) and the paged list of
//! organisation keys: each cap refuses the create past it and writes
//! nothing, a delete frees a place, and concurrent creates through two
//! stores (two processes) never go past a cap.

use std::sync::Arc;

use keys_core::{CoreError, KeyPage, KeyPosition, QuotaKind, Quotas};
use keys_store::{Listing, Store};

use crate::concurrency::race_alternating;
use crate::support::{assert_refused, not_found, Expected, Kind, TestDb, World};

/// A store on `db` holding every create to `quotas`.
async fn capped(db: &TestDb, quotas: Quotas) -> Arc<dyn Store> {
    match db.kind {
        Kind::Sqlite => Arc::new(db.sqlite_store().await.with_quotas(quotas)),
        Kind::Postgres => Arc::new(db.postgres_store().await.with_quotas(quotas)),
    }
}

fn reached(kind: QuotaKind, limit: u32) -> CoreError {
    CoreError::QuotaReached { holder: kind.holder(), counted: kind.counted(), limit }
}

fn all_keys() -> Listing {
    Listing::new(keys_core::Pagination::new(100, 0).unwrap(), true)
}

pub async fn every_cap_refuses_past_it_and_a_delete_frees_a_place(db: &TestDb) {
    let store = capped(db, Quotas::new(2, 2, 2).unwrap()).await;
    let mut world = World::new(41);
    let organisation = world.stored_organisation(&*store, "acme").await;
    let [workspace] = world.stored_workspaces(&*store, &organisation, ["one"]).await;
    let actor = world.actor.clone();

    // Workspaces: the second fits, the third is refused and not written.
    let [_second] = world.stored_workspaces(&*store, &organisation, ["two"]).await;
    let third = world.workspace(&organisation, "three");
    assert_refused(store.create_workspace(&third).await, reached(QuotaKind::Workspaces, 2));
    assert_eq!(store.list_workspaces(&organisation.id, Default::default()).await.unwrap().total, 2);

    // API keys: a roll adds a key too; a delete frees a place.
    let first = world.api_key(&workspace, "first");
    store.create_api_key(&first).await.unwrap();
    store.create_api_key(&world.api_key(&workspace, "second")).await.unwrap();
    let events = store.audit_events(&organisation.id, 100).await.unwrap().len();
    assert_refused(store.create_api_key(&world.api_key(&workspace, "third")).await, reached(QuotaKind::ApiKeys, 2));
    let material = world.api_key_material();
    let now = world.tick(1);
    assert_refused(
        store.roll_api_key(&workspace.uid, &first.id, None, material, &actor, now).await,
        reached(QuotaKind::ApiKeys, 2),
    );
    // At the cap, a roll refused for another reason says that reason.
    let missing = world.api_key(&workspace, "never stored");
    let (material, now) = (world.api_key_material(), world.tick(1));
    let refused = store.roll_api_key(&workspace.uid, &missing.id, None, material, &actor, now).await;
    assert_refused(refused, not_found("api key"));
    assert_eq!(store.audit_events(&organisation.id, 100).await.unwrap().len(), events, "refusals write nothing");
    store.delete_api_key(&workspace.uid, &first.id, &actor, world.tick(1)).await.unwrap();
    store.create_api_key(&world.api_key(&workspace, "third")).await.unwrap();
    assert_eq!(store.list_api_keys(&workspace.uid, all_keys()).await.unwrap().total, 3, "the deleted one stays listed");

    // Public keys.
    for name in ["a", "b"] {
        store.create_public_key(world.new_public_key(&workspace.uid, name), &actor, world.tick(1)).await.unwrap();
    }
    let refused = store.create_public_key(world.new_public_key(&workspace.uid, "c"), &actor, world.tick(1)).await;
    assert_refused(refused, reached(QuotaKind::PublicKeys, 2));

    // Signing keys: the rolled key keeps its place until it is deleted.
    let active = store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(1)).await.unwrap();
    let (rolled, fresh) = store
        .roll_signing_key(&workspace.uid, &active.uid, None, world.signing_key(), &actor, world.tick(1))
        .await
        .unwrap();
    let refused = store.roll_signing_key(&workspace.uid, &fresh.uid, None, world.signing_key(), &actor, world.tick(1));
    assert_refused(refused.await, reached(QuotaKind::SigningKeys, 2));
    store.delete_signing_key(&workspace.uid, &rolled.uid, &actor, world.tick(1)).await.unwrap();
    store.roll_signing_key(&workspace.uid, &fresh.uid, None, world.signing_key(), &actor, world.tick(1)).await.unwrap();

    // Organisation keys.
    let first = world.organisation_key(&organisation, "first");
    store.create_organisation_key(&first).await.unwrap();
    store.create_organisation_key(&world.organisation_key(&organisation, "second")).await.unwrap();
    let third = world.organisation_key(&organisation, "third");
    assert_refused(store.create_organisation_key(&third).await, reached(QuotaKind::OrganisationKeys, 2));
    store.delete_organisation_key(&organisation.id, &first.id, &actor, world.tick(1)).await.unwrap();
    store.create_organisation_key(&third).await.unwrap();

    // Identities (metering), capped like keys: a replace adds nothing, a
    // delete frees a place.
    let put = |external_id: &str, now| {
        let acting = keys_store::Acting::new(workspace.uid.clone(), actor.clone(), now);
        keys_store::PutIdentity {
            acting,
            external_id: external_id.to_owned(),
            setting: keys_store::MeterSetting::default(),
        }
    };
    for external_id in ["a", "b", "a"] {
        keys_store::Run::run(&*store, put(external_id, world.tick(1))).await.unwrap();
    }
    let refused = keys_store::Run::run(&*store, put("c", world.tick(1))).await.map(|_| ());
    assert_refused(refused, reached(QuotaKind::Identities, 2));
    let acting = keys_store::Acting::new(workspace.uid.clone(), actor.clone(), world.tick(1));
    let delete = keys_store::DeleteIdentity { acting, external_id: "a".to_owned() };
    keys_store::Run::run(&*store, delete).await.unwrap();
    keys_store::Run::run(&*store, put("c", world.tick(1))).await.unwrap();

    // Caps count per holder: another organisation starts from nothing.
    let other = world.stored_organisation(&*store, "globex").await;
    world.stored_workspaces(&*store, &other, ["one", "two"]).await;
    store.create_organisation_key(&world.organisation_key(&other, "own")).await.unwrap();
}

/// PostgreSQL admits an API-key create on its workspace's row of
/// `workspace_api_key_counts` (migration 0007), kept by triggers: after
/// creates (one statement each), a roll, a delete and racing creates from
/// two stores, it equals the live keys counted directly, and a new
/// workspace starts at 0. SQLite has no such table (one writer at a time).
pub async fn the_api_key_count_follows_every_write(db: &TestDb) {
    let Kind::Postgres = db.kind else { return };
    let quotas = Quotas::new(10, 40, 10).unwrap();
    let stores = [capped(db, quotas).await, capped(db, quotas).await];
    let mut world = World::new(44);
    let organisation = world.stored_organisation(&*stores[0], "acme").await;
    let [workspace, empty] = world.stored_workspaces(&*stores[0], &organisation, ["demo", "empty"]).await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let mut counted = async |uid: &keys_core::WorkspaceUid| -> (i64, i64) {
        sqlx::query_as(
            "SELECT (SELECT live FROM workspace_api_key_counts WHERE workspace_uid = $1), \
                    (SELECT COUNT(*) FROM api_keys WHERE workspace_uid = $1 AND deleted_at IS NULL)",
        )
        .bind(uid.as_str())
        .fetch_one(&mut admin)
        .await
        .unwrap()
    };
    assert_eq!(counted(&empty.uid).await, (0, 0));

    let first = world.api_key(&workspace, "first");
    stores[0].create_api_key(&first).await.unwrap();
    stores[1].create_api_key(&world.api_key(&workspace, "second")).await.unwrap();
    assert_eq!(counted(&workspace.uid).await, (2, 2));
    let actor = world.actor.clone();
    let (material, now) = (world.api_key_material(), world.tick(1));
    stores[1].roll_api_key(&workspace.uid, &first.id, None, material, &actor, now).await.unwrap();
    assert_eq!(counted(&workspace.uid).await, (3, 3), "the rolled key keeps its place");
    stores[0].delete_api_key(&workspace.uid, &first.id, &actor, world.tick(1)).await.unwrap();
    assert_eq!(counted(&workspace.uid).await, (2, 2));

    let (created, refusals) = race_alternating(24, &stores, |store| {
        let key = world.api_key(&workspace, "raced");
        Box::pin(async move { store.create_api_key(&key).await })
    })
    .await;
    assert_eq!((created.len(), refusals.len()), (24, 0), "{refusals:?}");
    assert_eq!(counted(&workspace.uid).await, (26, 26));
    assert_eq!(counted(&empty.uid).await, (0, 0), "counts are per workspace");
}

pub async fn concurrent_creates_never_pass_a_cap(db: &TestDb) {
    let quotas = Quotas::new(4, 5, 3).unwrap();
    let stores = [capped(db, quotas).await, capped(db, quotas).await];
    let mut world = World::new(42);
    let organisation = world.stored_organisation(&*stores[0], "acme").await;
    let [workspace] = world.stored_workspaces(&*stores[0], &organisation, ["demo"]).await;

    let (created, refusals) = race_alternating(20, &stores, |store| {
        let key = world.api_key(&workspace, "raced");
        Box::pin(async move { store.create_api_key(&key).await })
    })
    .await;
    assert_eq!((created.len(), refusals.len()), (5, 15), "{refusals:?}");
    assert!(refusals.iter().all(|refusal| *refusal == Expected::Refused(reached(QuotaKind::ApiKeys, 5))));
    assert_eq!(stores[1].list_api_keys(&workspace.uid, all_keys()).await.unwrap().total, 5);

    let (created, refusals) = race_alternating(12, &stores, |store| {
        let key = world.organisation_key(&organisation, "raced");
        Box::pin(async move { store.create_organisation_key(&key).await })
    })
    .await;
    assert_eq!((created.len(), refusals.len()), (3, 9), "{refusals:?}");
    assert_eq!(stores[1].list_organisation_keys(&organisation.id).await.unwrap().len(), 3);

    let mut slug = 0;
    let (created, refusals) = race_alternating(12, &stores, |store| {
        slug += 1;
        let workspace = world.workspace(&organisation, &format!("raced-{slug}"));
        Box::pin(async move { store.create_workspace(&workspace).await })
    })
    .await;
    assert_eq!((created.len(), refusals.len()), (3, 9), "one of the four was there before: {refusals:?}");
    assert!(refusals.iter().all(|refusal| *refusal == Expected::Refused(reached(QuotaKind::Workspaces, 4))));
    assert_eq!(stores[1].list_workspaces(&organisation.id, Default::default()).await.unwrap().total, 4);
}

pub async fn organisation_keys_page_newest_first_with_a_cursor(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(43);
    let acme = world.stored_organisation(&*store, "acme").await;
    let globex = world.stored_organisation(&*store, "globex").await;
    // Five keys, two of them at the same instant (ties go by id).
    let mut keys = Vec::new();
    for index in 0..5 {
        if index != 3 {
            world.tick(10);
        }
        let key = world.organisation_key(&acme, &format!("key-{index}"));
        store.create_organisation_key(&key).await.unwrap();
        keys.push(key);
    }
    store.create_organisation_key(&world.organisation_key(&globex, "foreign")).await.unwrap();
    let actor = world.actor.clone();
    let deleted = keys.remove(1);
    store.delete_organisation_key(&acme.id, &deleted.id, &actor, world.tick(1)).await.unwrap();
    let newest_first = store.list_organisation_keys(&acme.id).await.unwrap();
    assert_eq!(newest_first.len(), 4);

    let mut seen = Vec::new();
    let mut after: Option<KeyPosition> = None;
    for expected_len in [3, 1] {
        let slice = store.organisation_keys_page(&acme.id, &KeyPage::new(3, after.clone()).unwrap()).await.unwrap();
        assert_eq!(slice.keys.len(), expected_len);
        seen.extend(slice.keys.iter().cloned());
        after = slice.next.clone();
        if expected_len == 3 {
            assert_eq!(after, Some(KeyPosition::of(&slice.keys[2])));
        }
    }
    assert_eq!(after, None, "the last page names no next one");
    assert_eq!(seen, newest_first, "pages are the list, in order, without repeats or gaps");

    let exact = store.organisation_keys_page(&acme.id, &KeyPage::new(4, None).unwrap()).await.unwrap();
    assert_eq!((exact.keys.len(), exact.next), (4, None), "a full last page names no next one");
    let whole = store.organisation_keys_page(&acme.id, &KeyPage::default()).await.unwrap();
    assert_eq!(whole.keys, newest_first);
}
