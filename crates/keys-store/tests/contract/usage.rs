//! Usage counts through the store (docs/API.md, Usage; SPEC 13): a batch
//! is added to its minute, hour and day buckets; batches add up, from one
//! store or two at once; a batch id already recorded adds nothing; a query
//! reads a workspace's totals, one key's or an owner's keys' counts over
//! `[since, until)`, newest bucket first, in pages that cover every row
//! once; a prune deletes only what is past each cutoff, in bounded rounds.

use std::collections::BTreeMap;
use std::sync::Arc;

use keys_core::usage::Granularity;
use keys_core::{ApiKey, ApiKeyProfile, ExternalId, Workspace};
use keys_store::{Store, UsageBatch, UsageCount, UsageOf, UsagePosition, UsagePruned, UsageQuery, UsageRow};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::support::{acme, name_of, TestDb, World};

/// The minute most counts here fall in: 2026-04-21 12:35 UTC.
const T: OffsetDateTime = datetime!(2026-04-21 12:35 UTC);

/// A window wide enough for every count here.
const EVER: (OffsetDateTime, OffsetDateTime) = (datetime!(2020-01-01 0:00 UTC), datetime!(2030-01-01 0:00 UTC));

/// One count of `key` (of `workspace`) answered `outcome` in the minute of `at`.
fn count(workspace: &Workspace, key: &str, outcome: &'static str, at: OffsetDateTime, count: u64) -> UsageCount {
    UsageCount {
        workspace: workspace.uid.as_str().to_owned(),
        key_id: key.to_owned(),
        outcome,
        minute: Granularity::Minute.bucket(at),
        count,
    }
}

fn batch(id: &str, counts: Vec<UsageCount>) -> UsageBatch {
    UsageBatch { id: id.to_owned(), counts, written_at: T }
}

fn query(workspace: &Workspace, of: UsageOf, granularity: Granularity) -> UsageQuery {
    UsageQuery {
        workspace: workspace.uid.clone(),
        of,
        granularity,
        since: EVER.0,
        until: EVER.1,
        after: None,
        limit: 10_000,
    }
}

/// Every row of `query` (one page of at most 10,000).
async fn rows(store: &dyn Store, query: &UsageQuery) -> Vec<UsageRow> {
    store.usage_page(query).await.unwrap()
}

/// Rows as (bucket, key id, outcome, count), for short expectations.
fn flat(rows: &[UsageRow]) -> Vec<(OffsetDateTime, Option<&str>, &str, u64)> {
    rows.iter().map(|row| (row.at, row.key_id.as_deref(), row.outcome.as_str(), row.count)).collect()
}

/// A stored API key of `workspace` named `name`, owned by `external_id`.
async fn key_of(
    store: &dyn Store,
    world: &mut World,
    workspace: &Workspace,
    name: &str,
    owner: Option<&str>,
) -> ApiKey {
    world.tick(10);
    let profile = ApiKeyProfile {
        external_id: owner.map(|owner| ExternalId::parse(owner).unwrap()),
        ..ApiKeyProfile::named(name_of(name))
    };
    let key = world.api_key_with(workspace, profile);
    store.create_api_key(&key).await.unwrap();
    key
}

/// Every row of `of` at each granularity, minutes first.
async fn every_granularity(store: &dyn Store, workspace: &Workspace, of: UsageOf) -> Vec<UsageRow> {
    let mut all = Vec::new();
    for granularity in Granularity::ALL {
        all.extend(rows(store, &query(workspace, of.clone(), granularity)).await);
    }
    all
}

/// Asserts that `rows` are in the order of a query: newest bucket first,
/// then key id, then outcome, each row once.
#[track_caller]
fn assert_ordered(rows: &[UsageRow]) {
    for pair in rows.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let ahead =
            a.at > b.at || (a.at == b.at && (a.key_id < b.key_id || (a.key_id == b.key_id && a.outcome < b.outcome)));
        assert!(ahead, "out of order or repeated: {a:?} then {b:?}");
    }
}

