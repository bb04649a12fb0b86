//! Property tests of the counters replicas share (docs/METERING.md, Across
//! replicas), through the public API only.
//!
//! `credits_are_never_oversold`: 1 to 4 replicas, each holding at most one
//! slice (its epoch and what is unspent), draw on one [`CreditPool`]. At
//! random they reserve, spend (only from a slice of the pool's epoch with no
//! refill due since it was reserved, as keys-service does), hand back or are
//! killed (the slice lost), while the operator sets, increments and
//! decrements (values small, or next to 10¹² to reach the caps) and time
//! passes (minutes to 40 days) under no refill, a daily or a monthly one.
//! Each epoch (the start, every set, every refill) is accounted apart.
//! After every step:
//! - in every epoch the credits spent are at most what it started with plus
//!   its increments, and in all at most the credits granted (the start,
//!   every set, increment and refill applied);
//! - `unleased` and `debt` stay within 0 – 10¹²;
//! - the current epoch balances exactly: `unleased − debt + held + spent +
//!   lost + clipped = start + increments − decrements`, where `held` is what
//!   live replicas hold of it, `lost` what killed ones held, and `clipped`
//!   what a cap at 10¹² dropped (only ever with the capped number at 10¹²);
//!   so once every live replica has handed back, none was killed, no debt is
//!   left and no cap was reached, `unleased + spent = start + increments −
//!   decrements`;
//! - a hand-back of an older epoch changes nothing, a reservation grants
//!   `min(want, available)`, a refill due (`Refill::due`) is applied in a
//!   new epoch, a set replaces the balance in a new epoch.
//!
//! `a_shared_rate_limit_counter_keeps_its_bound`: 1 to 4 replicas take
//! batches of tokens from one counter (`take_up_to`), use each token at most
//! `h = duration / 20` after it was taken, and give back what they hold
//! unused (`give_back`), at random times. After every step the tokens used
//! in any closed interval of length `w` are at most `L · (w + h + D) / D`
//! (the bound docs/METERING.md states for any number of replicas), a batch
//! is `min(free, want)` when that is at least `least`, and a give-back
//! frees exactly the tokens given back, up to a full bucket and never past
//! it (a batch taken at once after it is at most `L`).

use std::collections::BTreeMap;

use crate::common::*;
use keys_core::meter::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use time::{Duration, OffsetDateTime};

const NANOS: i64 = 1_000_000_000;

/// An instant in the four years after `t0`, to the nanosecond.
fn start() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4 * 365 * 86_400, 0i64..NANOS)
        .prop_map(|(seconds, nanos)| t0() + Duration::seconds(seconds) + Duration::nanoseconds(nanos))
}

// ---- Credits: slices reserved from one pool.

/// A balance, an amount or an operation's value: small, or next to the cap.
fn credits_value() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0u64..40, 1 => MAX_CREDITS - 40..=MAX_CREDITS]
}

/// No refill, a daily one, or a monthly one on a day 1 – 31.
fn credit_rule() -> impl Strategy<Value = CreditRule> {
    proptest::option::of((proptest::option::of(1u64..=31), credits_value())).prop_map(|refill| CreditRule {
        refill: refill.map(|(day, amount)| {
            let interval = if day.is_some() { "monthly" } else { "daily" };
            Refill::parse(interval, amount, day).expect("valid refill")
        }),
    })
}

#[derive(Debug, Clone, Copy)]
enum PoolStep {
    Reserve {
        replica: usize,
        want: u64,
    },
    /// Spends `amount`, or all the slice holds when it holds less.
    Spend {
        replica: usize,
        amount: u64,
    },
    HandBack {
        replica: usize,
    },
    /// The replica dies with its slice.
    Kill {
        replica: usize,
    },
    Operate(CreditsOperation),
    Tick(i64),
}

