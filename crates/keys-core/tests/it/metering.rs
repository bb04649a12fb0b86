//! Metering (keys_core::meter): the bounds of every value, the refill
//! calendar case by case, GCRA's contract (a burst of `limit`, the next
//! refused, whole again after `duration`, the steady rate within 5% from 1
//! per day to 10⁹ per second) and the decision's order and refusals.

use crate::common::*;
use keys_core::meter::*;
use keys_core::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

fn limit(name: &str, limit: u64, duration_seconds: u64, auto_apply: bool) -> RateLimit {
    RateLimit::parse(name, limit, duration_seconds, auto_apply).expect("valid limit")
}

fn limits(items: Vec<RateLimit>) -> RateLimits {
    RateLimits::parse(items).expect("valid limits")
}

fn cost(value: u64) -> Cost {
    Cost::parse(value).expect("valid cost")
}

fn out_of_range(field: &'static str, min: u64, max: u64) -> CoreError {
    CoreError::OutOfRange { field, min, max }
}

fn key_subject() -> MeterSubject {
    MeterSubject::ApiKey { root: ApiKeyId::generate(t0(), &mut rng()) }
}

fn identity_subject() -> MeterSubject {
    MeterSubject::Identity { workspace: workspace_uid(&mut rng()), external_id: "customer-7".into() }
}

fn admitted(check: &RateLimitCheck) -> Option<RateLimitState> {
    match check.outcome {
        RateLimitOutcome::Admitted(state) => Some(state),
        RateLimitOutcome::Refused { .. } => None,
    }
}

// ---- Values and their bounds.

#[test]
fn rate_limit_names_follow_their_pattern() {
    let long = "a".repeat(64);
    for good in ["a", "0", "api.calls:v1-x_y", "9-lives", long.as_str()] {
        assert_eq!(RateLimitName::parse(good).map(|name| name.as_str().to_owned()), Ok(good.to_owned()));
    }
    let too_long = "a".repeat(65);
    for bad in ["", "A", "-a", "_a", ".a", ":a", "a b", "a/b", "é", "calls!", too_long.as_str()] {
        assert_eq!(RateLimitName::parse(bad), Err(CoreError::InvalidRateLimitName(bad.to_owned())), "{bad:?}");
    }
    let message = RateLimitName::parse("Bad").expect_err("upper case").to_string();
    assert!(message.starts_with("invalid rate limit name 'Bad': a name is 1 to 64 characters"), "{message}");
}

#[test]
fn a_rate_limit_holds_its_bounds_and_names_the_field_it_refuses() {
    let cases: &[(u64, u64, Result<(), CoreError>)] = &[
        (1, 1, Ok(())),
        (1_000_000_000, 86_400, Ok(())),
        (0, 60, Err(out_of_range("ratelimits.limit", 1, 1_000_000_000))),
        (1_000_000_001, 60, Err(out_of_range("ratelimits.limit", 1, 1_000_000_000))),
        (10, 0, Err(out_of_range("ratelimits.duration_seconds", 1, 86_400))),
        (10, 86_401, Err(out_of_range("ratelimits.duration_seconds", 1, 86_400))),
    ];
    for &(value, duration, ref expected) in cases {
        assert_eq!(RateLimit::parse("calls", value, duration, true).map(|_| ()), *expected, "{value}/{duration}");
    }
    let parsed = limit("calls", 100, 60, false);
    assert_eq!(
        (parsed.name().as_str(), parsed.limit(), parsed.duration_seconds(), parsed.auto_apply()),
        ("calls", 100, 60, false)
    );
    const { assert!(RateLimit::DEFAULT_AUTO_APPLY) };
    assert_eq!(
        RateLimit::parse("calls", 0, 60, true).expect_err("zero").to_string(),
        "ratelimits.limit must be a whole number between 1 and 1000000000"
    );
}

#[test]
fn a_key_holds_at_most_16_limits_with_unique_names() {
    let sixteen: Vec<RateLimit> = (0..16).map(|index| limit(&format!("l{index}"), 1, 1, true)).collect();
    assert_eq!(limits(sixteen.clone()).as_slice().len(), 16);
    let mut seventeen = sixteen;
    seventeen.push(limit("l16", 1, 1, true));
    assert_eq!(RateLimits::parse(seventeen), Err(CoreError::TooManyRateLimits { max: 16 }));
    let twice = RateLimits::parse([limit("calls", 1, 1, true), limit("calls", 2, 2, false)]);
    assert_eq!(twice, Err(CoreError::DuplicateRateLimit { field: "ratelimits", name: "calls".into() }));
    assert_eq!(twice.expect_err("twice").to_string(), "ratelimits names 'calls' twice: each name may appear once");
    let parsed = limits(vec![limit("a", 1, 1, true), limit("b", 2, 2, false)]);
    let name = RateLimitName::parse("b").expect("name");
    assert_eq!(parsed.get(&name).map(RateLimit::limit), Some(2));
    assert!(RateLimits::default().is_empty());
}