/// One batch goes to its minute, hour and day buckets; a second batch adds
/// to the same rows; the first batch's id again adds nothing and says so,
/// even with other counts in it; the same counts under a new id add again.
pub async fn usage_batches_add_to_minute_hour_and_day_buckets_once_each(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 90, ["alpha"]).await;
    let key = key_of(&*store, &mut world, &alpha, "counted", None).await;
    let id = key.id.as_str();
    let next_day = datetime!(2026-04-22 00:05 UTC);
    let first = batch(
        "p1-0",
        vec![
            count(&alpha, id, "valid", T + Duration::seconds(7), 3),
            count(&alpha, id, "valid", datetime!(2026-04-21 12:59:59 UTC), 2),
            count(&alpha, id, "key_disabled", T, 1),
            count(&alpha, id, "valid", datetime!(2026-04-21 13:10 UTC), 4),
            count(&alpha, id, "valid", next_day, 5),
        ],
    );
    assert!(store.record_usage(&first).await.unwrap(), "a new batch is written");

    let of = || UsageOf::Key(id.to_owned());
    let minutes = rows(&*store, &query(&alpha, of(), Granularity::Minute)).await;
    let expected = vec![
        (next_day, Some(id), "valid", 5),
        (datetime!(2026-04-21 13:10 UTC), Some(id), "valid", 4),
        (datetime!(2026-04-21 12:59 UTC), Some(id), "valid", 2),
        (T, Some(id), "key_disabled", 1),
        (T, Some(id), "valid", 3),
    ];
    assert_eq!(flat(&minutes), expected);
    let hours = rows(&*store, &query(&alpha, of(), Granularity::Hour)).await;
    let expected = vec![
        (datetime!(2026-04-22 00:00 UTC), Some(id), "valid", 5),
        (datetime!(2026-04-21 13:00 UTC), Some(id), "valid", 4),
        (datetime!(2026-04-21 12:00 UTC), Some(id), "key_disabled", 1),
        (datetime!(2026-04-21 12:00 UTC), Some(id), "valid", 5),
    ];
    assert_eq!(flat(&hours), expected);
    let days = rows(&*store, &query(&alpha, of(), Granularity::Day)).await;
    let day_one = datetime!(2026-04-21 00:00 UTC);
    let day_two = datetime!(2026-04-22 00:00 UTC);
    assert_eq!(
        flat(&days),
        vec![(day_two, Some(id), "valid", 5), (day_one, Some(id), "key_disabled", 1), (day_one, Some(id), "valid", 9)]
    );

    // A second batch adds to the rows the first made.
    let second = batch("p1-1", vec![count(&alpha, id, "valid", T, 10), count(&alpha, id, "key_disabled", T, 2)]);
    assert!(store.record_usage(&second).await.unwrap());
    let sums = |rows: Vec<UsageRow>, at: OffsetDateTime| {
        rows.into_iter().filter(|row| row.at == at).map(|row| (row.outcome, row.count)).collect::<Vec<_>>()
    };
    let valid_and_disabled = |valid, disabled| vec![("key_disabled".to_owned(), disabled), ("valid".to_owned(), valid)];
    let minutes = rows(&*store, &query(&alpha, of(), Granularity::Minute)).await;
    assert_eq!(sums(minutes, T), valid_and_disabled(13, 3));
    let hours = rows(&*store, &query(&alpha, of(), Granularity::Hour)).await;
    assert_eq!(sums(hours, datetime!(2026-04-21 12:00 UTC)), valid_and_disabled(15, 3));
    let days = rows(&*store, &query(&alpha, of(), Granularity::Day)).await;
    assert_eq!(sums(days, day_one), valid_and_disabled(19, 3));

    // A retry of either batch (an answer lost) adds nothing, whatever it
    // holds: the id decides.
    let before = every_granularity(&*store, &alpha, of()).await;
    assert!(!store.record_usage(&first).await.unwrap(), "the first batch again");
    assert!(!store.record_usage(&second).await.unwrap(), "the second batch again");
    let altered = batch("p1-0", vec![count(&alpha, id, "valid", T, 1000)]);
    assert!(!store.record_usage(&altered).await.unwrap(), "another batch under a recorded id");
    assert_eq!(every_granularity(&*store, &alpha, of()).await, before, "nothing was added");
    // Another store (another process) sees the ids as recorded too.
    let other = db.store().await;
    assert!(!other.record_usage(&first).await.unwrap(), "the first batch through another store");
    assert_eq!(every_granularity(&*store, &alpha, of()).await, before);

    // The same counts under a new id are new counts.
    let again = batch("p1-2", second.counts.clone());
    assert!(store.record_usage(&again).await.unwrap());
    let minutes = rows(&*store, &query(&alpha, of(), Granularity::Minute)).await;
    assert_eq!(sums(minutes, T), valid_and_disabled(23, 5));

    // One batch naming one row twice adds both.
    let twice =
        batch("p1-3", vec![count(&alpha, id, "valid", T, 1), count(&alpha, id, "valid", T + Duration::seconds(30), 1)]);
    assert!(store.record_usage(&twice).await.unwrap());
    let minutes = rows(&*store, &query(&alpha, of(), Granularity::Minute)).await;
    assert_eq!(sums(minutes, T), valid_and_disabled(25, 5));
}

