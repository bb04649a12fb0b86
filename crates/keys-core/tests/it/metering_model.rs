//! A model-based property test of metering.
//!
//! Random keys and identities (0 to 3 limits each, auto-applied or named,
//! credits with or without a daily or monthly refill) take random traffic
//! (costs, named limits, unknown names), random time steps (none, up to 2
//! s, 10 s, 120 s, or 40 days) from a random start between 1970 and 2200,
//! and random credit operations. `keys_core::meter::decide` (the system
//! under test, GCRA over ticks) and a reference model written the other way
//! round (a token bucket that counts tokens in exact integers, an integer
//! balance, refill days found by walking back one day at a time) decide
//! side by side. After every step:
//! - the decisions agree: outcome, the refusing limit, `retry_at`, every
//!   applied limit's `remaining`, `reset_at` and `exceeded`, the credits;
//! - the counters agree, and a refusal changed none of them (deciding it
//!   again gives the same answer);
//! - the bucket bound holds for every limit: the tokens admitted in any
//!   closed interval of length `w` are at most `limit × (w + duration) /
//!   duration`, so at most `2 × limit` in any window of `duration`;
//! - no balance goes below zero, and the credits admitted never exceed the
//!   credits granted (the starting balance plus every refill, set and
//!   increment that raised it).

use crate::common::*;
use keys_core::meter::*;
use keys_core::*;
use proptest::prelude::*;
use proptest::sample::select;
use time::{Date, Duration, OffsetDateTime, UtcOffset};

const NAMES: [&str; 5] = ["a", "b", "c", "d", "ghost"];
const NANOS: i128 = 1_000_000_000;

#[derive(Debug, Clone)]
struct LimitSpec {
    name: usize,
    limit: u64,
    duration_seconds: u64,
    auto_apply: bool,
}

/// A refill: monthly on a day, or daily; and its amount.
#[derive(Debug, Clone, Copy)]
struct RefillSpec {
    monthly_day: Option<u64>,
    amount: u64,
}

#[derive(Debug, Clone)]
struct SideSpec {
    limits: Vec<LimitSpec>,
    credits: Option<(u64, Option<RefillSpec>)>,
}

#[derive(Debug, Clone)]
enum Op {
    Verify { cost: u64, named: Vec<(usize, Option<u64>)> },
    Tick(i64),
    Credits { identity: bool, operation: &'static str, value: u64 },
}

fn refill_spec() -> impl Strategy<Value = RefillSpec> {
    (proptest::option::of(1u64..=31), 0u64..20).prop_map(|(monthly_day, amount)| RefillSpec { monthly_day, amount })
}

fn side() -> impl Strategy<Value = SideSpec> {
    let limit =
        (0..4usize, select(vec![1u64, 2, 3, 5, 7, 100]), select(vec![1u64, 2, 3, 5, 60]), any::<bool>()).prop_map(
            |(name, limit, duration_seconds, auto_apply)| LimitSpec { name, limit, duration_seconds, auto_apply },
        );
    let credits = proptest::option::of((0u64..20, proptest::option::of(refill_spec())));
    (proptest::collection::vec(limit, 0..4), credits).prop_map(|(mut limits, credits)| {
        let mut seen = Vec::new();
        limits.retain(|limit| {
            !seen.contains(&limit.name) && {
                seen.push(limit.name);
                true
            }
        });
        SideSpec { limits, credits }
    })
}

fn op() -> impl Strategy<Value = Op> {
    let second = NANOS as i64;
    let step = prop_oneof![
        2 => Just(0i64),
        3 => 0..=2 * second,
        2 => 0..=10 * second,
        2 => 0..=120 * second,
        1 => 0..=40 * 86_400 * second,
    ];
    let named = proptest::collection::vec((0..NAMES.len(), proptest::option::of(0u64..4)), 0..3);
    prop_oneof![
        6 => (prop_oneof![3 => 0u64..4, 1 => 0u64..30], named).prop_map(|(cost, named)| Op::Verify { cost, named }),
        4 => step.prop_map(Op::Tick),
        1 => (any::<bool>(), select(vec!["set", "increment", "decrement"]), 0u64..25)
            .prop_map(|(identity, operation, value)| Op::Credits { identity, operation, value }),
    ]
}

// ---- The reference model: tokens counted the plain way, integers only.

/// A token bucket holding `scaled / duration_nanos` tokens as of `at`
/// (nanoseconds since the epoch), refilled at `limit` tokens per
/// `duration_nanos`, never above `limit`.
#[derive(Debug, Clone)]
struct RefLimit {
    owner: MeterOwner,
    name: &'static str,
    limit: i128,
    duration_nanos: i128,
    auto_apply: bool,
    scaled: i128,
    at: i128,
    /// Every admission: when, and how many tokens.
    admitted: Vec<(i128, i128)>,
}

/// What the model decides for one limit at one instant.
#[derive(Debug, PartialEq, Eq)]
struct RefCheck {
    admitted: bool,
    remaining: u64,
    reset_at: OffsetDateTime,
    retry_at: Option<OffsetDateTime>,
}

fn nanos_instant(nanos: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(nanos).expect("in range")
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    numerator.div_euclid(denominator) + i128::from(numerator.rem_euclid(denominator) != 0)
}

impl RefLimit {
    fn capacity(&self) -> i128 {
        self.limit * self.duration_nanos
    }