fn pool_step() -> impl Strategy<Value = PoolStep> {
    let minute = 60 * NANOS;
    let tick = prop_oneof![
        3 => minute..=60 * minute,
        2 => minute..=24 * 60 * minute,
        1 => minute..=40 * 24 * 60 * minute,
    ];
    let operation = (select(vec!["set", "increment", "decrement"]), credits_value())
        .prop_map(|(operation, value)| CreditsOperation::parse(operation, value).expect("valid operation"));
    prop_oneof![
        4 => (0..4usize, prop_oneof![3 => 0u64..20, 1 => credits_value()])
            .prop_map(|(replica, want)| PoolStep::Reserve { replica, want }),
        4 => (0..4usize, prop_oneof![3 => 0u64..10, 1 => Just(u64::MAX)])
            .prop_map(|(replica, amount)| PoolStep::Spend { replica, amount }),
        2 => (0..4usize).prop_map(|replica| PoolStep::HandBack { replica }),
        1 => (0..4usize).prop_map(|replica| PoolStep::Kill { replica }),
        2 => operation.prop_map(PoolStep::Operate),
        2 => tick.prop_map(PoolStep::Tick),
    ]
}

/// What a replica holds: a slice reserved under `epoch`, not yet spent.
#[derive(Debug, Clone, Copy)]
struct Slice {
    epoch: u64,
    refilled_at: OffsetDateTime,
    unspent: u64,
}

/// One epoch's account, in credits.
#[derive(Debug, Clone, Default)]
struct Period {
    /// What the epoch started with: the first balance, a set's value, a
    /// refill's amount.
    start: u64,
    increments: u64,
    decrements: u64,
    spent: u64,
    /// Held by replicas when they were killed.
    lost: u64,
    /// What the caps at 10¹² dropped (a debt forgotten counts negative).
    clipped: i128,
}

/// `unleased − debt`: what the pool holds for the replicas, less what it
/// owes.
fn net(pool: &CreditPool) -> i128 {
    i128::from(pool.unleased()) - i128::from(pool.debt())
}

struct PoolSim {
    rule: CreditRule,
    pool: CreditPool,
    now: OffsetDateTime,
    replicas: Vec<Option<Slice>>,
    periods: BTreeMap<u64, Period>,
    /// The start, every set, increment and refill applied.
    granted: u128,
}

impl PoolSim {
    fn new(rule: CreditRule, balance: u64, replicas: usize, now: OffsetDateTime) -> Self {
        let pool = CreditPool::new(balance, now);
        assert_eq!((pool.unleased(), pool.debt(), pool.epoch(), pool.refilled_at()), (balance, 0, 0, now));
        let mut sim = Self { rule, pool, now, replicas: vec![None; replicas], periods: BTreeMap::new(), granted: 0 };
        sim.open(0, balance);
        sim
    }

    fn open(&mut self, epoch: u64, start: u64) {
        let opened = self.periods.insert(epoch, Period { start, ..Period::default() });
        assert!(opened.is_none(), "epoch {epoch} started twice");
        self.granted += u128::from(start);
    }

    fn period(&mut self, epoch: u64) -> &mut Period {
        self.periods.get_mut(&epoch).expect("every epoch a slice names was started")
    }

    /// The pool as `reserve` and `apply` see it at `now`: with a refill
    /// due applied, in a new epoch, which the account starts too.
    fn refreshed(&mut self) -> CreditPool {
        let refreshed = self.pool.refreshed(&self.rule, self.now);
        // A debt older than the window is forgiven first (what the slices
        // did not pay back was more than the balance: clamped at 0).
        let forgiven = self.pool.debt() > 0 && self.now - self.pool.debt_at() >= CreditPool::DEBT_WINDOW;
        let base = if forgiven {
            let (epoch, debt) = (self.pool.epoch(), self.pool.debt());
            self.period(epoch).clipped -= i128::from(debt);
            CreditPool::restore(self.pool.unleased(), 0, epoch, self.pool.refilled_at())
                .expect("in bounds")
                .with_debt_at(self.pool.debt_at())
        } else {
            self.pool
        };
        let due =
            self.rule.refill.and_then(|refill| refill.due(self.pool.refilled_at(), self.now).map(|at| (refill, at)));
        match due {
            Some((refill, at)) => {
                let expected = CreditPool::restore(refill.amount(), 0, self.pool.epoch() + 1, at).expect("in bounds");
                assert_eq!(refreshed, expected, "the refill due at {at} sets the balance in a new epoch");
                self.open(expected.epoch(), refill.amount());
            }
            None => assert_eq!(refreshed, base, "no refill due at {}: nothing changes but a debt forgiven", self.now),
        }
        refreshed
    }

