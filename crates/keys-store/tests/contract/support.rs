//! The harness of the contract suite: a fresh database per test on either
//! backend and a deterministic world to fill it with (both from
//! keys-testkit, re-exported here under the names the tests use), and the
//! assertions on store refusals.

use std::sync::Arc;

use keys_core::{CoreError, Organisation, Workspace};
use keys_store::{Conflict, Store, StoreError, StoreResult};
pub use keys_testkit::{name_of, Kind, TestDb, World, LONG_TTL};

/// Where most tests start: a store on `db`, a world seeded with `seed`,
/// and in the store the organisation `acme` with a workspace per slug.
pub async fn acme<const N: usize>(
    db: &TestDb,
    seed: u64,
    slugs: [&str; N],
) -> (Arc<dyn Store>, World, Organisation, [Workspace; N]) {
    let store = db.store().await;
    let mut world = World::new(seed);
    let organisation = world.stored_organisation(&*store, "acme").await;
    let workspaces = world.stored_workspaces(&*store, &organisation, slugs).await;
    (store, world, organisation, workspaces)
}

/// The keys the listing tests start from, made with `make`: `first` and
/// `second` of `mine`, 10 µs apart, then `foreign` of `theirs` at the
/// instant of `second`.
pub fn first_second_foreign<Owner, Key>(
    world: &mut World,
    mine: &Owner,
    theirs: &Owner,
    make: impl Fn(&mut World, &Owner, &str) -> Key,
) -> [Key; 3] {
    world.tick(10);
    let first = make(world, mine, "first");
    world.tick(10);
    let second = make(world, mine, "second");
    let foreign = make(world, theirs, "foreign");
    [first, second, foreign]
}

/// A client error a store call is expected to fail with: a refusal of the
/// domain, something missing, or a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Refused(CoreError),
    NotFound(&'static str),
    Conflict(Conflict),
}

impl From<CoreError> for Expected {
    fn from(refusal: CoreError) -> Self {
        Self::Refused(refusal)
    }
}

impl From<Conflict> for Expected {
    fn from(conflict: Conflict) -> Self {
        Self::Conflict(conflict)
    }
}

/// The store's "not found" for `kind`.
pub fn not_found(kind: &'static str) -> Expected {
    Expected::NotFound(kind)
}

impl Expected {
    /// The client error `error` is, if it is one.
    pub fn of(error: &StoreError) -> Option<Self> {
        match error {
            StoreError::Refused(refusal) => Some(Self::Refused(refusal.clone())),
            StoreError::NotFound { kind } => Some(Self::NotFound(kind)),
            StoreError::Conflict(conflict) => Some(Self::Conflict(conflict.clone())),
            _ => None,
        }
    }
}

/// Asserts that a store call failed with the client error `expected`.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: StoreResult<T>, expected: impl Into<Expected>) {
    let expected = expected.into();
    match &result {
        Err(error) if Expected::of(error).as_ref() == Some(&expected) => {}
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}