    /// The scaled tokens at `now`.
    fn tokens(&self, now: i128) -> i128 {
        (self.scaled + (now - self.at) * self.limit).min(self.capacity())
    }

    fn check(&self, cost: i128, now: i128) -> RefCheck {
        let tokens = self.tokens(now);
        let wanted = cost * self.duration_nanos;
        let admitted = tokens >= wanted;
        let after = if admitted { tokens - wanted } else { tokens };
        RefCheck {
            admitted,
            remaining: (after / self.duration_nanos) as u64,
            reset_at: nanos_instant(now + ceil_div(self.capacity() - after, self.limit)),
            retry_at: (!admitted && cost <= self.limit)
                .then(|| nanos_instant(now + ceil_div(wanted - tokens, self.limit))),
        }
    }

    fn take(&mut self, cost: i128, now: i128) {
        self.scaled = self.tokens(now) - cost * self.duration_nanos;
        self.at = now;
        self.admitted.push((now, cost));
    }

    /// The bucket bound over every interval that ends with the last
    /// admission.
    fn assert_bucket_bound(&self) {
        let Some(&(end, _)) = self.admitted.last() else { return };
        let mut tokens = 0;
        for &(start, cost) in self.admitted.iter().rev() {
            tokens += cost;
            let length = end - start;
            assert!(
                tokens * self.duration_nanos <= self.limit * (length + self.duration_nanos),
                "{}: {tokens} tokens in {length} ns past the bound of {} per {} ns",
                self.name,
                self.limit,
                self.duration_nanos
            );
            if length <= self.duration_nanos {
                assert!(tokens <= 2 * self.limit, "{}: more than twice the limit in one window", self.name);
            }
        }
    }
}

/// Whether `day` is a refill day: every day, or the day of the month (the
/// month's last day when it is shorter), found without the calendar
/// arithmetic the implementation uses.
fn is_refill_day(refill: &RefillSpec, day: Date) -> bool {
    let Some(refill_day) = refill.monthly_day else { return true };
    let last_of_month = day.next_day().is_none_or(|next| next.month() != day.month());
    u64::from(day.day()) == refill_day || (last_of_month && refill_day > u64::from(day.day()))
}

/// The latest refill instant in `(last, now]`, walking back a day at a time.
fn naive_due(refill: &RefillSpec, last: OffsetDateTime, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let mut day = now.to_offset(UtcOffset::UTC).date();
    loop {
        let instant = day.midnight().assume_utc();
        if instant <= last {
            return None;
        }
        if instant <= now && is_refill_day(refill, day) {
            return Some(instant);
        }
        day = day.previous_day()?;
    }
}

#[derive(Debug, Clone)]
struct RefCredits {
    remaining: u64,
    refilled_at: OffsetDateTime,
    refill: Option<RefillSpec>,
    granted: u64,
    spent: u64,
}

impl RefCredits {
    /// The balance at `now`, and the refill instant when one is due.
    fn at(&self, now: OffsetDateTime) -> (u64, Option<OffsetDateTime>) {
        match self.refill.as_ref().and_then(|refill| naive_due(refill, self.refilled_at, now).map(|at| (refill, at))) {
            Some((refill, at)) => (refill.amount, Some(at)),
            None => (self.remaining, None),
        }
    }

    /// Sets the balance, counting what it raised as granted.
    fn set(&mut self, remaining: u64) {
        self.granted += remaining.saturating_sub(self.remaining);
        self.remaining = remaining;
    }