    /// The pool becomes `next`, from `before` in the same epoch, by an
    /// operation that changes `unleased − debt` by `expected` before the
    /// caps: a cap may only drop what is past it, the capped number then
    /// at 10¹².
    fn settle(&mut self, before: CreditPool, next: CreditPool, expected: i128, what: &str) {
        assert_eq!((next.epoch(), next.refilled_at()), (before.epoch(), before.refilled_at()), "{what}: same epoch");
        let clipped = expected - (net(&next) - net(&before));
        if expected >= 0 {
            assert!((0..=expected).contains(&clipped), "{what} of {expected}: {before:?} became {next:?}");
            if clipped > 0 {
                assert_eq!(next.unleased(), MAX_CREDITS, "{what} dropped {clipped} credits short of the cap");
            }
        } else {
            assert!((expected..=0).contains(&clipped), "{what} of {expected}: {before:?} became {next:?}");
            if clipped < 0 {
                assert_eq!(next.debt(), MAX_CREDITS, "{what} forgot a debt of {} short of the cap", -clipped);
            }
        }
        self.period(before.epoch()).clipped += clipped;
        self.pool = next;
    }

    fn step(&mut self, step: PoolStep) {
        let replicas = self.replicas.len();
        match step {
            PoolStep::Tick(nanos) => self.now += Duration::nanoseconds(nanos),
            PoolStep::Reserve { replica, want } => {
                let before = self.refreshed();
                let (next, reserved) = self.pool.reserve(&self.rule, 0, want, self.now);
                let granted = want.min(before.available());
                assert_eq!(reserved.granted, granted, "a reservation of {want} from {before:?}");
                assert_eq!((reserved.epoch, reserved.refilled_at), (before.epoch(), before.refilled_at()));
                let expected = CreditPool::restore(
                    before.unleased() - granted,
                    before.debt(),
                    before.epoch(),
                    before.refilled_at(),
                )
                .expect("in bounds")
                .with_debt_at(before.debt_at());
                assert_eq!(next, expected, "a reservation takes from the unleased part only");
                self.pool = next;
                if granted > 0 {
                    let slot = &mut self.replicas[replica % replicas];
                    match slot {
                        Some(slice) if slice.epoch == reserved.epoch => slice.unspent += granted,
                        // A slice of an older epoch is void: replaced.
                        _ => {
                            *slot = Some(Slice {
                                epoch: reserved.epoch,
                                refilled_at: reserved.refilled_at,
                                unspent: granted,
                            })
                        }
                    }
                }
            }
            PoolStep::Spend { replica, amount } => {
                let Some(slice) = self.replicas[replica % replicas].as_mut() else { return };
                let refill_due =
                    self.rule.refill.is_some_and(|refill| refill.due(slice.refilled_at, self.now).is_some());
                if slice.epoch != self.pool.epoch() || refill_due {
                    return;
                }
                assert_eq!(slice.refilled_at, self.pool.refilled_at(), "a slice of the pool's epoch");
                let spent = amount.min(slice.unspent);
                slice.unspent -= spent;
                let epoch = slice.epoch;
                self.period(epoch).spent += spent;
            }
            PoolStep::HandBack { replica } => {
                let Some(slice) = self.replicas[replica % replicas].take() else { return };
                let next = self.pool.hand_back(slice.epoch, slice.unspent);
                if slice.epoch != self.pool.epoch() {
                    assert_eq!(next, self.pool, "a hand-back of {} under epoch {}", slice.unspent, slice.epoch);
                    return;
                }
                assert_eq!(
                    next.debt(),
                    self.pool.debt().saturating_sub(slice.unspent),
                    "a hand-back pays the debt first"
                );
                self.settle(self.pool, next, i128::from(slice.unspent), "a hand-back");
            }
            PoolStep::Kill { replica } => {
                if let Some(slice) = self.replicas[replica % replicas].take() {
                    self.period(slice.epoch).lost += slice.unspent;
                }
            }
            PoolStep::Operate(operation) => {
                let before = self.refreshed();
                let next = self.pool.apply(operation, &self.rule, self.now);
                match operation {
                    CreditsOperation::Set(value) => {
                        let expected = CreditPool::restore(value, 0, before.epoch() + 1, self.now).expect("in bounds");
                        assert_eq!(next, expected, "a set replaces the balance in a new epoch");
                        self.open(next.epoch(), value);
                        self.pool = next;
                    }
                    CreditsOperation::Increment(value) => {
                        assert_eq!(
                            next.debt(),
                            before.debt().saturating_sub(value),
                            "an increment pays the debt first"
                        );
                        self.period(before.epoch()).increments += value;
                        self.granted += u128::from(value);
                        self.settle(before, next, i128::from(value), "an increment");
                    }
                    CreditsOperation::Decrement(value) => {
                        assert_eq!(next.unleased(), before.unleased().saturating_sub(value), "a decrement");
                        self.period(before.epoch()).decrements += value;
                        self.settle(before, next, -i128::from(value), "a decrement");
                    }
                }
            }
        }
    }

