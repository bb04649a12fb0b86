//! Rate limits: the values a key or an identity carries ([`RateLimitName`],
//! [`RateLimit`], [`RateLimits`]) and GCRA, the algorithm that enforces one
//! ([`RateLimit::check`] over a [`RateLimitState`]).
//!
//! GCRA (the generic cell rate algorithm) is a token bucket written as one
//! instant per counter: the *theoretical arrival time* (TAT), the moment the
//! bucket is full again. A limit of `limit` per `duration_seconds` is a
//! bucket of `limit` tokens refilled at one token per emission interval
//! `T = duration / limit`; a request of cost `n` is admitted when
//! `max(TAT, now) + n·T − now ≤ duration`, and then moves the TAT to
//! `max(TAT, now) + n·T`. A refusal leaves the TAT where it was.
//!
//! The arithmetic is exact. `T` is rarely a whole number of nanoseconds
//! (1 per 3 s is 333,333,333⅓ ns), so every computation runs in *ticks* of
//! `1/limit` nanosecond, in which `T` is `duration × 10⁹` ticks and the
//! window `duration × 10⁹ × limit` ticks, all whole numbers in an `i128`.
//! The state keeps the TAT as whole nanoseconds plus a remainder in units of
//! `1/denominator` nanosecond, the denominator being the `limit` it was
//! computed with: 16 bytes, and still exact after the limit is changed
//! (the remainder is converted, rounding the TAT up).

use time::OffsetDateTime;

use super::Cost;
use crate::CoreError;

/// The name of a rate limit: `^[a-z0-9][a-z0-9_.:-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateLimitName(String);

impl RateLimitName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let bytes = text.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= Self::MAX_LEN
            && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
            && bytes.iter().all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b':' | b'-'));
        if !well_formed {
            return Err(CoreError::InvalidRateLimitName(text.chars().take(Self::MAX_LEN + 1).collect()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RateLimitName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks that `value` lies in `min..=max`, naming `field` when it does not.
pub(super) fn in_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, CoreError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(CoreError::OutOfRange { field, min, max })
    }
}

/// One named limit: at most `limit` tokens per `duration_seconds`, applied to
/// every verification (`auto_apply`) or only to those that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    name: RateLimitName,
    limit: u32,
    duration_seconds: u32,
    auto_apply: bool,
}

/// What one check of a limit decided, and what the counter says after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitCheck {
    pub outcome: RateLimitOutcome,
    /// Whole tokens available after the request (before it, when refused).
    pub remaining: u64,
    /// When the bucket is full again, given what the counter holds after the
    /// request; `now` when it is full already.
    pub reset_at: OffsetDateTime,
}

/// Admitted with the counter's next state, or refused (the state unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitOutcome {
    /// Store this state: the tokens are taken.
    Admitted(RateLimitState),
    /// Nothing changes. `retry_at` is the earliest instant at which the
    /// same request would be admitted if nothing else is; `None` when its
    /// cost is more than the limit, which no wait admits.
    Refused { retry_at: Option<OffsetDateTime> },
}

impl RateLimit {
    pub const MAX_LIMIT: u64 = 1_000_000_000;
    pub const MAX_DURATION_SECONDS: u64 = 86_400;
    /// What a limit is when the client does not say.
    pub const DEFAULT_AUTO_APPLY: bool = true;

    /// A limit from its wire fields; a bound broken is named in the error
    /// (`ratelimits.limit`, `ratelimits.duration_seconds`).
    pub fn parse(name: &str, limit: u64, duration_seconds: u64, auto_apply: bool) -> Result<Self, CoreError> {
        let name = RateLimitName::parse(name)?;
        let limit = in_range("ratelimits.limit", limit, 1, Self::MAX_LIMIT)?;
        let duration_seconds =
            in_range("ratelimits.duration_seconds", duration_seconds, 1, Self::MAX_DURATION_SECONDS)?;
        // Both bounds are far inside u32.
        Ok(Self { name, limit: limit as u32, duration_seconds: duration_seconds as u32, auto_apply })
    }

    pub fn name(&self) -> &RateLimitName {
        &self.name
    }

    pub fn limit(&self) -> u64 {
        u64::from(self.limit)
    }

    pub fn duration_seconds(&self) -> u32 {
        self.duration_seconds
    }

    pub fn auto_apply(&self) -> bool {
        self.auto_apply
    }

    /// The emission interval `T` in ticks (`1/limit` ns): `duration × 10⁹`.
    pub(super) fn interval_ticks(&self) -> i128 {
        self.interval()
    }

    fn interval(&self) -> i128 {
        i128::from(self.duration_seconds) * NANOS_PER_SECOND
    }

    /// The window (`limit × T`, the whole bucket) in ticks.
    fn window(&self) -> i128 {
        self.interval() * i128::from(self.limit)
    }