    fn refresh(&mut self, now: OffsetDateTime) {
        if let (amount, Some(at)) = self.at(now) {
            self.set(amount);
            self.refilled_at = at;
        }
    }
}

#[derive(Debug, Clone)]
struct Model {
    limits: Vec<RefLimit>,
    key_credits: Option<RefCredits>,
    identity_credits: Option<RefCredits>,
}

/// What the model decides for a verification.
#[derive(Debug, PartialEq, Eq)]
enum RefOutcome {
    Admit,
    RateLimited { owner: MeterOwner, name: &'static str, retry_at: Option<OffsetDateTime> },
    UsageExceeded { owner: MeterOwner },
}

impl Model {
    /// Decides and, when admitted, takes: each applied limit's check, the
    /// credits shown, and the outcome.
    fn verify(
        &mut self,
        cost: u64,
        named: &[(&'static str, u64)],
        now: OffsetDateTime,
    ) -> (Vec<(usize, RefCheck)>, Option<u64>, RefOutcome) {
        let now_nanos = now.unix_timestamp_nanos();
        let named_cost = |name: &str| named.iter().find(|(named, _)| *named == name).map(|(_, cost)| *cost);
        let mut checks = Vec::new();
        for (index, limit) in self.limits.iter().enumerate() {
            let Some(tokens) = named_cost(limit.name).or(limit.auto_apply.then_some(1)) else { continue };
            checks.push((index, i128::from(tokens), limit.check(i128::from(tokens), now_nanos)));
        }
        let balances: Vec<(MeterOwner, u64)> =
            [(MeterOwner::Key, &self.key_credits), (MeterOwner::Identity, &self.identity_credits)]
                .into_iter()
                .filter_map(|(owner, credits)| credits.as_ref().map(|credits| (owner, credits.at(now).0)))
                .collect();
        let shown = balances.first().map(|(_, remaining)| *remaining);
        let refused: Vec<&(usize, i128, RefCheck)> = checks.iter().filter(|(_, _, check)| !check.admitted).collect();
        if let Some((first, _, _)) = refused.first() {
            let retry_at = refused.iter().map(|(_, _, check)| check.retry_at).try_fold(
                None,
                |latest: Option<OffsetDateTime>, retry| {
                    retry.map(|retry| Some(latest.map_or(retry, |latest| latest.max(retry))))
                },
            );
            let limit = &self.limits[*first];
            let outcome =
                RefOutcome::RateLimited { owner: limit.owner, name: limit.name, retry_at: retry_at.flatten() };
            return (self.untouched(checks, now_nanos), shown, outcome);
        }
        if let Some((owner, _)) = balances.iter().find(|(_, remaining)| *remaining < cost) {
            return (self.untouched(checks, now_nanos), shown, RefOutcome::UsageExceeded { owner: *owner });
        }
        for (index, tokens, _) in &checks {
            self.limits[*index].take(*tokens, now_nanos);
        }
        for credits in [&mut self.key_credits, &mut self.identity_credits].into_iter().flatten() {
            credits.refresh(now);
            credits.remaining -= cost;
            credits.spent += cost;
        }
        let shown =
            [&self.key_credits, &self.identity_credits].into_iter().flatten().next().map(|credits| credits.remaining);
        (checks.into_iter().map(|(index, _, check)| (index, check)).collect(), shown, RefOutcome::Admit)
    }

    /// A refusal reports every limit as it stands (the refusing ones as
    /// refused).
    fn untouched(&self, checks: Vec<(usize, i128, RefCheck)>, now: i128) -> Vec<(usize, RefCheck)> {
        checks
            .into_iter()
            .map(
                |(index, _, check)| {
                    if check.admitted {
                        (index, self.limits[index].check(0, now))
                    } else {
                        (index, check)
                    }
                },
            )
            .collect()
    }
}

// ---- The system under test, set up from the same specs.

struct Setup {
    key: (MeterSubject, Meter),
    identity: Option<(MeterSubject, Meter)>,
    counters: CounterSnapshot,
    model: Model,
}

fn refill_of(spec: &RefillSpec) -> Refill {
    let interval = if spec.monthly_day.is_some() { "monthly" } else { "daily" };
    Refill::parse(interval, spec.amount, spec.monthly_day).expect("valid refill")
}

fn set_up(key: &SideSpec, identity: Option<&SideSpec>, start: OffsetDateTime) -> Setup {
    let mut counters = CounterSnapshot::default();
    let mut model = Model { limits: Vec::new(), key_credits: None, identity_credits: None };
    let mut side = |spec: &SideSpec, owner: MeterOwner, subject: &MeterSubject| {
        let mut rate_limits = Vec::new();
        for limit in &spec.limits {
            let name = NAMES[limit.name];
            rate_limits
                .push(RateLimit::parse(name, limit.limit, limit.duration_seconds, limit.auto_apply).expect("valid"));
            let duration_nanos = i128::from(limit.duration_seconds) * NANOS;
            model.limits.push(RefLimit {
                owner,
                name,
                limit: i128::from(limit.limit),
                duration_nanos,
                auto_apply: limit.auto_apply,
                scaled: i128::from(limit.limit) * duration_nanos,
                at: start.unix_timestamp_nanos(),
                admitted: Vec::new(),
            });
        }
        let credits = spec.credits.map(|(remaining, refill)| {
            let (rule, balance) =
                Credits::parse(remaining, refill.as_ref().map(refill_of)).expect("valid").start(start);
            counters.set_credits(subject, balance);
            let reference =
                RefCredits { remaining, refilled_at: timestamp(start), refill, granted: remaining, spent: 0 };
            match owner {
                MeterOwner::Key => model.key_credits = Some(reference),
                MeterOwner::Identity => model.identity_credits = Some(reference),
            }
            rule
        });
        Meter { rate_limits: RateLimits::parse(rate_limits).expect("valid"), credits }
    };
    let key_subject = MeterSubject::ApiKey { root: ApiKeyId::generate(t0(), &mut rng()) };
    let key_meter = side(key, MeterOwner::Key, &key_subject);
    let identity = identity.map(|spec| {
        let subject = MeterSubject::Identity { workspace: workspace_uid(&mut rng()), external_id: "acme".into() };
        let meter = side(spec, MeterOwner::Identity, &subject);
        (subject, meter)
    });
    Setup { key: (key_subject, key_meter), identity, counters, model }
}

impl Setup {
    fn decide(&self, request: &MeterRequest, now: OffsetDateTime) -> Decision {
        let key = Metered { subject: &self.key.0, meter: &self.key.1 };
        let identity = self.identity.as_ref().map(|(subject, meter)| Metered { subject, meter });
        decide(request, key, identity, &self.counters, now)
    }

    fn side(&self, owner: MeterOwner) -> Option<&(MeterSubject, Meter)> {
        match owner {
            MeterOwner::Key => Some(&self.key),
            MeterOwner::Identity => self.identity.as_ref(),
        }
    }

    /// Every counter of the system agrees with the model at `now`.
    fn assert_counters_agree(&self, now: OffsetDateTime) {
        for reference in &self.model.limits {
            let (subject, meter) = self.side(reference.owner).expect("a side of the model");
            let name = RateLimitName::parse(reference.name).expect("name");
            let limit = meter.rate_limits.get(&name).expect("the model's limit");
            let check = limit.check(self.counters.rate_limit(subject, &name).as_ref(), Cost::ZERO, now);
            let expected = reference.check(0, now.unix_timestamp_nanos());
            assert_eq!(
                (check.remaining, check.reset_at),
                (expected.remaining, expected.reset_at),
                "{}",
                reference.name
            );
        }
        for (owner, reference) in
            [(MeterOwner::Key, &self.model.key_credits), (MeterOwner::Identity, &self.model.identity_credits)]
        {
            let Some(reference) = reference else { continue };
            let (subject, meter) = self.side(owner).expect("a side of the model");
            let refill = meter.credits.as_ref().and_then(|rule| rule.refill.as_ref());
            let balance = self.counters.credits(subject).expect("a balance").refreshed(refill, now);
            assert_eq!(balance.remaining(), reference.at(now).0, "{owner:?} credits");
            assert!(
                reference.spent <= reference.granted,
                "{owner:?}: spent {} of {} granted",
                reference.spent,
                reference.granted
            );
        }
    }
}

fn run(start: OffsetDateTime, key: &SideSpec, identity: Option<&SideSpec>, ops: &[Op]) {
    let mut setup = set_up(key, identity, start);
    let mut now = start;
    for op in ops {
        match op {
            Op::Tick(nanos) => now += Duration::nanoseconds(*nanos),
            Op::Credits { identity, operation, value } => {
                let owner = if *identity { MeterOwner::Identity } else { MeterOwner::Key };
                let Some((subject, meter)) = setup.side(owner).cloned() else { continue };
                let Some(rule) = meter.credits else { continue };
                let balance = setup.counters.credits(&subject).expect("a balance");
                let changed = balance.apply(
                    CreditsOperation::parse(operation, *value).expect("valid"),
                    rule.refill.as_ref(),
                    now,
                );
                setup.counters.set_credits(&subject, changed);
                let reference = match owner {
                    MeterOwner::Key => setup.model.key_credits.as_mut(),
                    MeterOwner::Identity => setup.model.identity_credits.as_mut(),
                }
                .expect("metered in the model too");
                reference.refresh(now);
                let cap = 1_000_000_000_000;
                match *operation {
                    "set" => reference.set(*value),
                    "increment" => reference.set((reference.remaining + value).min(cap)),
                    _ => reference.remaining = reference.remaining.saturating_sub(*value),
                }
            }
            Op::Verify { cost, named } => {
                let mut names: Vec<(&'static str, u64)> = Vec::new();
                let mut wire: Vec<(&str, Option<u64>)> = Vec::new();
                for &(index, tokens) in named {
                    if names.iter().all(|(name, _)| *name != NAMES[index]) {
                        names.push((NAMES[index], tokens.unwrap_or(1)));
                        wire.push((NAMES[index], tokens));
                    }
                }
                let request = MeterRequest {
                    cost: Cost::parse(*cost).expect("valid"),
                    rate_limits: RateLimitRequests::parse(wire).expect("valid"),
                };
                let decision = setup.decide(&request, now);
                let (checks, credits, outcome) = setup.model.verify(*cost, &names, now);
                let report = decision.report();
                assert_eq!(report.credits, credits, "credits at {now}");
                let expected: Vec<_> = checks
                    .iter()
                    .map(|(index, check)| {
                        let limit = &setup.model.limits[*index];
                        (limit.owner, limit.name, check.remaining, check.reset_at, !check.admitted)
                    })
                    .collect();
                let actual: Vec<_> = report
                    .rate_limits
                    .iter()
                    .map(|line| (line.owner, line.name.as_str(), line.remaining, line.reset_at, line.exceeded))
                    .collect();
                assert_eq!(actual, expected, "limits at {now}");
                match (&decision, &outcome) {
                    (Decision::Admit { updates, .. }, RefOutcome::Admit) => {
                        assert_eq!(updates.rate_limits.len(), checks.len(), "every applied limit is taken from");
                        setup.counters.store(updates.clone());
                        for (index, _) in &checks {
                            setup.model.limits[*index].assert_bucket_bound();
                        }
                    }
                    (
                        Decision::RateLimited { owner, name, retry_at, .. },
                        RefOutcome::RateLimited { owner: o, name: n, retry_at: r },
                    ) => {
                        assert_eq!((owner, name.as_str(), retry_at), (o, *n, r));
                        assert_eq!(setup.decide(&request, now), decision, "a refusal changed something");
                    }
                    (Decision::UsageExceeded { owner, .. }, RefOutcome::UsageExceeded { owner: o }) => {
                        assert_eq!(owner, o);
                        assert_eq!(setup.decide(&request, now), decision, "a refusal changed something");
                    }
                    (decision, outcome) => panic!("at {now}: decided {decision:?}, the model {outcome:?}"),
                }
            }
        }
        setup.assert_counters_agree(now);
    }
}

/// An instant between 1970 and 2200, to the nanosecond.
fn start() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..7_258_118_400, 0i64..1_000_000_000).prop_map(|(seconds, nanos)| {
        OffsetDateTime::from_unix_timestamp(seconds).expect("in range") + Duration::nanoseconds(nanos)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn metering_agrees_with_the_reference_model(
        start in start(),
        key in side(),
        identity in proptest::option::of(side()),
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(start, &key, identity.as_ref(), &ops);
    }

    #[test]
    fn refills_agree_with_a_walk_over_the_calendar(
        refill in refill_spec(),
        last in start(),
        days in 0i64..400,
        into_day in 0i64..86_400_000_000_000,
    ) {
        let now = last + Duration::days(days) + Duration::nanoseconds(into_day);
        prop_assert_eq!(refill_of(&refill).due(last, now), naive_due(&refill, last, now));
    }
}