    fn assert_accounts(&self) {
        let pool = &self.pool;
        assert!(pool.unleased() <= MAX_CREDITS && pool.debt() <= MAX_CREDITS, "{pool:?} past 10^12");
        let mut spent = 0u128;
        for (epoch, period) in &self.periods {
            assert!(
                u128::from(period.spent) <= u128::from(period.start) + u128::from(period.increments),
                "epoch {epoch} oversold: {period:?}"
            );
            spent += u128::from(period.spent);
        }
        assert!(spent <= self.granted, "spent {spent} of {} granted", self.granted);

        let epoch = pool.epoch();
        let period = &self.periods[&epoch];
        let held: u64 =
            self.replicas.iter().flatten().filter(|slice| slice.epoch == epoch).map(|slice| slice.unspent).sum();
        let owed = i128::from(period.start) + i128::from(period.increments) - i128::from(period.decrements);
        let accounted =
            net(pool) + i128::from(held) + i128::from(period.spent) + i128::from(period.lost) + period.clipped;
        assert_eq!(accounted, owed, "epoch {epoch} does not balance: {pool:?}, held {held}, {period:?}");
        if held == 0 && period.lost == 0 && pool.debt() == 0 && period.clipped == 0 {
            assert_eq!(
                i128::from(pool.unleased()) + i128::from(period.spent),
                owed,
                "epoch {epoch}, every slice handed back: {pool:?}, {period:?}"
            );
        }
    }
}

// ---- Rate limits: batches taken from one shared counter.

#[derive(Debug, Clone, Copy)]
enum TokenStep {
    Take {
        replica: usize,
        least: u32,
        want: u32,
    },
    /// Uses up to `count` of the tokens held that are still within `h`.
    Use {
        replica: usize,
        count: u32,
    },
    /// Gives back every token held unused.
    GiveBack {
        replica: usize,
    },
    /// Time passes, in thousandths of the limit's duration.
    Tick(i64),
}

fn token_step() -> impl Strategy<Value = TokenStep> {
    prop_oneof![
        4 => (0..4usize, 0u32..3, prop_oneof![0u32..4, 0u32..2_000])
            .prop_map(|(replica, least, extra)| TokenStep::Take { replica, least, want: least + extra }),
        4 => (0..4usize, prop_oneof![1u32..4, Just(u32::MAX)])
            .prop_map(|(replica, count)| TokenStep::Use { replica, count }),
        2 => (0..4usize).prop_map(|replica| TokenStep::GiveBack { replica }),
        3 => prop_oneof![1 => Just(0i64), 3 => 0i64..=50, 2 => 0i64..=1_000, 1 => 0i64..=3_000]
            .prop_map(TokenStep::Tick),
    ]
}

/// Tokens a replica took at one instant (nanoseconds) and has not used.
#[derive(Debug, Clone, Copy)]
struct Lot {
    taken_at: i128,
    left: u32,
}

struct TokenSim {
    limit: RateLimit,
    /// `L`, `D` and `h` (nanoseconds).
    tokens: i128,
    duration: i128,
    horizon: i128,
    now: OffsetDateTime,
    state: Option<RateLimitState>,
    replicas: Vec<Vec<Lot>>,
    /// Every use: when, and how many tokens.
    used: Vec<(i128, i128)>,
}

impl TokenSim {
    fn new(limit: RateLimit, replicas: usize, now: OffsetDateTime) -> Self {
        let duration = i128::from(limit.duration_seconds()) * i128::from(NANOS);
        Self {
            tokens: i128::from(limit.limit()),
            duration,
            horizon: duration / 20,
            limit,
            now,
            state: None,
            replicas: vec![Vec::new(); replicas],
            used: Vec::new(),
        }
    }

    fn free(&self, state: Option<&RateLimitState>) -> u64 {
        self.limit.check(state, Cost::ZERO, self.now).remaining
    }