/// The workspace's totals sum every key of the workspace per bucket and
/// outcome (no key id) and nothing of another workspace or of an
/// organisation key; `Key` reads that key of this workspace only;
/// `ExternalId` reads each key of this workspace with that owner.
pub async fn usage_totals_and_selections_read_the_right_rows(db: &TestDb) {
    let (store, mut world, _, [alpha, beta]) = acme(db, 91, ["alpha", "beta"]).await;
    let first = key_of(&*store, &mut world, &alpha, "first", Some("customer-1")).await;
    let second = key_of(&*store, &mut world, &alpha, "second", Some("customer-1")).await;
    let third = key_of(&*store, &mut world, &alpha, "third", Some("customer-2")).await;
    let unowned = key_of(&*store, &mut world, &alpha, "unowned", None).await;
    let theirs = key_of(&*store, &mut world, &beta, "theirs", Some("customer-1")).await;
    let (a, b, c, u, d) =
        (first.id.as_str(), second.id.as_str(), third.id.as_str(), unowned.id.as_str(), theirs.id.as_str());
    let later = T + Duration::minutes(70);
    let counts = vec![
        count(&alpha, a, "valid", T, 1),
        count(&alpha, b, "valid", T, 2),
        count(&alpha, c, "valid", T, 4),
        count(&alpha, u, "valid", T, 8),
        count(&alpha, a, "insufficient_scope", T, 16),
        count(&alpha, c, "insufficient_scope", T, 32),
        count(&alpha, b, "valid", later, 64),
        count(&alpha, c, "key_disabled", later, 128),
        count(&beta, d, "valid", T, 256),
        count(&beta, d, "key_disabled", later, 512),
        // An organisation key belongs to no workspace.
        UsageCount {
            workspace: String::new(),
            key_id: "org_key_1".to_owned(),
            outcome: "valid",
            minute: T,
            count: 1024,
        },
    ];
    assert!(store.record_usage(&batch("mixed", counts)).await.unwrap());

    let hour = datetime!(2026-04-21 12:00 UTC);
    let next_hour = datetime!(2026-04-21 13:00 UTC);
    let totals = rows(&*store, &query(&alpha, UsageOf::Workspace, Granularity::Hour)).await;
    assert_eq!(
        flat(&totals),
        vec![
            (next_hour, None, "key_disabled", 128),
            (next_hour, None, "valid", 64),
            (hour, None, "insufficient_scope", 48),
            (hour, None, "valid", 15),
        ],
        "alpha's totals"
    );
    let minute_totals = rows(&*store, &query(&alpha, UsageOf::Workspace, Granularity::Minute)).await;
    assert_eq!(minute_totals.iter().map(|row| row.count).sum::<u64>(), 255);
    assert!(minute_totals.iter().all(|row| row.key_id.is_none()), "{minute_totals:?}");
    let day_totals = rows(&*store, &query(&alpha, UsageOf::Workspace, Granularity::Day)).await;
    let day = datetime!(2026-04-21 00:00 UTC);
    assert_eq!(
        flat(&day_totals),
        vec![(day, None, "insufficient_scope", 48), (day, None, "key_disabled", 128), (day, None, "valid", 79)]
    );
    let beta_totals = rows(&*store, &query(&beta, UsageOf::Workspace, Granularity::Day)).await;
    assert_eq!(flat(&beta_totals), vec![(day, None, "key_disabled", 512), (day, None, "valid", 256)]);

    // One key: its rows only, and only in its own workspace.
    let of_c = rows(&*store, &query(&alpha, UsageOf::Key(c.to_owned()), Granularity::Hour)).await;
    assert_eq!(
        flat(&of_c),
        vec![
            (next_hour, Some(c), "key_disabled", 128),
            (hour, Some(c), "insufficient_scope", 32),
            (hour, Some(c), "valid", 4)
        ]
    );
    let foreign = rows(&*store, &query(&alpha, UsageOf::Key(d.to_owned()), Granularity::Hour)).await;
    assert_eq!(foreign, [], "beta's key through alpha");
    let missing = rows(&*store, &query(&alpha, UsageOf::Key("ws_apik_missing".to_owned()), Granularity::Hour)).await;
    assert_eq!(missing, []);

    // An owner: each of its keys in this workspace, row by row.
    let owner = rows(&*store, &query(&alpha, UsageOf::ExternalId("customer-1".to_owned()), Granularity::Hour)).await;
    let mut expected = vec![
        (next_hour, Some(b), "valid", 64),
        (hour, Some(a), "insufficient_scope", 16),
        (hour, Some(a), "valid", 1),
        (hour, Some(b), "valid", 2),
    ];
    // Within a bucket the rows go by key id.
    expected[1..].sort_by_key(|row| (row.1, row.2));
    assert_eq!(flat(&owner), expected, "customer-1 in alpha");
    assert_ordered(&owner);
    let their_owner =
        rows(&*store, &query(&beta, UsageOf::ExternalId("customer-1".to_owned()), Granularity::Hour)).await;
    assert_eq!(flat(&their_owner), vec![(next_hour, Some(d), "key_disabled", 512), (hour, Some(d), "valid", 256)]);
    let nobody = rows(&*store, &query(&alpha, UsageOf::ExternalId("nobody".to_owned()), Granularity::Hour)).await;
    assert_eq!(nobody, []);
}

