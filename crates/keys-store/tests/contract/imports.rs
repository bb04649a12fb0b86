//! `ImportApiKeys`: a batch of keys made elsewhere is stored all or
//! nothing, refused whole on a digest already stored (anywhere) or repeated
//! in the batch, held to the workspace's key cap as a whole, skips what its
//! workspace holds already when asked to, and is audited as one
//! `api_key.imported` event naming the keys.

use std::sync::Arc;

use keys_core::{ApiKey, CoreError, Pagination, QuotaKind, Quotas, Workspace};
use keys_store::{
    Acting, AuditAction, Conflict, ImportApiKeys, ImportedApiKeys, Listing, Run as _, Store, StoreResult, StoredDigests,
};

use crate::support::{assert_refused, Kind, TestDb, World};

async fn import(
    store: &dyn Store,
    world: &mut World,
    workspace: &Workspace,
    keys: Vec<ApiKey>,
    stored: StoredDigests,
) -> StoreResult<ImportedApiKeys> {
    let acting = Acting::new(workspace.uid.clone(), world.actor.clone(), world.tick(1));
    Ok(store.run(ImportApiKeys { acting, keys, stored }).await?.output)
}

async fn live_keys(store: &dyn Store, workspace: &Workspace) -> u64 {
    let listing = Listing::new(Pagination::new(100, 0).unwrap(), true);
    store.list_api_keys(&workspace.uid, listing).await.unwrap().total
}

/// The same key (same digest) as `key`, as another import would make it.
fn same_digest(world: &mut World, workspace: &Workspace, key: &ApiKey) -> ApiKey {
    let mut material = world.api_key_material();
    material.digest = key.digest;
    let profile = keys_core::ApiKeyProfile::named(key.name.clone());
    ApiKey::create(
        keys_core::NewApiKey { workspace: workspace.uid.clone(), material, profile },
        &world.actor,
        world.now,
    )
    .unwrap()
}

pub async fn imports_are_all_or_nothing_and_audited_once(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(71);
    let organisation = world.stored_organisation(&*store, "acme").await;
    let [mine, theirs] = world.stored_workspaces(&*store, &organisation, ["mine", "theirs"]).await;
    let elsewhere = world.api_key(&theirs, "elsewhere");
    store.create_api_key(&elsewhere).await.unwrap();
    let events = store.audit_events(&organisation.id, 100).await.unwrap().len();

    // A digest stored in another workspace refuses the whole batch, naming
    // its entry; nothing of the batch is written.
    let batch = vec![world.api_key(&mine, "a"), world.api_key(&mine, "b"), same_digest(&mut world, &mine, &elsewhere)];
    let refused = import(&*store, &mut world, &mine, batch, StoredDigests::Refuse).await;
    assert_refused(refused, Conflict::DigestStored { index: 2 });
    // So does an entry repeating an earlier one.
    let first = world.api_key(&mine, "first");
    let batch = vec![first.clone(), world.api_key(&mine, "other"), same_digest(&mut world, &mine, &first)];
    let refused = import(&*store, &mut world, &mine, batch, StoredDigests::Refuse).await;
    assert_refused(refused, Conflict::RepeatedInBatch { index: 2, first: 0 });
    assert_eq!(live_keys(&*store, &mine).await, 0, "a refused batch writes nothing");
    assert_eq!(store.audit_events(&organisation.id, 100).await.unwrap().len(), events);

    // A good batch is stored whole, found by digest, audited once.
    let batch = vec![world.api_key(&mine, "a"), world.api_key(&mine, "b"), world.api_key(&mine, "c")];
    let imported = import(&*store, &mut world, &mine, batch.clone(), StoredDigests::Refuse).await.unwrap();
    assert_eq!(imported.imported, batch);
    assert!(imported.skipped.is_empty());
    for key in &batch {
        let (found, workspace) = store.api_key_by_digest(&key.digest).await.unwrap().unwrap();
        assert_eq!((&found, &workspace.uid), (key, &mine.uid));
    }
    let trail = store.audit_events(&organisation.id, 100).await.unwrap();
    assert_eq!(trail.len(), events + 1, "one event for the batch");
    let event = &trail[0];
    assert_eq!(event.action, AuditAction::ApiKeyImported);
    assert_eq!(event.workspace.as_ref(), Some(&mine.uid));
    let ids = batch.iter().map(|key| key.id.as_str()).collect::<Vec<_>>().join(",");
    assert_eq!(event.target_id, format!("count=3 ids={ids}"));

    // The same batch again: refused whole through the API's mode...
    let refused = import(&*store, &mut world, &mine, batch.clone(), StoredDigests::Refuse).await;
    assert_refused(refused, Conflict::DigestStored { index: 0 });
    // ...skipped entry by entry in the CLI's, with new ones imported; a
    // batch of nothing new writes nothing, not even an event.
    let fresh = world.api_key(&mine, "d");
    let again = vec![batch[0].clone(), fresh.clone(), same_digest(&mut world, &mine, &fresh), batch[2].clone()];
    let imported = import(&*store, &mut world, &mine, again, StoredDigests::SkipInWorkspace).await.unwrap();
    assert_eq!(imported.imported, vec![fresh]);
    assert_eq!(imported.skipped, vec![0, 2, 3]);
    let events = store.audit_events(&organisation.id, 100).await.unwrap().len();
    let imported = import(&*store, &mut world, &mine, batch.clone(), StoredDigests::SkipInWorkspace).await.unwrap();
    assert_eq!((imported.imported.len(), imported.skipped.len()), (0, 3));
    assert_eq!(store.audit_events(&organisation.id, 100).await.unwrap().len(), events);
    // A key of another workspace is not skipped: it refuses the batch.
    let taken = vec![world.api_key(&mine, "e"), same_digest(&mut world, &mine, &elsewhere)];
    let refused = import(&*store, &mut world, &mine, taken, StoredDigests::SkipInWorkspace).await;
    assert_refused(refused, Conflict::DigestStored { index: 1 });
    assert_eq!(live_keys(&*store, &mine).await, 4);
}

