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
    /// When the debt last grew: what is still owed [`CreditPool::DEBT_WINDOW`]
    /// after it was more than the balance held, and is forgiven.
    debt_at: OffsetDateTime,
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
    /// How long a debt waits for the slices that were out when a
    /// `decrement` took more than `unleased` held: every replica hands its
    /// slice back as soon as it hears of the change (within a second), and
    /// an idle one within 2 s anyway. What is still owed after this was
    /// more than the whole balance, and is forgiven: a decrement is clamped
    /// at 0.
    pub const DEBT_WINDOW: time::Duration = time::Duration::seconds(10);

    /// A new balance of `remaining` (a create, an identity's put).
    pub fn new(remaining: u64, now: OffsetDateTime) -> Self {
        Self { unleased: remaining.min(MAX_CREDITS), debt: 0, epoch: 0, refilled_at: now, debt_at: now }
    }

    /// A new balance of a subject that existed before (an identity deleted
    /// and made again): its epoch is `now` in microseconds, so that no
    /// slice of the former balance is taken for one of this one.
    pub fn renewed(remaining: u64, now: OffsetDateTime) -> Self {
        let epoch = u64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(0);
        Self { epoch, ..Self::new(remaining, now) }
    }

    /// Rebuilds a pool read back from storage (its debt dated
    /// `refilled_at`; [`CreditPool::with_debt_at`] says otherwise).
    pub fn restore(unleased: u64, debt: u64, epoch: u64, refilled_at: OffsetDateTime) -> Result<Self, CoreError> {
        if unleased > MAX_CREDITS || debt > MAX_CREDITS {
            return Err(CoreError::InconsistentRecord { kind: "credit balance", reason: "a part exceeds 10^12" });
        }
        Ok(Self { unleased, debt, epoch, refilled_at, debt_at: refilled_at })
    }

    /// The same pool, its debt dated `at`.
    pub fn with_debt_at(self, at: OffsetDateTime) -> Self {
        Self { debt_at: at, ..self }
    }

    pub fn debt_at(&self) -> OffsetDateTime {
        self.debt_at
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
    /// A debt older than [`CreditPool::DEBT_WINDOW`] is forgiven first.
    pub fn refreshed(&self, rule: &CreditRule, now: OffsetDateTime) -> Self {
        let forgive = self.debt > 0 && now - self.debt_at >= Self::DEBT_WINDOW;
        let current = if forgive { Self { debt: 0, ..*self } } else { *self };
        let balance =
            CreditBalance::restore(current.unleased, current.refilled_at).unwrap_or_else(|_| CreditBalance::empty(now));
        let refreshed = balance.refreshed(rule.refill.as_ref(), now);
        if refreshed.refilled_at() == current.refilled_at {
            return current;
        }
        let at = refreshed.refilled_at();
        Self { unleased: refreshed.remaining(), debt: 0, epoch: current.epoch + 1, refilled_at: at, debt_at: at }
    }

    /// Takes a slice of at most `want` out of the unleased part (after a
    /// refill due), never more than it holds less the debt, and nothing
    /// unless at least `least` is there (a verification that cannot be
    /// admitted holds back nothing from the other replicas).
    pub fn reserve(&self, rule: &CreditRule, least: u64, want: u64, now: OffsetDateTime) -> (Self, Reserved) {
        let current = self.refreshed(rule, now);
        let available = current.available();
        let granted = if available >= least { want.max(least).min(available) } else { 0 };
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
    /// could not take as debt, which the slices handed back pay within
    /// [`CreditPool::DEBT_WINDOW`] (then it is forgiven).
    pub fn apply(&self, operation: CreditsOperation, rule: &CreditRule, now: OffsetDateTime) -> Self {
        let current = self.refreshed(rule, now);
        match operation {
            CreditsOperation::Set(value) => Self {
                unleased: value.min(MAX_CREDITS),
                debt: 0,
                epoch: current.epoch + 1,
                refilled_at: now,
                debt_at: now,
            },
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
                let owed = value - taken;
                Self {
                    unleased: current.unleased - taken,
                    debt: current.debt.saturating_add(owed).min(MAX_CREDITS),
                    debt_at: if owed > 0 { now } else { current.debt_at },
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

    /// The counter with `tokens` taken at `taken_at` and not used given
    /// back at `now`: the TAT moved back by `tokens · T` less the time they
    /// were held (the bucket refilled meanwhile under them, and later
    /// batches were stacked on top: moving back further would hand that
    /// refill out twice), never before `now` (a bucket is never fuller than
    /// full). So the counter ends no fuller than if they had never been
    /// taken, and the bound of docs/METERING.md holds.
    pub fn give_back(
        &self,
        state: &RateLimitState,
        tokens: u32,
        taken_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> RateLimitState {
        let limit = i128::from(self.limit() as u32);
        let held = (now - taken_at).whole_nanoseconds().max(0) * limit;
        let back = (i128::from(tokens) * self.interval_ticks() - held).max(0);
        state.moved_back(self.limit() as u32, back, now)
    }
}