/// The window is `[since, until)`: a bucket starting at `since` is in, one
/// starting at `until` is out, at every granularity.
pub async fn usage_windows_include_since_and_exclude_until(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 92, ["alpha"]).await;
    let key = key_of(&*store, &mut world, &alpha, "windowed", None).await;
    let id = key.id.as_str();
    let start = datetime!(2026-04-21 23:58 UTC);
    // One count a minute for five minutes: 23:58 … 00:02 of the next day.
    let counts =
        (0..5).map(|minute| count(&alpha, id, "valid", start + Duration::minutes(minute), 1 << minute)).collect();
    assert!(store.record_usage(&batch("windowed", counts)).await.unwrap());

    let window = |granularity, since, until| UsageQuery {
        since,
        until,
        ..query(&alpha, UsageOf::Key(id.to_owned()), granularity)
    };
    let counts_of = |rows: Vec<UsageRow>| rows.into_iter().map(|row| row.count).collect::<Vec<_>>();
    let at = |minutes| start + Duration::minutes(minutes);
    assert_eq!(counts_of(rows(&*store, &window(Granularity::Minute, at(1), at(3))).await), [4, 2]);
    assert_eq!(counts_of(rows(&*store, &window(Granularity::Minute, at(0), at(5))).await), [16, 8, 4, 2, 1]);
    // An instant inside a bucket: the bucket starts before `since`, so it
    // is out; `until` inside a bucket keeps the bucket that starts before.
    let inside = |minutes| at(minutes) + Duration::seconds(30);
    assert_eq!(counts_of(rows(&*store, &window(Granularity::Minute, inside(1), inside(3))).await), [8, 4]);
    assert_eq!(counts_of(rows(&*store, &window(Granularity::Minute, at(2), at(2) + Duration::SECOND)).await), [4]);
    assert_eq!(counts_of(rows(&*store, &window(Granularity::Minute, at(5), at(9))).await), Vec::<u64>::new());

    let midnight = datetime!(2026-04-22 00:00 UTC);
    let hours = |since, until| window(Granularity::Hour, since, until);
    assert_eq!(counts_of(rows(&*store, &hours(midnight, midnight + Duration::HOUR)).await), [28]);
    assert_eq!(counts_of(rows(&*store, &hours(midnight - Duration::HOUR, midnight)).await), [3]);
    assert_eq!(counts_of(rows(&*store, &hours(midnight - Duration::HOUR, midnight + Duration::HOUR)).await), [28, 3]);
    let days = |since, until| window(Granularity::Day, since, until);
    assert_eq!(counts_of(rows(&*store, &days(midnight, midnight + Duration::DAY)).await), [28]);
    assert_eq!(counts_of(rows(&*store, &days(midnight - Duration::DAY, midnight)).await), [3]);
    assert_eq!(counts_of(rows(&*store, &days(midnight - Duration::DAY, midnight + Duration::DAY)).await), [28, 3]);
}

