//! Credits: a balance a key or an identity spends from ([`Credits`],
//! [`CreditBalance`]), the refill calendar ([`Refill`]) and the operations
//! that change a balance by hand ([`CreditsOperation`]).
//!
//! A refill *sets* the balance to its amount at 00:00 UTC of each refill
//! day; it does not add, so days missed (no verification, or a replica
//! down) never accumulate. Monthly refills fall on `refill_day`, or on the
//! last day of a month too short for it (31 → 30 April, 28 or 29
//! February). Whether a refill is due is a function of the instant the
//! balance was last refilled or set and `now`, so every reader agrees.

use time::{Date, Month, OffsetDateTime, UtcOffset};

use super::ratelimit::in_range;
use super::Cost;
use crate::{timestamp, CoreError};

/// The most a balance, a refill amount or an operation's value may be.
pub const MAX_CREDITS: u64 = 1_000_000_000_000;

/// How often a balance is refilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefillInterval {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on `refill_day` (1–31) of every month, or on its last
    /// day when it is shorter.
    Monthly { refill_day: u8 },
}

impl RefillInterval {
    /// What a monthly refill falls on when the client names no day.
    pub const DEFAULT_REFILL_DAY: u8 = 1;

    /// `daily` or `monthly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly { .. } => "monthly",
        }
    }

    /// The latest refill day on or before `date`.
    fn latest_on_or_before(self, date: Date) -> Option<Date> {
        let Self::Monthly { refill_day } = self else { return Some(date) };
        let this_month = refill_date(date.year(), date.month(), refill_day)?;
        if this_month <= date {
            return Some(this_month);
        }
        let (year, month) = match date.month() {
            Month::January => (date.year().checked_sub(1)?, Month::December),
            month => (date.year(), month.previous()),
        };
        refill_date(year, month, refill_day)
    }

    /// The first refill day after `date`.
    fn first_after(self, date: Date) -> Option<Date> {
        let Self::Monthly { refill_day } = self else { return date.next_day() };
        let this_month = refill_date(date.year(), date.month(), refill_day)?;
        if this_month > date {
            return Some(this_month);
        }
        let (year, month) = match date.month() {
            Month::December => (date.year().checked_add(1)?, Month::January),
            month => (date.year(), month.next()),
        };
        refill_date(year, month, refill_day)
    }
}

/// The refill day of one month: `refill_day`, or the month's last day.
fn refill_date(year: i32, month: Month, refill_day: u8) -> Option<Date> {
    Date::from_calendar_date(year, month, refill_day.min(month.length(year))).ok()
}

/// 00:00 UTC of `date`.
fn midnight(date: Date) -> OffsetDateTime {
    date.midnight().assume_utc()
}

/// The UTC date of an instant (`None` beyond the calendar `time` keeps).
fn utc_date(instant: OffsetDateTime) -> Option<Date> {
    instant.checked_to_offset(UtcOffset::UTC).map(OffsetDateTime::date)
}

/// A balance's refill rule: every refill day, the balance becomes `amount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refill {
    interval: RefillInterval,
    amount: u64,
}

impl Refill {
    /// A rule from its wire fields: `interval` `daily` or `monthly`,
    /// `amount` 0 – 10¹², `refill_day` 1 – 31 for a monthly refill (1 when
    /// absent) and refused on a daily one.
    pub fn parse(interval: &str, amount: u64, refill_day: Option<u64>) -> Result<Self, CoreError> {
        let interval = match (interval, refill_day) {
            ("daily", None) => RefillInterval::Daily,
            ("daily", Some(_)) => return Err(CoreError::RefillDayNotMonthly),
            ("monthly", day) => {
                let day = day.unwrap_or(u64::from(RefillInterval::DEFAULT_REFILL_DAY));
                let day = in_range("credits.refill.refill_day", day, 1, 31)?;
                // At most 31.
                RefillInterval::Monthly { refill_day: day as u8 }
            }
            _ => return Err(CoreError::InvalidRefillInterval),
        };
        let amount = in_range("credits.refill.amount", amount, 0, MAX_CREDITS)?;
        Ok(Self { interval, amount })
    }

    pub fn interval(&self) -> RefillInterval {
        self.interval
    }

    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The day of the month a monthly refill falls on; `None` for daily.
    pub fn refill_day(&self) -> Option<u8> {
        match self.interval {
            RefillInterval::Daily => None,
            RefillInterval::Monthly { refill_day } => Some(refill_day),
        }
    }

    /// The refill due at `now` for a balance last refilled or set at
    /// `last`: the most recent refill instant at or before `now`, when it is
    /// later than `last`. Several refill days passed at once give the last
    /// of them (a refill sets, it does not add).
    pub fn due(&self, last: OffsetDateTime, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let refill_day = self.interval.latest_on_or_before(utc_date(now)?)?;
        let instant = midnight(refill_day);
        (instant > last).then_some(instant)
    }