pub async fn imports_count_whole_against_the_key_cap(db: &TestDb) {
    let quotas = Quotas::new(10, 3, 10).unwrap();
    let store: Arc<dyn Store> = match db.kind {
        Kind::Sqlite => Arc::new(db.sqlite_store().await.with_quotas(quotas)),
        Kind::Postgres => Arc::new(db.postgres_store().await.with_quotas(quotas)),
    };
    let mut world = World::new(72);
    let organisation = world.stored_organisation(&*store, "acme").await;
    let [workspace] = world.stored_workspaces(&*store, &organisation, ["one"]).await;
    store.create_api_key(&world.api_key(&workspace, "created")).await.unwrap();

    // Three more would make four: the whole batch is refused.
    let batch = (0..3).map(|index| world.api_key(&workspace, &format!("k{index}"))).collect();
    let refused = import(&*store, &mut world, &workspace, batch, StoredDigests::Refuse).await;
    let limit = 3;
    let reached =
        CoreError::QuotaReached { holder: QuotaKind::ApiKeys.holder(), counted: QuotaKind::ApiKeys.counted(), limit };
    assert_refused(refused, reached.clone());
    assert_eq!(live_keys(&*store, &workspace).await, 1);
    // Two fit exactly; then a create is refused as well.
    let batch = (0..2).map(|index| world.api_key(&workspace, &format!("k{index}"))).collect();
    import(&*store, &mut world, &workspace, batch, StoredDigests::Refuse).await.unwrap();
    assert_eq!(live_keys(&*store, &workspace).await, 3);
    assert_refused(store.create_api_key(&world.api_key(&workspace, "one more")).await, reached);
}

/// The same key imported into two workspaces at once, through two stores
/// (two processes): exactly one import stores it, the other is refused
/// naming the entry, never a fault.
pub async fn concurrent_imports_of_one_key_store_it_once(db: &TestDb) {
    let (first, second) = (db.store().await, db.store().await);
    let mut world = World::new(73);
    let organisation = world.stored_organisation(&*first, "acme").await;
    let [one, two] = world.stored_workspaces(&*first, &organisation, ["one", "two"]).await;
    for round in 0..5 {
        let key = world.api_key(&one, &format!("k{round}"));
        let twin = same_digest(&mut world, &two, &key);
        let now = world.tick(1);
        let acting = |workspace: &Workspace| Acting::new(workspace.uid.clone(), world.actor.clone(), now);
        let (left, right) = tokio::join!(
            first.run(ImportApiKeys { acting: acting(&one), keys: vec![key], stored: StoredDigests::Refuse }),
            second.run(ImportApiKeys { acting: acting(&two), keys: vec![twin], stored: StoredDigests::Refuse }),
        );
        assert_eq!([left.is_ok(), right.is_ok()].iter().filter(|stored| **stored).count(), 1, "round {round}");
        for refused in [left, right].into_iter().filter(Result::is_err) {
            assert_refused(refused, Conflict::DigestStored { index: 0 });
        }
    }
}

/// A batch of several keys racing another workspace's import of its
/// middle one: one of the two is stored, and a refused batch names the
/// entry at fault (index 1), not its first, though the batch is written in
/// one statement.
pub async fn a_refused_batch_names_the_entry_another_import_stored(db: &TestDb) {
    let (first, second) = (db.store().await, db.store().await);
    let mut world = World::new(79);
    let organisation = world.stored_organisation(&*first, "acme").await;
    let [one, two] = world.stored_workspaces(&*first, &organisation, ["one", "two"]).await;
    for round in 0..5 {
        let batch = [0, 1, 2].map(|entry| world.api_key(&one, &format!("k{round}-{entry}")));
        let twin = same_digest(&mut world, &two, &batch[1]);
        let now = world.tick(1);
        let acting = |workspace: &Workspace| Acting::new(workspace.uid.clone(), world.actor.clone(), now);
        let (left, right) = tokio::join!(
            first.run(ImportApiKeys { acting: acting(&one), keys: batch.to_vec(), stored: StoredDigests::Refuse }),
            second.run(ImportApiKeys { acting: acting(&two), keys: vec![twin], stored: StoredDigests::Refuse }),
        );
        match (left, right) {
            (Ok(stored), Err(refused)) => {
                assert_eq!(stored.output.imported.len(), 3, "round {round}");
                assert_refused(Err::<(), _>(refused), Conflict::DigestStored { index: 0 });
            }
            (Err(refused), Ok(_)) => assert_refused(Err::<(), _>(refused), Conflict::DigestStored { index: 1 }),
            other => panic!("round {round}: exactly one import stores the shared key: {other:?}"),
        }
    }
}