/// Pages of `limit` rows, each after the last row of the one before, cover
/// every row of the query once, newest bucket first, then key id, then
/// outcome: for an owner's keys and for the workspace's totals, at every
/// limit from 1 past the number of rows.
pub async fn usage_pages_cover_every_row_once_newest_first(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 93, ["alpha"]).await;
    let mut keys = Vec::new();
    for name in ["one", "two", "three"] {
        keys.push(key_of(&*store, &mut world, &alpha, name, Some("owner")).await);
    }
    let outcomes = ["valid", "key_disabled", "insufficient_scope"];
    let mut counts = Vec::new();
    for minute in 0..7 {
        for (index, key) in keys.iter().enumerate() {
            // Not every key has every outcome in every minute.
            for outcome in outcomes.iter().skip((minute + index) % 2) {
                counts.push(count(
                    &alpha,
                    key.id.as_str(),
                    outcome,
                    T + Duration::minutes(minute as i64),
                    1 + minute as u64,
                ));
            }
        }
    }
    let total: u64 = counts.iter().map(|count| count.count).sum();
    assert!(store.record_usage(&batch("paged", counts)).await.unwrap());

    for of in [UsageOf::ExternalId("owner".to_owned()), UsageOf::Workspace] {
        let whole = rows(&*store, &query(&alpha, of.clone(), Granularity::Minute)).await;
        assert_ordered(&whole);
        assert_eq!(whole.iter().map(|row| row.count).sum::<u64>(), total, "{of:?}");
        assert_eq!(whole.first().map(|row| row.at), Some(T + Duration::minutes(6)), "newest first");
        for limit in [1, 2, 3, 5, 7, whole.len() as u32 - 1, whole.len() as u32, whole.len() as u32 + 1] {
            let mut paged: Vec<UsageRow> = Vec::new();
            let mut after: Option<UsagePosition> = None;
            for _ in 0..=whole.len() {
                let page_query =
                    UsageQuery { after: after.clone(), limit, ..query(&alpha, of.clone(), Granularity::Minute) };
                let page = rows(&*store, &page_query).await;
                assert!(page.len() <= limit as usize, "{of:?} limit {limit}: {} rows", page.len());
                let Some(last) = page.last() else { break };
                after = Some(last.position());
                let full = page.len() == limit as usize;
                paged.extend(page);
                if !full {
                    break;
                }
            }
            assert_eq!(paged, whole, "{of:?}, pages of {limit}");
        }
    }
}