    fn step(&mut self, step: TokenStep) {
        let replicas = self.replicas.len();
        let now = self.now.unix_timestamp_nanos();
        match step {
            TokenStep::Tick(thousandths) => {
                self.now += Duration::nanoseconds((self.duration * i128::from(thousandths) / 1_000) as i64);
            }
            TokenStep::Take { replica, least, want } => {
                let free = self.free(self.state.as_ref());
                let expected = free.min(u64::from(want));
                match self.limit.take_up_to(self.state.as_ref(), least, want, self.now) {
                    Some((batch, next)) => {
                        assert_eq!(u64::from(batch), expected, "a batch of up to {want} with {free} free");
                        assert!(batch >= least.max(1), "a batch of {batch}, at least {least} asked");
                        assert_eq!(self.free(Some(&next)), free - expected, "a batch takes its tokens");
                        self.state = Some(next);
                        self.replicas[replica % replicas].push(Lot { taken_at: now, left: batch });
                    }
                    None => assert!(expected < u64::from(least.max(1)), "{free} free refused {least}..={want}"),
                }
            }
            TokenStep::Use { replica, count } => {
                let mut used = 0u32;
                for lot in &mut self.replicas[replica % replicas] {
                    if now - lot.taken_at > self.horizon {
                        continue;
                    }
                    let take = lot.left.min(count - used);
                    lot.left -= take;
                    used += take;
                }
                self.replicas[replica % replicas].retain(|lot| lot.left > 0);
                if used > 0 {
                    self.used.push((now, i128::from(used)));
                    self.assert_bound();
                }
            }
            TokenStep::GiveBack { replica } => {
                let lots: Vec<Lot> = self.replicas[replica % replicas].drain(..).collect();
                for lot in lots.into_iter().filter(|lot| lot.left > 0) {
                    let state = self.state.expect("tokens held were taken from the counter");
                    let before = self.free(Some(&state));
                    let taken_at = OffsetDateTime::from_unix_timestamp_nanos(lot.taken_at).expect("an instant");
                    let after = self.limit.give_back(&state, lot.left, taken_at, self.now);
                    let full = self.limit.limit();
                    let freed = self.free(Some(&after));
                    // Never more than the tokens given back, never fuller
                    // than full, and never emptier than before.
                    assert!(
                        freed <= full.min(before + u64::from(lot.left)),
                        "{} given back: {before} -> {freed}",
                        lot.left
                    );
                    assert!(freed >= before, "a give-back took tokens: {before} -> {freed}");
                    // Given back at once, they are all free again.
                    if taken_at == self.now {
                        assert_eq!(freed, full.min(before + u64::from(lot.left)), "{} given back at once", lot.left);
                    }
                    let all = self.limit.take_up_to(Some(&after), 1, u32::MAX, self.now).map_or(0, |(batch, _)| batch);
                    assert!(u64::from(all) <= full, "{all} tokens at once after a give-back, past a full bucket");
                    self.state = Some(after);
                }
            }
        }
    }

    /// The bound over every closed interval that ends with the last use.
    fn assert_bound(&self) {
        let Some(&(end, _)) = self.used.last() else { return };
        let mut tokens = 0;
        for &(at, count) in self.used.iter().rev() {
            tokens += count;
            let length = end - at;
            assert!(
                tokens * self.duration <= self.tokens * (length + self.horizon + self.duration),
                "{tokens} tokens used in {length} ns, past {} per {} ns with h = {} ns: {:?}",
                self.tokens,
                self.duration,
                self.horizon,
                self.used
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn credits_are_never_oversold(
        start in start(),
        rule in credit_rule(),
        balance in credits_value(),
        replicas in 1usize..=4,
        steps in vec(pool_step(), 1..80),
    ) {
        let mut sim = PoolSim::new(rule, balance, replicas, start);
        for step in steps {
            sim.step(step);
            sim.assert_accounts();
        }
    }

    #[test]
    fn a_shared_rate_limit_counter_keeps_its_bound(
        start in start(),
        limit in select(vec![1u64, 2, 3, 5, 7, 20, 100, 1_000]),
        duration in select(vec![1u64, 2, 3, 60, 86_400]),
        replicas in 1usize..=4,
        steps in vec(token_step(), 1..100),
    ) {
        let limit = RateLimit::parse("calls", limit, duration, true).expect("valid limit");
        let mut sim = TokenSim::new(limit, replicas, start);
        for step in steps {
            sim.step(step);
        }
    }
}