    /// GCRA: whether a request of `cost` tokens is admitted at `now` by the
    /// counter in `state` (`None`: a counter never used, or dropped while
    /// full, which is the same thing), with the counter's next state when
    /// it is. Total: any state, any cost, any instant.
    ///
    /// Instants after 2262-04-10 (the end of `i64` nanoseconds, less one
    /// day) count as that instant.
    pub fn check(&self, state: Option<&RateLimitState>, cost: Cost, now: OffsetDateTime) -> RateLimitCheck {
        let limit = i128::from(self.limit);
        let interval = self.interval();
        let window = self.window();
        let now = clamped_nanos(now) * limit;
        let tat = state.map_or(now, |state| state.ticks(self.limit));
        let base = tat.max(now);
        let next = base + i128::from(cost.get()) * interval;
        // The whole tokens free when `used` ticks of the window are taken;
        // a state carried over from a larger limit may take more than the
        // window, which leaves none.
        let free = |used: i128| u64::try_from((window - used).div_euclid(interval)).unwrap_or(0);
        if next - now <= window {
            RateLimitCheck {
                outcome: RateLimitOutcome::Admitted(RateLimitState::from_ticks(next, self.limit)),
                remaining: free(next - now),
                reset_at: instant(next, limit),
            }
        } else {
            let retry_at = (u64::from(cost.get()) <= self.limit()).then(|| instant(next - window, limit));
            RateLimitCheck {
                outcome: RateLimitOutcome::Refused { retry_at },
                remaining: free(base - now),
                reset_at: instant(base, limit),
            }
        }
    }
}

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// The last instant the counters tell apart: one day (the longest window)
/// before the end of `i64` nanoseconds, so that every TAT (at most `now`
/// plus one window) fits the state.
const LATEST_NANOS: i128 = i64::MAX as i128 - RateLimit::MAX_DURATION_SECONDS as i128 * NANOS_PER_SECOND;

fn clamped_nanos(now: OffsetDateTime) -> i128 {
    now.unix_timestamp_nanos().clamp(i128::from(i64::MIN), LATEST_NANOS)
}

/// The instant of `ticks` (`1/limit` ns), rounded up to the nanosecond.
fn instant(ticks: i128, limit: i128) -> OffsetDateTime {
    let nanos = ticks.div_euclid(limit) + i128::from(ticks.rem_euclid(limit) != 0);
    // Every TAT lies within i64 nanoseconds (see `LATEST_NANOS`), which
    // `time` represents; the fallback is unreachable.
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The state of one counter (one limit of one [`super::MeterSubject`]):
/// its theoretical arrival time, exactly, in 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateLimitState {
    /// Whole nanoseconds since the Unix epoch.
    tat_nanos: i64,
    /// Plus `remainder / denominator` of a nanosecond.
    remainder: u32,
    /// The `limit` the state was computed with (never 0).
    denominator: u32,
}

impl RateLimitState {
    /// Rebuilds a state read back from storage; a remainder that is not a
    /// fraction of its denominator is no state [`RateLimit::check`] makes.
    pub fn restore(tat_nanos: i64, remainder: u32, denominator: u32) -> Result<Self, CoreError> {
        if denominator == 0 || remainder >= denominator {
            return Err(CoreError::InconsistentRecord {
                kind: "rate limit counter",
                reason: "its remainder is not a fraction of its denominator",
            });
        }
        Ok(Self { tat_nanos, remainder, denominator })
    }

    /// When the bucket is full again, to the nanosecond (rounded down).
    pub fn tat_nanos(&self) -> i64 {
        self.tat_nanos
    }

    pub fn remainder(&self) -> u32 {
        self.remainder
    }

    pub fn denominator(&self) -> u32 {
        self.denominator
    }

    /// Whether the bucket is full at `now`: such a state may be dropped, as
    /// it decides exactly like no state.
    pub fn is_idle(&self, now: OffsetDateTime) -> bool {
        let tat = i128::from(self.tat_nanos) + i128::from(self.remainder != 0);
        tat <= clamped_nanos(now)
    }

    /// The TAT in ticks of `1/limit` ns. A state computed with another limit
    /// has its remainder converted, rounded up: a change of limit never
    /// frees a fraction of a token.
    fn ticks(&self, limit: u32) -> i128 {
        let limit = i128::from(limit);
        let denominator = i128::from(self.denominator.max(1));
        let scaled = i128::from(self.remainder) * limit;
        let fraction = scaled / denominator + i128::from(scaled % denominator != 0);
        i128::from(self.tat_nanos) * limit + fraction
    }

    /// This state with `ticks` (of `1/limit` ns) less, never before `now`.
    pub(super) fn moved_back(&self, limit: u32, ticks: i128, now: OffsetDateTime) -> Self {
        let floor = clamped_nanos(now) * i128::from(limit.max(1));
        Self::from_ticks((self.ticks(limit) - ticks).max(floor), limit)
    }

    fn from_ticks(ticks: i128, limit: u32) -> Self {
        let denominator = i128::from(limit);
        // A TAT is at most `LATEST_NANOS` plus one window: inside i64.
        let tat_nanos = ticks.div_euclid(denominator).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        // The remainder is below `limit`, itself a u32.
        let remainder = ticks.rem_euclid(denominator) as u32;
        Self { tat_nanos, remainder, denominator: limit }
    }
}

/// The limits of one key or identity: at most 16, names unique, in the
/// order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimits(Vec<RateLimit>);

impl RateLimits {
    pub const MAX: usize = 16;

    pub fn parse(limits: impl IntoIterator<Item = RateLimit>) -> Result<Self, CoreError> {
        let mut parsed: Vec<RateLimit> = Vec::new();
        for limit in limits {
            if parsed.len() == Self::MAX {
                return Err(CoreError::TooManyRateLimits { max: Self::MAX });
            }
            if parsed.iter().any(|other| other.name == limit.name) {
                return Err(CoreError::DuplicateRateLimit { field: "ratelimits", name: limit.name.0 });
            }
            parsed.push(limit);
        }
        Ok(Self(parsed))
    }

    pub fn as_slice(&self) -> &[RateLimit] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, name: &RateLimitName) -> Option<&RateLimit> {
        self.0.iter().find(|limit| &limit.name == name)
    }
}
