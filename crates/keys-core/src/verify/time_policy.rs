//! The one time policy of every token keysd verifies: `exp`, `nbf` and
//! `iat` against the caller's `now`, with one leeway for clock skew.
//!
//! keys-crypto only checks that these claims, when present, are NumericDates
//! (a structural check); whether a token is valid *now* is decided here.

use time::OffsetDateTime;

use crate::CoreError;

/// The leeway when the operator configures none (`--jwt-leeway-seconds`).
pub const DEFAULT_LEEWAY_SECONDS: u32 = 60;

/// The largest leeway an operator may configure: beyond five minutes a
/// "skew" allowance becomes a validity extension.
pub const MAX_LEEWAY_SECONDS: u32 = 300;

/// The longest a secure-mode user token may be valid when the operator
/// configures nothing else: 366 days, `exp` counted from `iat` (or from
/// `now` without one). A year, so that no token minted with a year's
/// lifetime (`expiresIn: '1y'` is 365.25 days) is refused, while an `exp`
/// of year 9999 or 2^64, a token that never expires, is.
pub const DEFAULT_USER_TOKEN_MAX_LIFETIME_SECONDS: u32 = 366 * 86_400;

/// The time claims of a verified token, in whole Unix seconds. `exp` of a
/// fractional NumericDate is rounded down, `nbf` and `iat` up, so that
/// rounding never extends validity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenTimes {
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

/// Why a token is outside its time window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDenial {
    /// `now` is at or past `exp + leeway`.
    Expired,
    /// `now + leeway` is before `nbf`, or `iat` lies more than the leeway in
    /// the future.
    NotYetValid,
}

/// The time window rule with its leeway, and the longest lifetime a
/// secure-mode user token may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimePolicy {
    leeway_seconds: u32,
    user_token_max_lifetime_seconds: u32,
}

impl Default for TimePolicy {
    fn default() -> Self {
        Self {
            leeway_seconds: DEFAULT_LEEWAY_SECONDS,
            user_token_max_lifetime_seconds: DEFAULT_USER_TOKEN_MAX_LIFETIME_SECONDS,
        }
    }
}

impl TimePolicy {
    /// A policy with `leeway_seconds` of allowance (at most
    /// [`MAX_LEEWAY_SECONDS`]).
    pub fn new(leeway_seconds: u32) -> Result<Self, CoreError> {
        if leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(CoreError::InvalidLeeway { max: MAX_LEEWAY_SECONDS });
        }
        Ok(Self { leeway_seconds, ..Self::default() })
    }

    /// The same policy with another longest lifetime for secure-mode user
    /// tokens (default [`DEFAULT_USER_TOKEN_MAX_LIFETIME_SECONDS`]).
    pub fn with_user_token_max_lifetime(self, seconds: u32) -> Self {
        Self { user_token_max_lifetime_seconds: seconds, ..self }
    }

    pub fn leeway_seconds(&self) -> u32 {
        self.leeway_seconds
    }

    /// The longest a secure-mode user token may be valid: its `exp` at most
    /// this long after its `iat` (after `now` when it has none).
    pub fn user_token_max_lifetime_seconds(&self) -> u32 {
        self.user_token_max_lifetime_seconds
    }

    /// Is a token whose `exp` is `exp` valid for longer than `max_seconds`,
    /// counted from its `iat` (from `now` when it has none)? One rule for
    /// user tokens and for the operator's `--jwt-max-lifetime-seconds`.
    pub fn lifetime_exceeds(times: &TokenTimes, now: OffsetDateTime, max_seconds: u32) -> bool {
        let Some(exp) = times.exp else { return false };
        let start = times.iat.unwrap_or_else(|| now.unix_timestamp());
        exp.saturating_sub(start) > i64::from(max_seconds)
    }

    /// Is a token with these claims inside its window at `now`? Absent
    /// claims are not checked; whether one is *required* is the rule of the
    /// token kind (see [`super::decide_user_token`]).
    ///
    /// RFC 7519 §4.1.4: the token is rejected "on or after" `exp`, so at
    /// exactly `exp + leeway` it has expired; §4.1.5: accepted "on or after"
    /// `nbf`.
    pub fn check(&self, times: &TokenTimes, now: OffsetDateTime) -> Result<(), TimeDenial> {
        let now = now.unix_timestamp();
        let leeway = i64::from(self.leeway_seconds);
        if times.exp.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
            return Err(TimeDenial::Expired);
        }
        if times.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(TimeDenial::NotYetValid);
        }
        // A token issued in the future was made by a clock that is wrong by
        // more than the skew we allow, or is forged to outlive its keys.
        if times.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TimeDenial::NotYetValid);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn policy(leeway: u32) -> TimePolicy {
        TimePolicy::new(leeway).unwrap_or_default()
    }

    #[test]
    fn leeway_is_bounded() {
        assert_eq!(TimePolicy::default().leeway_seconds(), 60);
        assert!(TimePolicy::new(300).is_ok());
        assert_eq!(TimePolicy::new(301), Err(CoreError::InvalidLeeway { max: 300 }));
    }

    #[test]
    fn exp_nbf_and_iat_at_their_boundaries() {
        let expiring = TokenTimes { exp: Some(NOW), ..TokenTimes::default() };
        assert_eq!(policy(0).check(&expiring, at(NOW - 1)), Ok(()));
        assert_eq!(policy(0).check(&expiring, at(NOW)), Err(TimeDenial::Expired));
        assert_eq!(policy(60).check(&expiring, at(NOW + 59)), Ok(()));
        assert_eq!(policy(60).check(&expiring, at(NOW + 60)), Err(TimeDenial::Expired));

        let starting = TokenTimes { nbf: Some(NOW), ..TokenTimes::default() };
        assert_eq!(policy(0).check(&starting, at(NOW)), Ok(()));
        assert_eq!(policy(0).check(&starting, at(NOW - 1)), Err(TimeDenial::NotYetValid));
        assert_eq!(policy(60).check(&starting, at(NOW - 60)), Ok(()));
        assert_eq!(policy(60).check(&starting, at(NOW - 61)), Err(TimeDenial::NotYetValid));

        let issued = TokenTimes { iat: Some(NOW), ..TokenTimes::default() };
        assert_eq!(policy(60).check(&issued, at(NOW - 60)), Ok(()));
        assert_eq!(policy(60).check(&issued, at(NOW - 61)), Err(TimeDenial::NotYetValid));
        assert_eq!(policy(60).check(&issued, at(NOW + 1_000_000)), Ok(()));
        let far_future = TokenTimes { iat: Some(NOW + 1_000_000), ..TokenTimes::default() };
        assert_eq!(policy(300).check(&far_future, at(NOW)), Err(TimeDenial::NotYetValid));
    }

    #[test]
    fn absent_claims_and_extreme_values() {
        assert_eq!(policy(0).check(&TokenTimes::default(), at(NOW)), Ok(()));
        let forever = TokenTimes { exp: Some(i64::MAX), nbf: Some(i64::MIN), iat: Some(i64::MIN) };
        assert_eq!(policy(300).check(&forever, at(NOW)), Ok(()));
        let negative = TokenTimes { exp: Some(-5), ..TokenTimes::default() };
        assert_eq!(policy(60).check(&negative, at(NOW)), Err(TimeDenial::Expired));
        // The system clock plays no part.
        let ancient = TokenTimes { exp: Some(1_000), ..TokenTimes::default() };
        assert_eq!(policy(0).check(&ancient, at(500)), Ok(()));
    }
}
