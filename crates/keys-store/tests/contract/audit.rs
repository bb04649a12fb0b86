//! The audit trail as a read model: attribution (token and request), the
//! filters and keyset pages of `audit_page`, pages that stay exact while
//! events are inserted, prune, and the append-only triggers that refuse
//! every other `UPDATE` and `DELETE` of an event, on both backends.

use std::collections::HashSet;
use std::sync::Arc;

use keys_core::{RequestId, ServiceTokenId, Workspace};
use keys_store::{
    Attributed, Attribution, AuditAction, AuditFilter, AuditOrder, AuditPosition, AuditQuery, Mutations,
    RecordedAuditEvent, Store,
};
use time::{Duration, OffsetDateTime};

use crate::support::{acme, Kind, TestDb, World};

fn newest(filter: AuditFilter, limit: u32) -> AuditQuery {
    AuditQuery { filter, order: AuditOrder::NewestFirst, after: None, limit }
}

/// Every event `query` selects, page after page of `query.limit`.
async fn every_page(store: &dyn Store, mut query: AuditQuery) -> Vec<RecordedAuditEvent> {
    let mut seen = Vec::new();
    loop {
        assert!(seen.len() < 10_000, "paging does not end: pages repeat events");
        let page = store.audit_page(&query).await.unwrap();
        assert!(page.len() <= query.limit as usize);
        let Some(last) = page.last() else { return seen };
        query.after = Some(last.position());
        seen.extend(page);
    }
}

fn attribution(world: &mut World, request: &str) -> Attribution {
    Attribution {
        token_id: Some(ServiceTokenId::generate(world.now, &mut world.rng)),
        request_id: Some(RequestId::parse(request).unwrap()),
    }
}

/// `count` API keys created in `workspace`, one microsecond apart, through
/// `store` (attributed or not): `count` events.
async fn api_keys(store: &dyn Mutations, world: &mut World, workspace: &Workspace, count: usize) {
    for _ in 0..count {
        world.tick(1);
        store.create_api_key(&world.api_key(workspace, "server")).await.unwrap();
    }
}

pub async fn audit_events_carry_their_attribution_and_filter(db: &TestDb) {
    let (store, mut world, organisation, [alpha, beta]) = acme(db, 60, ["alpha", "beta"]).await;
    let by_token = attribution(&mut world, "req:0001.a_b-c");
    api_keys(&Attributed::new(&*store, by_token.clone()), &mut world, &alpha, 3).await;
    let between = world.tick(1);
    api_keys(&*store, &mut world, &beta, 2).await;
    let key = world.api_key(&beta, "target");
    store.create_api_key(&key).await.unwrap();
    store.delete_api_key(&beta.uid, &key.id, &world.actor.clone(), world.tick(1)).await.unwrap();

    // Everything: organisation, two workspaces, 3 + 2 + 1 keys, one delete.
    let all = store.audit_page(&newest(AuditFilter::organisation(organisation.id.clone()), 100)).await.unwrap();
    assert_eq!(all.len(), 10);
    let positions: Vec<AuditPosition> = all.iter().map(RecordedAuditEvent::position).collect();
    assert!(positions.windows(2).all(|pair| pair[0] > pair[1]), "not newest first: {positions:?}");
    assert_eq!(all[0].event.action, AuditAction::ApiKeyDeleted);
    assert_eq!(all.last().unwrap().event.action, AuditAction::OrganisationCreated);

    // Attribution reads back; the unattributed (CLI) changes have none.
    let attributed: Vec<_> = all.iter().filter(|recorded| recorded.event.token_id.is_some()).collect();
    assert_eq!(attributed.len(), 3);
    for recorded in &attributed {
        assert_eq!(recorded.event.token_id, by_token.token_id);
        assert_eq!(recorded.event.request_id, by_token.request_id);
        assert_eq!(recorded.event.workspace.as_ref(), Some(&alpha.uid));
        assert_eq!(recorded.workspace_slug.as_ref().map(|slug| slug.as_str()), Some("alpha"));
    }
    assert!(all.iter().filter(|recorded| recorded.event.token_id.is_none()).all(|r| r.event.request_id.is_none()));

    let select = |change: &dyn Fn(&mut AuditFilter)| {
        let mut filter = AuditFilter::organisation(organisation.id.clone());
        change(&mut filter);
        newest(filter, 100)
    };
    let count = async |query: AuditQuery| store.audit_page(&query).await.unwrap();
    let in_beta = count(select(&|filter| filter.workspace = Some(beta.uid.clone()))).await;
    // beta's creation, two keys, the target and its delete.
    assert_eq!(in_beta.len(), 5);
    assert!(in_beta.iter().all(|recorded| recorded.event.workspace.as_ref() == Some(&beta.uid)));
    let generated = count(select(&|filter| filter.action = Some(AuditAction::ApiKeyGenerated))).await;
    assert_eq!(generated.len(), 6);
    let on_target = count(select(&|filter| filter.target_id = Some(key.id.to_string()))).await;
    let actions: Vec<AuditAction> = on_target.iter().map(|recorded| recorded.event.action).collect();
    assert_eq!(actions, [AuditAction::ApiKeyDeleted, AuditAction::ApiKeyGenerated]);
    let before = count(select(&|filter| filter.until = Some(between))).await;
    let since = count(select(&|filter| filter.since = Some(between))).await;
    assert_eq!((before.len(), since.len()), (6, 4));
    let combined = count(select(&|filter| {
        filter.since = Some(between);
        filter.workspace = Some(beta.uid.clone());
        filter.action = Some(AuditAction::ApiKeyGenerated);
    }))
    .await;
    assert_eq!(combined.len(), 3);
    let nothing = count(select(&|filter| filter.target_id = Some("ws_apik_nothing".to_owned()))).await;
    assert!(nothing.is_empty());

    // Pages of 3, either way, are the whole list, each event once.
    let paged = every_page(&*store, newest(AuditFilter::organisation(organisation.id.clone()), 3)).await;
    assert_eq!(paged, all);
    let mut oldest = newest(AuditFilter::organisation(organisation.id.clone()), 4);
    oldest.order = AuditOrder::OldestFirst;
    let mut reversed = every_page(&*store, oldest).await;
    reversed.reverse();
    assert_eq!(reversed, all);

    // Another organisation's events are not in this one's trail.
    let other = world.stored_organisation(&*store, "globex").await;
    assert_eq!(store.audit_page(&newest(AuditFilter::organisation(other.id.clone()), 100)).await.unwrap().len(), 1);
    assert_eq!(store.audit_events(&organisation.id, 100).await.unwrap().len(), 10);
}