#[test]
fn costs_and_named_limits_hold_their_bounds() {
    assert_eq!(Cost::default(), Cost::ONE);
    assert_eq!(cost(0).get(), 0);
    assert_eq!(cost(1_000_000).get(), 1_000_000);
    assert_eq!(Cost::parse(1_000_001), Err(out_of_range("cost", 0, 1_000_000)));
    let requests = RateLimitRequests::parse([("tokens", Some(5)), ("calls", None)]).expect("valid");
    let tokens = RateLimitName::parse("tokens").expect("name");
    let calls = RateLimitName::parse("calls").expect("name");
    let other = RateLimitName::parse("other").expect("name");
    assert_eq!(
        (requests.cost_of(&tokens), requests.cost_of(&calls), requests.cost_of(&other)),
        (Some(cost(5)), Some(Cost::ONE), None)
    );
    assert_eq!(
        RateLimitRequests::parse([("calls", Some(1_000_001))]),
        Err(out_of_range("ratelimits.cost", 0, 1_000_000))
    );
    assert_eq!(
        RateLimitRequests::parse([("calls", None), ("calls", Some(2))]),
        Err(CoreError::DuplicateRateLimit { field: "ratelimits", name: "calls".into() })
    );
    assert_eq!(RateLimitRequests::parse([("Calls", None)]), Err(CoreError::InvalidRateLimitName("Calls".into())));
    let names: Vec<String> = (0..33).map(|index| format!("n{index}")).collect();
    let many = names.iter().map(|name| (name.as_str(), None));
    assert_eq!(RateLimitRequests::parse(many.clone().take(32)).map(|requests| requests.as_slice().len()), Ok(32));
    assert_eq!(RateLimitRequests::parse(many), Err(CoreError::TooManyRateLimits { max: 32 }));
}

#[test]
fn credits_and_refills_hold_their_bounds() {
    let trillion = 1_000_000_000_000;
    assert_eq!(Credits::parse(trillion, None).map(|credits| credits.remaining()), Ok(trillion));
    assert_eq!(Credits::parse(trillion + 1, None), Err(out_of_range("credits.remaining", 0, trillion)));
    assert_eq!(
        Credits::parse(trillion + 1, None).expect_err("too many").to_string(),
        "credits.remaining must be a whole number between 0 and 1000000000000"
    );
    let daily = Refill::parse("daily", 0, None).expect("daily");
    assert_eq!((daily.interval(), daily.amount(), daily.refill_day()), (RefillInterval::Daily, 0, None));
    let monthly = Refill::parse("monthly", trillion, None).expect("monthly");
    assert_eq!((monthly.interval().as_str(), monthly.refill_day()), ("monthly", Some(1)));
    assert_eq!(Refill::parse("monthly", 5, Some(31)).map(|refill| refill.refill_day()), Ok(Some(31)));
    let cases: &[(&str, u64, Option<u64>, CoreError)] = &[
        ("weekly", 5, None, CoreError::InvalidRefillInterval),
        ("Daily", 5, None, CoreError::InvalidRefillInterval),
        ("daily", 5, Some(1), CoreError::RefillDayNotMonthly),
        ("monthly", 5, Some(0), out_of_range("credits.refill.refill_day", 1, 31)),
        ("monthly", 5, Some(32), out_of_range("credits.refill.refill_day", 1, 31)),
        ("daily", trillion + 1, None, out_of_range("credits.refill.amount", 0, trillion)),
    ];
    for (interval, amount, day, expected) in cases {
        assert_eq!(
            Refill::parse(interval, *amount, *day).as_ref().err(),
            Some(expected),
            "{interval} {amount} {day:?}"
        );
    }
    let with_refill = Credits::parse(3, Some(daily)).expect("credits");
    assert_eq!(with_refill.refill(), Some(&daily));
    let (rule, balance) = with_refill.start(at(0));
    assert_eq!((rule.refill, balance.remaining(), balance.refilled_at()), (Some(daily), 3, timestamp(at(0))));
}