    /// The first refill instant strictly after `instant`.
    /// (A refill day's instant is its first moment, so the next one after
    /// any moment of a day is on a later day.)
    pub fn next_after(&self, instant: OffsetDateTime) -> Option<OffsetDateTime> {
        self.interval.first_after(utc_date(instant)?).map(midnight)
    }
}

/// A key's or an identity's `credits` as a client sets them: the balance to
/// start from and its refill rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credits {
    remaining: u64,
    refill: Option<Refill>,
}

impl Credits {
    /// `remaining` 0 – 10¹².
    pub fn parse(remaining: u64, refill: Option<Refill>) -> Result<Self, CoreError> {
        let remaining = in_range("credits.remaining", remaining, 0, MAX_CREDITS)?;
        Ok(Self { remaining, refill })
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub fn refill(&self) -> Option<&Refill> {
        self.refill.as_ref()
    }

    /// What metering keeps of these credits from `now` on: the rule (in
    /// the key's or identity's [`super::Meter`]) and the balance (a
    /// counter), set at `now`.
    pub fn start(&self, now: OffsetDateTime) -> (CreditRule, CreditBalance) {
        (CreditRule { refill: self.refill }, CreditBalance { remaining: self.remaining, refilled_at: timestamp(now) })
    }
}

/// That a key or an identity spends credits, and how its balance refills.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CreditRule {
    pub refill: Option<Refill>,
}

/// A live balance: what remains, and when it was last refilled or set
/// (what the next refill is reckoned from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CreditBalance {
    remaining: u64,
    refilled_at: OffsetDateTime,
}

/// A change made to a balance by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditsOperation {
    /// The balance becomes the value.
    Set(u64),
    /// The value is added, up to 10¹² (more is dropped, not refused).
    Increment(u64),
    /// The value is taken away, down to 0 (more is dropped, not refused):
    /// the operator's "take N away" holds even when verifications spent
    /// part of the balance since they last looked.
    Decrement(u64),
}

impl CreditsOperation {
    /// `operation` `set`, `increment` or `decrement`; `value` 0 – 10¹².
    pub fn parse(operation: &str, value: u64) -> Result<Self, CoreError> {
        let make = match operation {
            "set" => Self::Set,
            "increment" => Self::Increment,
            "decrement" => Self::Decrement,
            _ => return Err(CoreError::InvalidCreditsOperation),
        };
        Ok(make(in_range("value", value, 0, MAX_CREDITS)?))
    }
}

impl CreditBalance {
    /// Rebuilds a balance read back from storage.
    pub fn restore(remaining: u64, refilled_at: OffsetDateTime) -> Result<Self, CoreError> {
        if remaining > MAX_CREDITS {
            return Err(CoreError::InconsistentRecord { kind: "credit balance", reason: "remaining exceeds 10^12" });
        }
        Ok(Self { remaining, refilled_at })
    }

    /// What a metered subject without a stored balance spends from:
    /// nothing, and no refill due before `now`.
    pub(super) fn empty(now: OffsetDateTime) -> Self {
        Self { remaining: 0, refilled_at: now }
    }

    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    pub fn refilled_at(&self) -> OffsetDateTime {
        self.refilled_at
    }

    /// The balance at `now` under `refill`: itself, or the refill's amount
    /// when a refill day passed since it was last refilled or set.
    pub fn refreshed(&self, refill: Option<&Refill>, now: OffsetDateTime) -> Self {
        match refill.and_then(|refill| refill.due(self.refilled_at, now).map(|at| (refill.amount, at))) {
            Some((amount, at)) => Self { remaining: amount, refilled_at: at },
            None => *self,
        }
    }

    /// The balance after spending `cost`, or `None` when it would go below
    /// zero (and nothing is spent).
    pub fn spend(&self, cost: Cost) -> Option<Self> {
        let remaining = self.remaining.checked_sub(u64::from(cost.get()))?;
        Some(Self { remaining, ..*self })
    }

    /// The balance after `operation` at `now`: a refill due first (so that
    /// a refill day passed before the change cannot undo it later), then
    /// the change, within 0 – 10¹².
    pub fn apply(&self, operation: CreditsOperation, refill: Option<&Refill>, now: OffsetDateTime) -> Self {
        let current = self.refreshed(refill, now);
        let remaining = match operation {
            CreditsOperation::Set(value) => value,
            CreditsOperation::Increment(value) => current.remaining.saturating_add(value),
            CreditsOperation::Decrement(value) => current.remaining.saturating_sub(value),
        };
        Self { remaining: remaining.min(MAX_CREDITS), ..current }
    }
}