/// Events at the same instant are ordered by id, and a page boundary
/// between them loses none.
pub async fn audit_ties_of_at_are_paged_by_id(db: &TestDb) {
    let (store, mut world, organisation, [alpha]) = acme(db, 61, ["alpha"]).await;
    world.tick(1);
    for _ in 0..5 {
        // Without a tick: five events at one instant.
        store.create_api_key(&world.api_key(&alpha, "same")).await.unwrap();
    }
    let all = store.audit_page(&newest(AuditFilter::organisation(organisation.id.clone()), 100)).await.unwrap();
    assert_eq!(all.len(), 7);
    assert!(all[..5].iter().all(|recorded| recorded.event.at == world.now));
    for limit in 1..=3 {
        let paged = every_page(&*store, newest(AuditFilter::organisation(organisation.id.clone()), limit)).await;
        assert_eq!(paged, all, "pages of {limit}");
    }
}

/// One task inserts events without pause while another pages through the
/// trail, both ways: every event that existed when paging began is seen
/// exactly once, nothing is seen twice, and the order never goes back.
pub async fn audit_pages_stay_exact_under_concurrent_inserts(db: &TestDb) {
    let (store, mut world, organisation, [alpha]) = acme(db, 62, ["alpha"]).await;
    api_keys(&*store, &mut world, &alpha, 60).await;
    let existing: HashSet<i64> = every_page(&*store, newest(AuditFilter::organisation(organisation.id.clone()), 100))
        .await
        .iter()
        .map(|recorded| recorded.id)
        .collect();
    assert_eq!(existing.len(), 62);

    for (seed, order) in [(63, AuditOrder::NewestFirst), (64, AuditOrder::OldestFirst)] {
        let (inserted, mut progress) = tokio::sync::watch::channel(0_usize);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, stop, alpha) = (db.store().await, stop.clone(), alpha.clone());
            let mut world = World::new(seed);
            world.now = OffsetDateTime::now_utc();
            tokio::spawn(async move {
                let mut count = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    world.tick(1);
                    store.create_api_key(&world.api_key(&alpha, "concurrent")).await.unwrap();
                    count += 1;
                    inserted.send_replace(count);
                }
                count
            })
        };
        let mut query = newest(AuditFilter::organisation(organisation.id.clone()), 7);
        query.order = order;
        let mut seen: Vec<RecordedAuditEvent> = Vec::new();
        loop {
            // At least one insert between two pages, whatever the scheduler does.
            progress.borrow_and_update();
            progress.changed().await.unwrap();
            let page = store.audit_page(&query).await.unwrap();
            let done = page.len() < 7 || existing.iter().all(|id| seen.iter().any(|recorded| recorded.id == *id));
            if let Some(last) = page.last() {
                query.after = Some(last.position());
            }
            seen.extend(page);
            if done {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer.await.unwrap();
        assert!(written > seen.len() / 7, "the writer did not run while paging ({written} inserts)");
        let ids: Vec<i64> = seen.iter().map(|recorded| recorded.id).collect();
        let unique: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{order:?}: an event was seen twice");
        assert!(existing.is_subset(&unique), "{order:?}: an event was skipped");
        let positions: Vec<AuditPosition> = seen.iter().map(RecordedAuditEvent::position).collect();
        let ordered = match order {
            AuditOrder::NewestFirst => positions.windows(2).all(|pair| pair[0] > pair[1]),
            AuditOrder::OldestFirst => positions.windows(2).all(|pair| pair[0] < pair[1]),
        };
        assert!(ordered, "{order:?}: the order went back");
    }
}

