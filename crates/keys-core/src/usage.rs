//! Usage: every verification counted per key and outcome in time buckets
//! of a minute, an hour and a day (docs/API.md, Usage). The values here are
//! what a count is filed under and how long it is kept; the counting, the
//! writes and the reads are keys-service's and keys-store's.

use time::{Duration, OffsetDateTime};

use crate::CoreError;

/// The outcome of a verification that was granted; a refusal is counted
/// under its reason (`key_disabled`, `unknown_key`, …).
pub const VALID: &str = "valid";

/// The most rows one usage query answers; a cursor continues beyond.
pub const MAX_USAGE_ROWS: u32 = 10_000;

/// The width of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const ALL: [Self; 3] = [Self::Minute, Self::Hour, Self::Day];

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        match text {
            "minute" => Ok(Self::Minute),
            "hour" => Ok(Self::Hour),
            "day" => Ok(Self::Day),
            _ => Err(CoreError::InvalidGranularity),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    pub fn width(self) -> Duration {
        match self {
            Self::Minute => Duration::MINUTE,
            Self::Hour => Duration::HOUR,
            Self::Day => Duration::DAY,
        }
    }

    /// The start of the bucket holding `at`: `at` in UTC, cut down to the
    /// minute, the hour or the day (UTC days: 00:00 to 24:00).
    pub fn bucket(self, at: OffsetDateTime) -> OffsetDateTime {
        let width = self.width().whole_seconds();
        let seconds = at.unix_timestamp();
        let start = seconds - seconds.rem_euclid(width);
        // A cut-down instant of a valid one is valid.
        OffsetDateTime::from_unix_timestamp(start).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// How long buckets of each width are kept before keysd prunes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRetention {
    minute: Duration,
    hour: Duration,
    day: Duration,
}

impl UsageRetention {
    /// 48 hours of minutes, 90 days of hours, 2 years (730 days) of days.
    pub const DEFAULT: Self = Self { minute: Duration::hours(48), hour: Duration::days(90), day: Duration::days(730) };

    /// Each at least one bucket of its width and at most 100 years; a
    /// coarser width kept no shorter than a finer one.
    pub fn new(minute: Duration, hour: Duration, day: Duration) -> Result<Self, CoreError> {
        let bounded = |kept: Duration, width: Granularity| kept >= width.width() && kept <= Duration::days(36_500);
        if bounded(minute, Granularity::Minute)
            && bounded(hour, Granularity::Hour)
            && bounded(day, Granularity::Day)
            && minute <= hour
            && hour <= day
        {
            Ok(Self { minute, hour, day })
        } else {
            Err(CoreError::InvalidUsageRetention)
        }
    }

    pub fn of(&self, granularity: Granularity) -> Duration {
        match granularity {
            Granularity::Minute => self.minute,
            Granularity::Hour => self.hour,
            Granularity::Day => self.day,
        }
    }

    /// Buckets of `granularity` starting before this are pruned at `now`.
    /// A bucket is kept whole while any part of it is inside the retention.
    pub fn cutoff(&self, granularity: Granularity, now: OffsetDateTime) -> OffsetDateTime {
        granularity.bucket(now - self.of(granularity))
    }
}

impl Default for UsageRetention {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The window of a usage query: buckets starting at or after `since` and
/// before `until`, at one granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageWindow {
    pub granularity: Granularity,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
}

impl UsageWindow {
    /// The default span of a query that names no `since`: a day of minutes
    /// or hours, 30 days of days.
    pub fn default_span(granularity: Granularity) -> Duration {
        match granularity {
            Granularity::Minute | Granularity::Hour => Duration::DAY,
            Granularity::Day => Duration::days(30),
        }
    }

    /// The window a query asks for at `now`: `until` defaults to `now`,
    /// `since` to `until` minus the default span. `since` is moved to the
    /// start of its bucket, so the first bucket is whole. A window whose
    /// `since` is not before its `until` is refused.
    pub fn new(
        granularity: Granularity,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Self, CoreError> {
        let until = until.unwrap_or(now);
        let since = granularity.bucket(since.unwrap_or(until - Self::default_span(granularity)));
        if since >= until {
            return Err(CoreError::InvalidUsageWindow);
        }
        Ok(Self { granularity, since, until })
    }
}

/// Whether `outcome` has the shape of an outcome (`valid` or a reason:
/// 1–64 of `a-z _`).
pub fn is_outcome(outcome: &str) -> bool {
    (1..=64).contains(&outcome.len()) && outcome.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("RFC 3339")
    }

    #[test]
    fn buckets_are_utc_minutes_hours_and_days() {
        let instant = at("2026-12-07T19:42:31.250+02:00");
        assert_eq!(Granularity::Minute.bucket(instant), at("2026-12-07T17:42:00Z"));
        assert_eq!(Granularity::Hour.bucket(instant), at("2026-12-07T17:00:00Z"));
        assert_eq!(Granularity::Day.bucket(instant), at("2026-12-07T00:00:00Z"));
        assert_eq!(Granularity::Day.bucket(at("1969-12-31T23:59:59Z")), at("1969-12-31T00:00:00Z"));
        for granularity in Granularity::ALL {
            assert_eq!(Granularity::parse(granularity.as_str()), Ok(granularity));
        }
        assert_eq!(Granularity::parse("week"), Err(CoreError::InvalidGranularity));
    }

    #[test]
    fn retention_cuts_whole_buckets_and_is_bounded() {
        let retention = UsageRetention::DEFAULT;
        let now = at("2026-12-07T19:42:31Z");
        assert_eq!(retention.cutoff(Granularity::Minute, now), at("2026-12-05T19:42:00Z"));
        assert_eq!(retention.cutoff(Granularity::Hour, now), at("2026-09-08T19:00:00Z"));
        assert_eq!(retention.cutoff(Granularity::Day, now), at("2024-12-07T00:00:00Z"));
        assert!(UsageRetention::new(Duration::SECOND, Duration::days(90), Duration::days(730)).is_err());
        assert!(UsageRetention::new(Duration::days(91), Duration::days(90), Duration::days(730)).is_err());
        assert!(UsageRetention::new(Duration::hours(1), Duration::hours(1), Duration::days(1)).is_ok());
    }

    #[test]
    fn windows_default_and_refuse_empty_spans() {
        let now = at("2026-12-07T19:42:31Z");
        let day = UsageWindow::new(Granularity::Hour, None, None, now).expect("default");
        assert_eq!((day.since, day.until), (at("2026-12-06T19:00:00Z"), now));
        let month = UsageWindow::new(Granularity::Day, None, None, now).expect("default");
        assert_eq!(month.since, at("2026-11-07T00:00:00Z"));
        let backwards = UsageWindow::new(Granularity::Hour, Some(now), Some(now - Duration::HOUR), now);
        assert_eq!(backwards, Err(CoreError::InvalidUsageWindow));
        assert!(is_outcome("valid") && is_outcome("key_disabled"));
        assert!(!is_outcome("") && !is_outcome("Valid") && !is_outcome("a-b"));
    }
}