#[test]
fn credit_operations_parse_and_stay_within_bounds() {
    let trillion = 1_000_000_000_000;
    assert_eq!(CreditsOperation::parse("set", 7), Ok(CreditsOperation::Set(7)));
    assert_eq!(CreditsOperation::parse("increment", 0), Ok(CreditsOperation::Increment(0)));
    assert_eq!(CreditsOperation::parse("decrement", trillion), Ok(CreditsOperation::Decrement(trillion)));
    assert_eq!(CreditsOperation::parse("add", 1), Err(CoreError::InvalidCreditsOperation));
    assert_eq!(CreditsOperation::parse("set", trillion + 1), Err(out_of_range("value", 0, trillion)));
    let balance = CreditBalance::restore(10, at(0)).expect("balance");
    let apply = |operation| balance.apply(operation, None, at(5)).remaining();
    assert_eq!(apply(CreditsOperation::Set(3)), 3);
    assert_eq!(apply(CreditsOperation::Increment(5)), 15);
    assert_eq!(apply(CreditsOperation::Increment(trillion)), trillion, "increment is capped at 10^12");
    assert_eq!(apply(CreditsOperation::Decrement(4)), 6);
    assert_eq!(apply(CreditsOperation::Decrement(11)), 0, "decrement clamps at zero");
    assert!(CreditBalance::restore(trillion + 1, at(0)).is_err());
    // A refill day passed before the operation applies first, so that it
    // cannot undo the operation later.
    let daily = Refill::parse("daily", 100, None).expect("daily");
    let yesterday = CreditBalance::restore(2, datetime!(2026-03-10 09:00 UTC)).expect("balance");
    let now = datetime!(2026-03-11 08:00 UTC);
    let incremented = yesterday.apply(CreditsOperation::Increment(5), Some(&daily), now);
    assert_eq!((incremented.remaining(), incremented.refilled_at()), (105, datetime!(2026-03-11 00:00 UTC)));
    assert_eq!(incremented.refreshed(Some(&daily), now + Duration::hours(10)), incremented);
}

// ---- The refill calendar.