/// Hand-written SQL cannot rewrite or remove the trail: `UPDATE` is refused
/// always, `DELETE` outside a prune (and `TRUNCATE` on PostgreSQL), even
/// right after a prune ran.
pub async fn audit_events_are_append_only_in_the_database(db: &TestDb) {
    let (store, mut world, organisation, [alpha]) = acme(db, 66, ["alpha"]).await;
    api_keys(&*store, &mut world, &alpha, 3).await;
    let count = async || store.audit_events(&organisation.id, 1000).await.unwrap().len();
    assert_eq!(count().await, 5);
    let refused = [
        "UPDATE audit_events SET action = 'api_key.deleted'",
        "UPDATE audit_events SET actor_name = NULL WHERE action = 'api_key.generated'",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE action = 'api_key.generated'",
    ];
    let check = async |when: &str| {
        for statement in refused {
            let result = db.execute(statement, &[]).await;
            let refusal = result.expect_err(&format!("{when}: {statement} went through"));
            assert!(refusal.contains("append-only"), "{when}: {statement}: {refusal}");
        }
        if db.kind == Kind::Postgres {
            let refusal = db.execute("TRUNCATE audit_events", &[]).await.expect_err("TRUNCATE went through");
            assert!(refusal.contains("append-only"), "{refusal}");
        }
    };
    check("before a prune").await;
    assert_eq!(count().await, 5);
    // A prune deletes through the one door, and closes it again.
    let pruned = store.prune_audit_events(&organisation.id, world.tick(1), world.tick(1)).await.unwrap();
    assert_eq!(pruned, 5);
    store.create_api_key(&world.api_key(&alpha, "after")).await.unwrap();
    check("after a prune").await;
    assert_eq!(count().await, 2);
}

pub async fn audit_prune_deletes_older_events_and_records_itself(db: &TestDb) {
    let (store, mut world, organisation, [alpha]) = acme(db, 65, ["alpha"]).await;
    let other = world.stored_organisation(&*store, "globex").await;
    let [theirs] = world.stored_workspaces(&*store, &other, ["theirs"]).await;
    api_keys(&*store, &mut world, &alpha, 4).await;
    let cut = world.tick(1);
    api_keys(&*store, &mut world, &alpha, 3).await;
    api_keys(&*store, &mut world, &theirs, 2).await;
    let before = store.audit_events(&organisation.id, 1000).await.unwrap();
    let (older, newer): (Vec<_>, Vec<_>) = before.iter().cloned().partition(|event| event.at < cut);
    assert_eq!((older.len(), newer.len()), (6, 3));
    let theirs_before = store.audit_events(&other.id, 1000).await.unwrap();

    let now = world.tick(1);
    let by_cli = store.prune_audit_events(&organisation.id, cut, now).await.unwrap();
    assert_eq!(by_cli, 6);
    let after = store.audit_events(&organisation.id, 1000).await.unwrap();
    assert_eq!(after[1..], newer[..], "the newer events are kept as they were");
    let pruned = &after[0];
    assert_eq!(pruned.action, AuditAction::AuditPruned);
    assert_eq!((pruned.target_id.as_str(), pruned.at), (organisation.id.as_str(), now));
    assert_eq!((pruned.actor.as_ref(), pruned.workspace.as_ref(), pruned.token_id.as_ref()), (None, None, None));
    assert_eq!(store.audit_events(&other.id, 1000).await.unwrap(), theirs_before, "another organisation's trail");

    // A cut in the future takes everything but the prune's own event.
    let everything = store.prune_audit_events(&organisation.id, now + Duration::days(1), world.tick(1)).await.unwrap();
    assert_eq!(everything, 4);
    let left = store.audit_events(&organisation.id, 1000).await.unwrap();
    assert_eq!(left.iter().map(|event| event.action).collect::<Vec<_>>(), [AuditAction::AuditPruned]);
    // Nothing to prune still records that a prune ran.
    assert_eq!(store.prune_audit_events(&organisation.id, cut, world.tick(1)).await.unwrap(), 0);
    assert_eq!(store.audit_events(&organisation.id, 1000).await.unwrap().len(), 2);
}