/// Two stores (two replicas) writing batches into the same rows at once:
/// every batch is added once, and the sums are exact.
pub async fn usage_batches_from_two_stores_at_once_add_up(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 94, ["alpha"]).await;
    let mut ids = Vec::new();
    for name in ["shared-1", "shared-2", "shared-3"] {
        ids.push(key_of(&*store, &mut world, &alpha, name, None).await.id.as_str().to_owned());
    }
    let stores = [db.store().await, db.store().await];
    let mut tasks = tokio::task::JoinSet::new();
    for (replica, replica_store) in stores.iter().enumerate() {
        for round in 0..8 {
            let (replica_store, alpha, ids) = (Arc::clone(replica_store), alpha.clone(), ids.clone());
            tasks.spawn(async move {
                // The keys in another order on each side: rows locked in
                // different orders must still not deadlock.
                let mut ids = ids;
                if replica == 1 {
                    ids.reverse();
                }
                let counts = ids
                    .iter()
                    .flat_map(|id| {
                        [count(&alpha, id, "valid", T, 1 + replica as u64), count(&alpha, id, "key_disabled", T, 1)]
                    })
                    .collect();
                let written = replica_store.record_usage(&batch(&format!("replica-{replica}-{round}"), counts)).await;
                assert!(written.unwrap(), "replica {replica} round {round}");
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
    }
    let totals = rows(&*store, &query(&alpha, UsageOf::Workspace, Granularity::Day)).await;
    let day = datetime!(2026-04-21 00:00 UTC);
    // Per key: 8 × 1 valid from the first, 8 × 2 from the second; 16 refused.
    assert_eq!(flat(&totals), vec![(day, None, "key_disabled", 3 * 16), (day, None, "valid", 3 * 24)]);
    for id in &ids {
        let minutes = rows(&*store, &query(&alpha, UsageOf::Key(id.clone()), Granularity::Minute)).await;
        assert_eq!(
            flat(&minutes),
            vec![(T, Some(id.as_str()), "key_disabled", 16), (T, Some(id.as_str()), "valid", 24)]
        );
    }
}

/// How many rows each granularity holds for `workspace`.
async fn row_counts(store: &dyn Store, workspace: &Workspace) -> BTreeMap<Granularity, Vec<OffsetDateTime>> {
    let mut held = BTreeMap::new();
    for granularity in Granularity::ALL {
        let mut buckets: Vec<_> = rows(store, &query(workspace, UsageOf::Workspace, granularity))
            .await
            .into_iter()
            .map(|row| row.at)
            .collect();
        buckets.reverse();
        held.insert(granularity, buckets);
    }
    held
}

/// A prune deletes the buckets of each granularity that start before its
/// cutoff (a bucket starting at the cutoff stays), at most `limit` rows of
/// a granularity per call, nothing of a granularity without a cutoff, and
/// the batch ids written before their cutoff (so such an id counts as new
/// again), at most `limit` of them per call.
pub async fn usage_prune_deletes_only_what_is_past_each_cutoff_in_bounded_rounds(db: &TestDb) {
    let (store, mut world, _, [alpha]) = acme(db, 95, ["alpha"]).await;
    let key = key_of(&*store, &mut world, &alpha, "old", None).await;
    let id = key.id.as_str();
    // One count at 10:00 … 10:05 on each of three days: per day 6 minute
    // rows, 1 hour row, 1 day row.
    let days = [datetime!(2026-04-01 10:00 UTC), datetime!(2026-04-02 10:00 UTC), datetime!(2026-04-03 10:00 UTC)];
    let mut counts = Vec::new();
    for day in days {
        for minute in 0..6 {
            counts.push(count(&alpha, id, "valid", day + Duration::minutes(minute), 1));
        }
    }
    assert!(store.record_usage(&batch("history", counts)).await.unwrap());
    let before = row_counts(&*store, &alpha).await;
    assert_eq!(before.values().map(Vec::len).collect::<Vec<_>>(), [18, 3, 3]);
    let long_ago = datetime!(2000-01-01 0:00 UTC);

    // Minutes before 04-02 10:03 (6 + 3 rows), two per call; 10:03 stays.
    let minute_cutoff = days[1] + Duration::minutes(3);
    let mut pruned_minutes = Vec::new();
    for _ in 0..10 {
        let pruned = store.prune_usage(&[(Granularity::Minute, minute_cutoff)], long_ago, 2).await.unwrap();
        assert!(pruned.counts <= 2, "{pruned:?}: more than the limit");
        assert_eq!(pruned.batches, 0, "no batch id is that old");
        pruned_minutes.push(pruned.counts);
        if pruned.counts == 0 {
            break;
        }
    }
    assert_eq!(pruned_minutes, [2, 2, 2, 2, 1, 0]);
    let after = row_counts(&*store, &alpha).await;
    let expected_minutes: Vec<_> =
        before[&Granularity::Minute].iter().copied().filter(|at| *at >= minute_cutoff).collect();
    assert_eq!(after[&Granularity::Minute], expected_minutes);
    assert_eq!(after[&Granularity::Minute].first(), Some(&minute_cutoff), "the bucket at the cutoff stays");
    assert_eq!(after[&Granularity::Hour], before[&Granularity::Hour], "hours untouched");
    assert_eq!(after[&Granularity::Day], before[&Granularity::Day], "days untouched");

    // Hours and days in one call: each up to the limit, the bucket at the
    // cutoff kept.
    let cutoffs = [(Granularity::Hour, days[2]), (Granularity::Day, days[1] - Duration::hours(10))];
    let pruned = store.prune_usage(&cutoffs, long_ago, 100).await.unwrap();
    assert_eq!(pruned, UsagePruned { counts: 2 + 1, batches: 0 });
    let after = row_counts(&*store, &alpha).await;
    assert_eq!(after[&Granularity::Hour], [days[2]]);
    assert_eq!(after[&Granularity::Day], [datetime!(2026-04-02 0:00 UTC), datetime!(2026-04-03 0:00 UTC)]);
    assert_eq!(after[&Granularity::Minute], expected_minutes, "minutes untouched");
    // The counts left are exactly what they were.
    let minutes = rows(&*store, &query(&alpha, UsageOf::Workspace, Granularity::Minute)).await;
    assert!(minutes.iter().all(|row| row.count == 1), "{minutes:?}");
    assert_eq!(
        store.prune_usage(&cutoffs, long_ago, 100).await.unwrap(),
        UsagePruned::default(),
        "nothing left to prune"
    );

    // Batch ids: written at three instants; those before the cutoff go,
    // at most `limit` per call, and an id pruned is new again.
    let other = key_of(&*store, &mut world, &alpha, "batched", None).await;
    let other_id = other.id.as_str();
    let written_at = [T - Duration::days(3), T - Duration::days(2), T - Duration::days(2), T - Duration::DAY];
    for (index, at) in written_at.iter().enumerate() {
        let counts = vec![count(&alpha, other_id, "valid", T, 1)];
        let written = UsageBatch { id: format!("dated-{index}"), counts, written_at: *at };
        assert!(store.record_usage(&written).await.unwrap());
    }
    let batch_cutoff = T - Duration::DAY;
    let first = store.prune_usage(&[], batch_cutoff, 2).await.unwrap();
    assert_eq!(first, UsagePruned { counts: 0, batches: 2 });
    // The batches written in `history` and earlier tests are at T: kept.
    let second = store.prune_usage(&[], batch_cutoff, 2).await.unwrap();
    assert_eq!(second, UsagePruned { counts: 0, batches: 1 });
    assert_eq!(store.prune_usage(&[], batch_cutoff, 2).await.unwrap(), UsagePruned::default());
    let retried = |index: usize| UsageBatch {
        id: format!("dated-{index}"),
        counts: vec![count(&alpha, other_id, "valid", T, 1)],
        written_at: T,
    };
    for index in 0..3 {
        assert!(store.record_usage(&retried(index)).await.unwrap(), "dated-{index} was pruned: new again");
    }
    assert!(!store.record_usage(&retried(3)).await.unwrap(), "dated-3 was written at the cutoff: kept");
    assert!(!store.record_usage(&batch("history", Vec::new())).await.unwrap(), "history is kept");
    let of_other = rows(&*store, &query(&alpha, UsageOf::Key(other_id.to_owned()), Granularity::Minute)).await;
    assert_eq!(flat(&of_other), vec![(T, Some(other_id), "valid", 4 + 3)]);
}
