//! Counters shared by replicas (docs/METERING.md, Across replicas): a
//! balance that replicas reserve slices of ([`CreditPool`]) and a rate
//! limit's counter that they take batches of tokens from
//! ([`RateLimit::take_up_to`], [`RateLimit::give_back`]). Pure arithmetic:
//! the store keeps the numbers, in one row each, and applies these
//! functions under that row's lock.

use time::OffsetDateTime;

use super::credits::{CreditBalance, CreditRule, CreditsOperation, MAX_CREDITS};
use super::ratelimit::{RateLimit, RateLimitOutcome, RateLimitState};
use super::Cost;
use crate::CoreError;

/// A metered subject's balance as the database keeps it while replicas
/// hold slices of it:
///
/// - `unleased`: what no replica holds;
/// - `debt`: what a `decrement` could not take from `unleased`, to be
///   taken from the slices replicas hand back;
/// - `epoch`: bumped by whatever *sets* the balance (a `set`, a refill),
///   which voids every slice reserved before it: a slice handed back
///   under an older epoch is dropped, not added;
/// - `refilled_at`: the instant the balance was last refilled or set.
///
/// **Never oversold.** Every credit a replica spends was first taken out
/// of `unleased` by [`CreditPool::reserve`], which never takes more than
/// `unleased` holds; a hand-back only returns what was taken and not
/// spent, and pays the debt first. So across any number of replicas the
/// credits spent never exceed the credits granted: the starting balance,
/// the refills and sets (each replacing what was left) and the increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreditPool {
    unleased: u64,
    debt: u64,
    epoch: u64,
    refilled_at: OffsetDateTime,
}

/// A slice of a balance a replica reserved: spend at most `granted`, and
/// hand back what is left under `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub granted: u64,
    pub epoch: u64,
    /// When the balance was last refilled or set: a slice is spent only
    /// until the next refill instant after it.
    pub refilled_at: OffsetDateTime,
}

impl CreditPool {
    /// A new balance of `remaining` (a create, an identity's put).
    pub fn new(remaining: u64, now: OffsetDateTime) -> Self {
        Self { unleased: remaining.min(MAX_CREDITS), debt: 0, epoch: 0, refilled_at: now }
    }

    /// Rebuilds a pool read back from storage.
    pub fn restore(unleased: u64, debt: u64, epoch: u64, refilled_at: OffsetDateTime) -> Result<Self, CoreError> {
        if unleased > MAX_CREDITS || debt > MAX_CREDITS {
            return Err(CoreError::InconsistentRecord { kind: "credit balance", reason: "a part exceeds 10^12" });
        }
        Ok(Self { unleased, debt, epoch, refilled_at })
    }

    pub fn unleased(&self) -> u64 {
        self.unleased
    }

    pub fn debt(&self) -> u64 {
        self.debt
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn refilled_at(&self) -> OffsetDateTime {
        self.refilled_at
    }

    /// What the database alone knows is left: the unleased part less the
    /// debt (slices held by replicas are not in it).
    pub fn available(&self) -> u64 {
        self.unleased.saturating_sub(self.debt)
    }

    /// The pool at `now` under `rule`: itself, or, when a refill day passed
    /// since it was last refilled or set, the refill's amount in a new
    /// epoch (older slices are void: a refill sets, it does not add).
    pub fn refreshed(&self, rule: &CreditRule, now: OffsetDateTime) -> Self {
        let balance =
            CreditBalance::restore(self.unleased, self.refilled_at).unwrap_or_else(|_| CreditBalance::empty(now));
        let refreshed = balance.refreshed(rule.refill.as_ref(), now);
        if refreshed.refilled_at() == self.refilled_at {
            return *self;
        }
        Self { unleased: refreshed.remaining(), debt: 0, epoch: self.epoch + 1, refilled_at: refreshed.refilled_at() }
    }

    /// Takes a slice of at most `want` out of the unleased part (after a
    /// refill due), never more than it holds less the debt.
    pub fn reserve(&self, rule: &CreditRule, want: u64, now: OffsetDateTime) -> (Self, Reserved) {
        let current = self.refreshed(rule, now);
        let granted = want.min(current.available());
        let next = Self { unleased: current.unleased - granted, ..current };
        (next, Reserved { granted, epoch: next.epoch, refilled_at: next.refilled_at })
    }

    /// Returns the unspent part of a slice reserved under `epoch`: paid to
    /// the debt first, the rest back to the unleased part. A slice of an
    /// older epoch (a set or a refill since) is dropped.
    pub fn hand_back(&self, epoch: u64, unspent: u64) -> Self {
        if epoch != self.epoch {
            return *self;
        }
        let paid = unspent.min(self.debt);
        Self {
            unleased: self.unleased.saturating_add(unspent - paid).min(MAX_CREDITS),
            debt: self.debt - paid,
            ..*self
        }
    }

    /// A change by hand (`POST …/credits/`, a patch of `credits`), after a
    /// refill due: `set` replaces the balance in a new epoch (the slices out
    /// are void); `increment` pays the debt and adds the rest (capped at
    /// 10¹²); `decrement` takes from the unleased part and leaves what it
    /// could not take as debt, which the slices handed back pay.
    pub fn apply(&self, operation: CreditsOperation, rule: &CreditRule, now: OffsetDateTime) -> Self {
        let current = self.refreshed(rule, now);
        match operation {
            CreditsOperation::Set(value) => {
                Self { unleased: value.min(MAX_CREDITS), debt: 0, epoch: current.epoch + 1, refilled_at: now }
            }
            CreditsOperation::Increment(value) => {
                let paid = value.min(current.debt);
                Self {
                    unleased: current.unleased.saturating_add(value - paid).min(MAX_CREDITS),
                    debt: current.debt - paid,
                    ..current
                }
            }
            CreditsOperation::Decrement(value) => {
                let taken = value.min(current.unleased);
                Self {
                    unleased: current.unleased - taken,
                    debt: current.debt.saturating_add(value - taken).min(MAX_CREDITS),
                    ..current
                }
            }
        }
    }
}

impl RateLimit {
    /// Takes up to `want` tokens at `now` (at least `least`): the largest
    /// batch the counter admits, `None` when it does not admit `least`.
    /// What a replica leases from the shared counter; the GCRA step with
    /// `n` = the batch.
    pub fn take_up_to(
        &self,
        state: Option<&RateLimitState>,
        least: u32,
        want: u32,
        now: OffsetDateTime,
    ) -> Option<(u32, RateLimitState)> {
        let free = self.check(state, Cost::ZERO, now).remaining;
        let batch = u32::try_from(free.min(u64::from(want))).unwrap_or(want);
        if batch < least.max(1) {
            return None;
        }
        match self.check(state, Cost(batch), now).outcome {
            RateLimitOutcome::Admitted(next) => Some((batch, next)),
            RateLimitOutcome::Refused { .. } => None,
        }
    }

    /// The counter with `tokens` taken and not used given back: the TAT
    /// moved back by `tokens · T`, never before `now` (a bucket is never
    /// fuller than full).
    pub fn give_back(&self, state: &RateLimitState, tokens: u32, now: OffsetDateTime) -> RateLimitState {
        state.moved_back(self.limit() as u32, i128::from(tokens) * self.interval_ticks(), now)
    }
}
