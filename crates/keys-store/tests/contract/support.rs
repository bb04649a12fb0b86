//! The harness of the contract suite: a fresh database per test on either
//! backend and a deterministic world to fill it with (both from
//! keys-testkit, re-exported here under the names the tests use), and the
//! assertions on store refusals.

use keys_core::CoreError;
use keys_store::{Conflict, StoreError, StoreResult};
pub use keys_testkit::{name_of, Kind, TestDb, World, LONG_TTL};

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