#[test]
fn refills_fall_on_their_calendar_days() {
    let daily = Refill::parse("daily", 1, None).expect("daily");
    let monthly = |day| Refill::parse("monthly", 1, Some(day)).expect("monthly");
    type Case = (&'static str, Refill, OffsetDateTime, OffsetDateTime, Option<OffsetDateTime>);
    let cases: Vec<Case> = vec![
        ("same day", daily, datetime!(2026-03-10 15:00 UTC), datetime!(2026-03-10 23:59:59.999999999 UTC), None),
        (
            "next midnight",
            daily,
            datetime!(2026-03-10 15:00 UTC),
            datetime!(2026-03-11 00:00 UTC),
            Some(datetime!(2026-03-11 00:00 UTC)),
        ),
        (
            "several days at once",
            daily,
            datetime!(2026-03-10 15:00 UTC),
            datetime!(2026-03-14 09:00 UTC),
            Some(datetime!(2026-03-14 00:00 UTC)),
        ),
        ("set at midnight", daily, datetime!(2026-03-11 00:00 UTC), datetime!(2026-03-11 12:00 UTC), None),
        ("now before last", daily, datetime!(2026-03-12 10:00 UTC), datetime!(2026-03-11 12:00 UTC), None),
        (
            "a later offset, same UTC day",
            daily,
            datetime!(2026-03-10 12:00 UTC),
            datetime!(2026-03-11 01:30 +02:00),
            None,
        ),
        (
            "an earlier offset, next UTC day",
            daily,
            datetime!(2026-03-10 12:00 UTC),
            datetime!(2026-03-10 23:30 -02:00),
            Some(datetime!(2026-03-11 00:00 UTC)),
        ),
        ("31 in April", monthly(31), datetime!(2026-04-01 00:00 UTC), datetime!(2026-04-29 23:59 UTC), None),
        (
            "31 in April is the 30th",
            monthly(31),
            datetime!(2026-04-01 00:00 UTC),
            datetime!(2026-04-30 00:00 UTC),
            Some(datetime!(2026-04-30 00:00 UTC)),
        ),
        (
            "31 in March",
            monthly(31),
            datetime!(2026-03-01 00:00 UTC),
            datetime!(2026-03-31 06:00 UTC),
            Some(datetime!(2026-03-31 00:00 UTC)),
        ),
        (
            "31 in February of a common year",
            monthly(31),
            datetime!(2026-02-01 00:00 UTC),
            datetime!(2026-02-28 00:00 UTC),
            Some(datetime!(2026-02-28 00:00 UTC)),
        ),
        (
            "31 in February of a leap year, the 28th",
            monthly(31),
            datetime!(2028-02-01 00:00 UTC),
            datetime!(2028-02-28 12:00 UTC),
            None,
        ),
        (
            "31 in February of a leap year",
            monthly(31),
            datetime!(2028-02-01 00:00 UTC),
            datetime!(2028-02-29 00:00 UTC),
            Some(datetime!(2028-02-29 00:00 UTC)),
        ),
        (
            "29 in February 2100, not a leap year",
            monthly(29),
            datetime!(2100-02-01 00:00 UTC),
            datetime!(2100-02-28 00:00 UTC),
            Some(datetime!(2100-02-28 00:00 UTC)),
        ),
        (
            "30 in February 2000, a leap year",
            monthly(30),
            datetime!(2000-02-01 00:00 UTC),
            datetime!(2000-02-28 23:00 UTC),
            None,
        ),
        (
            "the previous month's day",
            monthly(15),
            datetime!(2026-02-01 00:00 UTC),
            datetime!(2026-03-10 00:00 UTC),
            Some(datetime!(2026-02-15 00:00 UTC)),
        ),
        (
            "the previous, shorter month",
            monthly(31),
            datetime!(2026-01-01 00:00 UTC),
            datetime!(2026-03-05 00:00 UTC),
            Some(datetime!(2026-02-28 00:00 UTC)),
        ),
        (
            "the previous year's December",
            monthly(31),
            datetime!(2025-12-01 00:00 UTC),
            datetime!(2026-01-10 00:00 UTC),
            Some(datetime!(2025-12-31 00:00 UTC)),
        ),
        (
            "new year",
            monthly(1),
            datetime!(2026-12-15 00:00 UTC),
            datetime!(2027-01-01 00:00 UTC),
            Some(datetime!(2027-01-01 00:00 UTC)),
        ),
        (
            "several months at once",
            monthly(1),
            datetime!(2026-01-05 00:00 UTC),
            datetime!(2026-06-20 00:00 UTC),
            Some(datetime!(2026-06-01 00:00 UTC)),
        ),
        ("already refilled", monthly(1), datetime!(2026-06-01 00:00 UTC), datetime!(2026-06-20 00:00 UTC), None),
    ];
    for (case, refill, last, now, expected) in cases {
        assert_eq!(refill.due(last, now), expected, "{case}");
    }
}

#[test]
fn the_next_refill_follows_the_calendar() {
    let daily = Refill::parse("daily", 1, None).expect("daily");
    let monthly = |day| Refill::parse("monthly", 1, Some(day)).expect("monthly");
    let cases = [
        (daily, datetime!(2026-03-10 15:00 UTC), datetime!(2026-03-11 00:00 UTC)),
        (daily, datetime!(2026-03-11 00:00 UTC), datetime!(2026-03-12 00:00 UTC)),
        (monthly(31), datetime!(2026-01-31 00:00 UTC), datetime!(2026-02-28 00:00 UTC)),
        (monthly(31), datetime!(2026-02-28 00:00 UTC), datetime!(2026-03-31 00:00 UTC)),
        (monthly(29), datetime!(2027-01-29 00:00 UTC), datetime!(2027-02-28 00:00 UTC)),
        (monthly(29), datetime!(2028-01-29 00:00 UTC), datetime!(2028-02-29 00:00 UTC)),
        (monthly(31), datetime!(2026-12-31 08:00 UTC), datetime!(2027-01-31 00:00 UTC)),
        (monthly(15), datetime!(2026-03-14 23:59 UTC), datetime!(2026-03-15 00:00 UTC)),
    ];
    for (refill, after, expected) in cases {
        assert_eq!(refill.next_after(after), Some(expected), "{refill:?} after {after}");
        // The refill due just then is that one.
        assert_eq!(refill.due(after, expected), Some(expected));
        assert_eq!(refill.due(after, expected - Duration::NANOSECOND), None);
    }
}

#[test]
fn a_refill_sets_the_balance_and_does_not_accumulate() {
    let monthly = Refill::parse("monthly", 50, Some(31)).expect("monthly");
    let balance = CreditBalance::restore(7, datetime!(2026-01-15 10:00 UTC)).expect("balance");
    let later = balance.refreshed(Some(&monthly), datetime!(2026-05-02 00:00 UTC));
    assert_eq!((later.remaining(), later.refilled_at()), (50, datetime!(2026-04-30 00:00 UTC)));
    assert_eq!(balance.refreshed(None, datetime!(2027-01-01 00:00 UTC)), balance);
    assert_eq!(balance.spend(cost(7)).map(|spent| spent.remaining()), Some(0));
    assert_eq!(balance.spend(cost(8)), None);
}

// ---- GCRA.

/// The contract's corners: 1 per second, 1 per day, uneven intervals, and
/// 10⁹ per second (an interval of 1 ns) or per day.
const SHAPES: [(u64, u64); 9] = [
    (1, 1),
    (1, 86_400),
    (3, 1),
    (10, 60),
    (7, 3),
    (100, 86_400),
    (999_999_937, 7),
    (1_000_000_000, 1),
    (1_000_000_000, 86_400),
];

/// Takes `tokens` at `now` in requests of at most [`Cost::MAX`], each of
/// which must be admitted.
fn take(
    rate_limit: &RateLimit,
    mut state: Option<RateLimitState>,
    tokens: u64,
    now: OffsetDateTime,
) -> Option<RateLimitState> {
    let mut left = tokens;
    while left > 0 {
        let chunk = left.min(Cost::MAX);
        let check = rate_limit.check(state.as_ref(), cost(chunk), now);
        state = Some(admitted(&check).unwrap_or_else(|| panic!("{rate_limit:?}: {left} of {tokens} refused")));
        left -= chunk;
    }
    state
}

#[test]
fn a_burst_of_limit_is_admitted_the_next_refused_and_whole_again_after_duration() {
    for (value, duration) in SHAPES {
        let rate_limit = limit("calls", value, duration, true);
        let start = at(0);
        let idle = rate_limit.check(None, cost(0), start);
        assert_eq!((idle.remaining, idle.reset_at), (value, start), "{value}/{duration}");
        let state = take(&rate_limit, None, value, start);
        let next = rate_limit.check(state.as_ref(), Cost::ONE, start);
        let interval_nanos = (duration * 1_000_000_000).div_ceil(value);
        let expected_retry = start + Duration::nanoseconds(interval_nanos as i64);
        assert_eq!(next.outcome, RateLimitOutcome::Refused { retry_at: Some(expected_retry) }, "{value}/{duration}");
        assert_eq!((next.remaining, next.reset_at), (0, start + Duration::seconds(duration as i64)));
        // The retry instant admits it, a nanosecond earlier does not.
        assert!(admitted(&rate_limit.check(state.as_ref(), Cost::ONE, expected_retry)).is_some());
        let early = rate_limit.check(state.as_ref(), Cost::ONE, expected_retry - Duration::NANOSECOND);
        assert!(admitted(&early).is_none(), "{value}/{duration}");
        // Whole again after `duration` idle, not a nanosecond before.
        let whole = start + Duration::seconds(duration as i64);
        assert_eq!(rate_limit.check(state.as_ref(), cost(0), whole).remaining, value);
        assert!(rate_limit.check(state.as_ref(), cost(0), whole - Duration::NANOSECOND).remaining < value);
        assert!(state.is_some_and(|state| state.is_idle(whole) && !state.is_idle(whole - Duration::NANOSECOND)));
        let again = take(&rate_limit, state, value, whole);
        assert!(admitted(&rate_limit.check(again.as_ref(), Cost::ONE, whole)).is_none());
    }
}

#[test]
fn steady_overload_is_admitted_at_limit_per_duration_within_5_percent() {
    for (value, duration) in SHAPES {
        let rate_limit = limit("calls", value, duration, true);
        // Requests as large as a cost may be, so that 10⁹ per second is
        // 1,000 requests a second, arriving five times faster than the
        // limit lets them through, for 20 windows.
        let chunk = value.div_ceil(1_000).min(Cost::MAX);
        let window = i128::from(duration) * 1_000_000_000;
        let gap = (window * i128::from(chunk) / i128::from(value) / 5).max(1);
        let windows = 20;
        let (mut state, mut admitted_tokens, mut elapsed) = (None, 0u64, 0i128);
        while elapsed <= windows * window {
            let now = at(0) + Duration::nanoseconds(elapsed as i64);
            if let Some(next) = admitted(&rate_limit.check(state.as_ref(), cost(chunk), now)) {
                state = Some(next);
                admitted_tokens += chunk;
            }
            elapsed += gap;
        }
        // Beyond the first burst of `limit`, the rate is limit/duration.
        let steady = (admitted_tokens - value) as f64 / (value * windows as u64) as f64;
        assert!((0.95..=1.05).contains(&steady), "{value}/{duration}: admitted {steady} of the limit's rate");
    }
}

#[test]
fn a_cost_takes_that_many_tokens_and_one_above_the_limit_never_passes() {
    let rate_limit = limit("tokens", 10, 10, true);
    let first = rate_limit.check(None, cost(4), at(0));
    assert_eq!((first.remaining, first.reset_at), (6, at(4)));
    let state = admitted(&first);
    let second = rate_limit.check(state.as_ref(), cost(7), at(0));
    assert_eq!(second.outcome, RateLimitOutcome::Refused { retry_at: Some(at(1)) });
    assert_eq!((second.remaining, second.reset_at), (6, at(4)));
    let never = rate_limit.check(None, cost(11), at(0));
    assert_eq!((never.outcome, never.remaining), (RateLimitOutcome::Refused { retry_at: None }, 10));
}

#[test]
fn a_counter_is_16_bytes_and_survives_a_changed_limit_and_a_clock_going_back() {
    assert_eq!(std::mem::size_of::<RateLimitState>(), 16);
    let ten = limit("calls", 10, 10, true);
    let state = take(&ten, None, 10, at(0));
    // The limit lowered to 5 per 10 s: the bucket is still taken until
    // at(10), and one token of the new size is back 2 s before that.
    let five = limit("calls", 5, 10, true);
    let check = five.check(state.as_ref(), Cost::ONE, at(0));
    assert_eq!((check.outcome, check.remaining), (RateLimitOutcome::Refused { retry_at: Some(at(2)) }, 0));
    // An uneven remainder converted to another limit rounds up, never down.
    let third = limit("calls", 3, 1, true);
    let uneven = admitted(&third.check(None, Cost::ONE, at(0))).expect("admitted");
    assert_eq!(
        (uneven.tat_nanos(), uneven.remainder(), uneven.denominator()),
        (at(0).unix_timestamp_nanos() as i64 + 333_333_333, 1, 3)
    );
    let converted = limit("calls", 2, 1, true).check(Some(&uneven), cost(0), at(0));
    assert_eq!(converted.reset_at, at(0) + Duration::nanoseconds(333_333_334));
    // The clock going back an hour admits nothing more.
    let check = ten.check(state.as_ref(), Cost::ONE, at(-3600));
    assert!(admitted(&check).is_none());
    assert_eq!(
        RateLimitState::restore(5, 3, 3),
        Err(CoreError::InconsistentRecord {
            kind: "rate limit counter",
            reason: "its remainder is not a fraction of its denominator"
        })
    );
    assert!(RateLimitState::restore(5, 0, 0).is_err());
    let restored = RateLimitState::restore(uneven.tat_nanos(), uneven.remainder(), uneven.denominator());
    assert_eq!(restored, Ok(uneven));
}

#[test]
fn instants_past_the_counters_range_are_decided_without_panicking() {
    let rate_limit = limit("calls", 2, 86_400, true);
    let (first, last) = (PrimitiveDateTime::MIN.assume_utc(), PrimitiveDateTime::MAX.assume_utc());
    for now in [first, datetime!(2262-04-12 00:00 UTC), last] {
        let state = take(&rate_limit, None, 2, now);
        assert!(admitted(&rate_limit.check(state.as_ref(), Cost::ONE, now)).is_none(), "{now}");
    }
    let refill = Refill::parse("monthly", 5, Some(31)).expect("monthly");
    assert_eq!(refill.due(first, first + Duration::days(14)), None);
    assert_eq!(refill.next_after(last), None);
}

// ---- The decision.

struct Sides {
    key: (MeterSubject, Meter),
    identity: Option<(MeterSubject, Meter)>,
}

impl Sides {
    fn decide(&self, request: &MeterRequest, counters: &CounterSnapshot, now: OffsetDateTime) -> Decision {
        let key = Metered { subject: &self.key.0, meter: &self.key.1 };
        let identity = self.identity.as_ref().map(|(subject, meter)| Metered { subject, meter });
        decide(request, key, identity, counters, now)
    }

    /// Decides and stores what an admission changes.
    fn verify(&self, request: &MeterRequest, counters: &mut CounterSnapshot, now: OffsetDateTime) -> Decision {
        let decision = self.decide(request, counters, now);
        if let Decision::Admit { updates, .. } = &decision {
            counters.store(updates.clone());
        }
        decision
    }
}

fn request(credits: u64, named: &[(&str, Option<u64>)]) -> MeterRequest {
    MeterRequest { cost: cost(credits), rate_limits: RateLimitRequests::parse(named.iter().copied()).expect("valid") }
}

fn metered(
    rate_limits: RateLimits,
    credits: Option<(u64, Option<Refill>)>,
    subject: &MeterSubject,
    counters: &mut CounterSnapshot,
) -> Meter {
    let credits = credits.map(|(remaining, refill)| {
        let (rule, balance) = Credits::parse(remaining, refill).expect("credits").start(at(0));
        counters.set_credits(subject, balance);
        rule
    });
    Meter { rate_limits, credits }
}

fn applied(decision: &Decision) -> Vec<(MeterOwner, &str, u64, bool)> {
    let report = decision.report();
    report.rate_limits.iter().map(|limit| (limit.owner, limit.name.as_str(), limit.remaining, limit.exceeded)).collect()
}

#[test]
fn an_unmetered_key_is_admitted_with_nothing_to_report() {
    let sides = Sides { key: (key_subject(), Meter::default()), identity: None };
    let decision = sides.decide(&MeterRequest::default(), &CounterSnapshot::default(), at(0));
    assert_eq!(decision, Decision::Admit { updates: CounterUpdates::default(), report: MeterReport::default() });
    assert_eq!((decision.reason(), decision.retry_after_seconds(at(0))), (None, None));
}

#[test]
fn auto_applied_and_named_limits_of_the_key_and_its_identity_apply_and_unknown_names_are_ignored() {
    let mut counters = CounterSnapshot::default();
    let key_limits = limits(vec![limit("calls", 5, 60, true), limit("tokens", 100, 60, false)]);
    let identity_limits = limits(vec![limit("calls", 50, 60, true), limit("search", 2, 60, false)]);
    let sides = Sides {
        key: (key_subject(), Meter { rate_limits: key_limits, credits: None }),
        identity: Some((identity_subject(), Meter { rate_limits: identity_limits, credits: None })),
    };
    let plain = sides.verify(&request(1, &[]), &mut counters, at(0));
    assert_eq!(applied(&plain), [(MeterOwner::Key, "calls", 4, false), (MeterOwner::Identity, "calls", 49, false)]);
    let named = sides.verify(
        &request(1, &[("tokens", Some(30)), ("search", None), ("ghost", Some(9)), ("calls", Some(2))]),
        &mut counters,
        at(0),
    );
    assert!(named.is_admitted());
    assert_eq!(
        applied(&named),
        [
            (MeterOwner::Key, "calls", 2, false),
            (MeterOwner::Key, "tokens", 70, false),
            (MeterOwner::Identity, "calls", 47, false),
            (MeterOwner::Identity, "search", 1, false),
        ]
    );
    let report = &named.report().rate_limits[1];
    assert_eq!((report.limit, report.duration_seconds, report.reset_at), (100, 60, at(18)));
}

#[test]
fn a_refusal_by_any_limit_takes_nothing_from_any_limit_or_balance() {
    let mut counters = CounterSnapshot::default();
    let key = key_subject();
    let identity = identity_subject();
    let key_meter = metered(limits(vec![limit("calls", 10, 10, true)]), Some((5, None)), &key, &mut counters);
    let identity_meter = metered(limits(vec![limit("burst", 1, 10, true)]), Some((5, None)), &identity, &mut counters);
    let sides = Sides { key: (key, key_meter), identity: Some((identity, identity_meter)) };
    assert!(sides.verify(&request(1, &[]), &mut counters, at(0)).is_admitted());
    let before = counters.clone();
    let refused = sides.verify(&request(1, &[]), &mut counters, at(1));
    let Decision::RateLimited { owner, name, retry_at, report } = &refused else { panic!("{refused:?}") };
    assert_eq!((owner, name.as_str(), *retry_at), (&MeterOwner::Identity, "burst", Some(at(10))));
    assert_eq!(report.credits, Some(4), "the key's balance, unspent");
    assert_eq!(applied(&refused), [(MeterOwner::Key, "calls", 10, false), (MeterOwner::Identity, "burst", 0, true)]);
    assert_eq!((refused.reason(), refused.retry_after_seconds(at(1))), (Some("rate_limited"), Some(9)));
    assert_eq!(counters, before, "a refused verification changes no counter");
    // Refused for as long as the tightest limit says, then admitted.
    assert!(!sides.verify(&request(1, &[]), &mut counters, at(10) - Duration::NANOSECOND).is_admitted());
    assert!(sides.verify(&request(1, &[]), &mut counters, at(10)).is_admitted());
}

#[test]
fn every_refusing_limit_is_exceeded_and_the_retry_waits_for_all_of_them() {
    let mut counters = CounterSnapshot::default();
    let rate_limits =
        limits(vec![limit("second", 1, 1, true), limit("minute", 2, 60, true), limit("never", 3, 60, false)]);
    let sides = Sides { key: (key_subject(), Meter { rate_limits, credits: None }), identity: None };
    assert!(sides.verify(&request(1, &[]), &mut counters, at(0)).is_admitted());
    assert!(sides.verify(&request(1, &[]), &mut counters, at(1)).is_admitted());
    let refused = sides.verify(&request(1, &[]), &mut counters, at(1));
    let Decision::RateLimited { name, retry_at, .. } = &refused else { panic!("{refused:?}") };
    assert_eq!((name.as_str(), *retry_at), ("second", Some(at(30))));
    assert_eq!(applied(&refused), [(MeterOwner::Key, "second", 0, true), (MeterOwner::Key, "minute", 0, true)]);
    let hopeless = sides.decide(&request(1, &[("never", Some(4))]), &counters, at(100));
    assert!(matches!(hopeless, Decision::RateLimited { retry_at: None, .. }), "{hopeless:?}");
}

#[test]
fn credits_are_spent_from_each_balance_and_refused_when_any_would_go_below_zero() {
    let mut counters = CounterSnapshot::default();
    let key = key_subject();
    let identity = identity_subject();
    let key_meter = metered(RateLimits::default(), Some((10, None)), &key, &mut counters);
    let identity_meter =
        metered(limits(vec![limit("calls", 100, 60, true)]), Some((3, None)), &identity, &mut counters);
    let sides = Sides { key: (key, key_meter), identity: Some((identity, identity_meter)) };
    let first = sides.verify(&request(2, &[]), &mut counters, at(0));
    assert_eq!(first.report().credits, Some(8), "the key's balance when the key is metered");
    let before = counters.clone();
    let refused = sides.verify(&request(2, &[]), &mut counters, at(1));
    let Decision::UsageExceeded { owner, report } = &refused else { panic!("{refused:?}") };
    assert_eq!((owner, report.credits, refused.reason()), (&MeterOwner::Identity, Some(8), Some("usage_exceeded")));
    assert_eq!(applied(&refused), [(MeterOwner::Identity, "calls", 100, false)], "the limit is not taken");
    assert_eq!(counters, before);
    assert!(sides.verify(&request(1, &[]), &mut counters, at(2)).is_admitted());
    assert!(sides.verify(&request(0, &[]), &mut counters, at(3)).is_admitted(), "a cost of 0 passes an empty balance");
    assert!(!sides.verify(&request(1, &[]), &mut counters, at(4)).is_admitted());
}

#[test]
fn the_identity_balance_is_reported_when_the_key_is_not_metered_and_a_missing_balance_refuses() {
    let mut counters = CounterSnapshot::default();
    let identity = identity_subject();
    let identity_meter = metered(RateLimits::default(), Some((4, None)), &identity, &mut counters);
    let sides = Sides { key: (key_subject(), Meter::default()), identity: Some((identity, identity_meter)) };
    assert_eq!(sides.verify(&request(3, &[]), &mut counters, at(0)).report().credits, Some(1));
    let lost = Sides {
        key: (key_subject(), Meter { rate_limits: RateLimits::default(), credits: Some(CreditRule::default()) }),
        identity: None,
    };
    let refused = lost.decide(&request(1, &[]), &counters, at(0));
    assert_eq!((refused.reason(), refused.report().credits), (Some("usage_exceeded"), Some(0)));
}

#[test]
fn a_refill_day_passed_refills_before_spending_and_is_stored_with_the_spend() {
    let mut counters = CounterSnapshot::default();
    let key = key_subject();
    let daily = Refill::parse("daily", 5, None).expect("daily");
    let meter = metered(RateLimits::default(), Some((1, Some(daily))), &key, &mut counters);
    let sides = Sides { key: (key.clone(), meter), identity: None };
    assert!(sides.verify(&request(1, &[]), &mut counters, at(0)).is_admitted());
    assert!(!sides.verify(&request(1, &[]), &mut counters, at(60)).is_admitted());
    let midnight = (at(0) + Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    let refilled = sides.verify(&request(2, &[]), &mut counters, midnight);
    assert_eq!(refilled.report().credits, Some(3));
    let balance = counters.credits(&key).expect("balance");
    assert_eq!((balance.remaining(), balance.refilled_at()), (3, midnight));
    // The same day's refill is not applied twice.
    assert_eq!(sides.verify(&request(3, &[]), &mut counters, midnight + Duration::hours(20)).report().credits, Some(0));
}

#[test]
fn a_rolled_key_and_its_successor_draw_on_one_subject() {
    // The roll hands the subject on: both keys present the first key's
    // root, so verifications of either drain the same limit and balance,
    // and a key with another root does not.
    let mut counters = CounterSnapshot::default();
    let subject = key_subject();
    let meter = metered(limits(vec![limit("calls", 2, 60, true)]), Some((3, None)), &subject, &mut counters);
    let old_key = Sides { key: (subject.clone(), meter.clone()), identity: None };
    let new_key = Sides { key: (subject, meter.clone()), identity: None };
    assert!(old_key.verify(&request(1, &[]), &mut counters, at(0)).is_admitted());
    assert!(new_key.verify(&request(1, &[]), &mut counters, at(0)).is_admitted());
    assert_eq!(old_key.verify(&request(1, &[]), &mut counters, at(0)).reason(), Some("rate_limited"));
    assert_eq!(new_key.verify(&request(1, &[]), &mut counters, at(30)).report().credits, Some(0));
    assert_eq!(old_key.verify(&request(1, &[]), &mut counters, at(120)).reason(), Some("usage_exceeded"));
    let other = MeterSubject::ApiKey { root: ApiKeyId::generate(at(1), &mut rng()) };
    let stranger = Sides { key: (other.clone(), meter), identity: None };
    counters.set_credits(&other, Credits::parse(1, None).expect("credits").start(at(0)).1);
    assert!(stranger.verify(&request(1, &[]), &mut counters, at(120)).is_admitted());
}
