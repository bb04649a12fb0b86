//! Metering at verification: the rate limits and credits a key or an
//! identity carries, the state of their counters, and [`decide`], the one
//! decision that admits a verification or refuses it as `rate_limited` or
//! `usage_exceeded` (docs/METERING.md).
//!
//! Configuration and state are apart. A [`Meter`] is what a key or an
//! identity is configured with (its [`RateLimits`], and whether it spends
//! credits and how they refill); the counters are what verifications
//! change: one [`RateLimitState`] per limit and one [`CreditBalance`] per
//! metered subject, keyed by [`MeterSubject`], handed to [`decide`] through
//! [`MeterCounters`]. [`decide`] changes nothing: it returns the counters'
//! next states inside [`Decision::Admit`] only, so a refused verification
//! cannot change a counter, whatever the caller does.

mod credits;
mod decision;
mod pool;
mod ratelimit;

use std::collections::BTreeMap;

pub use credits::{CreditBalance, CreditRule, Credits, CreditsOperation, Refill, RefillInterval, MAX_CREDITS};
pub use decision::{decide, Decision, LimitReport, MeterReport};
pub use pool::{CreditPool, Reserved};
pub use ratelimit::{RateLimit, RateLimitCheck, RateLimitName, RateLimitOutcome, RateLimitState, RateLimits};

use crate::{ApiKeyId, CoreError, WorkspaceUid};

/// What one verification takes: from credits (0 – 1,000,000, default 1) or
/// from a rate limit (default 1 each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cost(u32);

impl Cost {
    /// Takes nothing: a look at a limit or a balance.
    pub const ZERO: Self = Self(0);
    pub const ONE: Self = Self(1);
    pub const MAX: u64 = 1_000_000;

    /// A verification's `cost`.
    pub fn parse(value: u64) -> Result<Self, CoreError> {
        Self::parse_field("cost", value)
    }

    fn parse_field(field: &'static str, value: u64) -> Result<Self, CoreError> {
        // At most a million: inside u32.
        ratelimit::in_range(field, value, 0, Self::MAX).map(|value| Self(value as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Cost {
    fn default() -> Self {
        Self::ONE
    }
}

/// The limits a verification names (`ratelimits: [{name, cost?}]`): each
/// name at most once, at most 32 (16 of the key's and 16 of its
/// identity's), each with the tokens it takes (default 1). A name neither
/// the key nor its identity defines is ignored by [`decide`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitRequests(Vec<(RateLimitName, Cost)>);

impl RateLimitRequests {
    pub const MAX: usize = 2 * RateLimits::MAX;

    pub fn parse<'a>(items: impl IntoIterator<Item = (&'a str, Option<u64>)>) -> Result<Self, CoreError> {
        let mut parsed: Vec<(RateLimitName, Cost)> = Vec::new();
        for (name, cost) in items {
            if parsed.len() == Self::MAX {
                return Err(CoreError::TooManyRateLimits { max: Self::MAX });
            }
            let name = RateLimitName::parse(name)?;
            if parsed.iter().any(|(other, _)| other == &name) {
                return Err(CoreError::DuplicateRateLimit { field: "ratelimits", name: name.as_str().to_owned() });
            }
            let cost = cost.map_or(Ok(Cost::ONE), |cost| Cost::parse_field("ratelimits.cost", cost))?;
            parsed.push((name, cost));
        }
        Ok(Self(parsed))
    }

    pub fn as_slice(&self) -> &[(RateLimitName, Cost)] {
        &self.0
    }

    /// The tokens a named limit takes, when the verification names it.
    pub fn cost_of(&self, name: &RateLimitName) -> Option<Cost> {
        self.0.iter().find(|(named, _)| named == name).map(|(_, cost)| *cost)
    }
}

/// What a verification asks of metering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterRequest {
    /// Spent from each balance that is set.
    pub cost: Cost,
    /// The limits applied besides the auto-applied ones, and the tokens
    /// each takes (an auto-applied limit named here takes its named cost).
    pub rate_limits: RateLimitRequests,
}

/// Whose counters a verification draws on: the identity of a counter, kept
/// apart from the key that happens to present it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MeterSubject {
    /// An API key and every key that replaced it by a roll: `root` is the
    /// id of the first key of that chain. A roll hands the subject on to
    /// the new key, so the old key, during its grace, draws on the same
    /// limits and balance as its successor, and rolling never resets them.
    ApiKey { root: ApiKeyId },
    /// The identity of the keys with this `external_id` (as
    /// `ExternalId::as_str` gives it) in this workspace.
    Identity { workspace: WorkspaceUid, external_id: String },
}

/// Which side of a verification a limit or a balance belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterOwner {
    Key,
    Identity,
}

/// One rate-limit counter: a limit of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub subject: MeterSubject,
    pub name: RateLimitName,
}

/// How a key or an identity is metered: its limits, and whether it spends
/// credits (`None`: unmetered) with their refill rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meter {
    pub rate_limits: RateLimits,
    pub credits: Option<CreditRule>,
}

/// A subject and how it is metered, as [`decide`] takes each side.
#[derive(Debug, Clone, Copy)]
pub struct Metered<'a> {
    pub subject: &'a MeterSubject,
    pub meter: &'a Meter,
}

/// Where [`decide`] reads the counters: in memory, a cache in front of the
/// store, or a replica's leases.
pub trait MeterCounters {
    /// The state of one limit's counter; `None` when it was never used or
    /// was dropped while full ([`RateLimitState::is_idle`]), which decide
    /// the same.
    fn rate_limit(&self, subject: &MeterSubject, name: &RateLimitName) -> Option<RateLimitState>;

    /// The balance of a metered subject. `None` for a subject whose
    /// [`Meter`] spends credits is read as an empty balance: a lost balance
    /// refuses, it never oversells.
    fn credits(&self, subject: &MeterSubject) -> Option<CreditBalance>;
}

/// The counters' next states, which the caller stores (only [`Decision::Admit`]
/// carries them). Each balance here is the one read, refreshed by a refill
/// due, less the verification's cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterUpdates {
    pub rate_limits: Vec<(CounterKey, RateLimitState)>,
    pub credits: Vec<(MeterSubject, CreditBalance)>,
}

/// Counters held in memory: what a single process (and the tests) decide
/// against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    subjects: BTreeMap<MeterSubject, SubjectCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SubjectCounters {
    credits: Option<CreditBalance>,
    rate_limits: BTreeMap<RateLimitName, RateLimitState>,
}

impl CounterSnapshot {
    /// Sets a subject's balance (when its credits are set or changed).
    pub fn set_credits(&mut self, subject: &MeterSubject, balance: CreditBalance) {
        self.subjects.entry(subject.clone()).or_default().credits = Some(balance);
    }

    /// Stores what an admitted verification changed.
    pub fn store(&mut self, updates: CounterUpdates) {
        for (key, state) in updates.rate_limits {
            self.subjects.entry(key.subject).or_default().rate_limits.insert(key.name, state);
        }
        for (subject, balance) in updates.credits {
            self.subjects.entry(subject).or_default().credits = Some(balance);
        }
    }
}

impl MeterCounters for CounterSnapshot {
    fn rate_limit(&self, subject: &MeterSubject, name: &RateLimitName) -> Option<RateLimitState> {
        self.subjects.get(subject)?.rate_limits.get(name).copied()
    }

    fn credits(&self, subject: &MeterSubject) -> Option<CreditBalance> {
        self.subjects.get(subject)?.credits
    }
}
