//! [`decide`]: the one metering decision of a verification, after the key's
//! own checks (docs/METERING.md, The decision).

use time::OffsetDateTime;

use super::{
    Cost, CounterKey, CounterUpdates, CreditBalance, MeterCounters, MeterOwner, MeterRequest, MeterSubject, Metered,
    RateLimit, RateLimitName, RateLimitOutcome, RateLimitState,
};

/// One applied limit, as the verification answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitReport {
    pub owner: MeterOwner,
    pub name: RateLimitName,
    pub limit: u64,
    pub duration_seconds: u32,
    /// Whole tokens left after this verification (as they were, when it
    /// is refused: a refusal takes none).
    pub remaining: u64,
    /// When the limit is whole again.
    pub reset_at: OffsetDateTime,
    /// Whether this limit refused the verification.
    pub exceeded: bool,
}

/// What a verification reports of metering, whatever the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterReport {
    /// The balance after this verification: the key's when the key spends
    /// credits, else its identity's; `None` when neither does.
    pub credits: Option<u64>,
    /// Every limit applied: the key's, then its identity's, each in the
    /// order configured.
    pub rate_limits: Vec<LimitReport>,
}

/// Admitted, with the counters' next states, or refused, with nothing to
/// store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admit {
        updates: CounterUpdates,
        report: MeterReport,
    },
    /// `rate_limited`: `owner` and `name` say the first limit that refused
    /// (each one that did is `exceeded` in the report); `retry_at` is the
    /// earliest instant all of them would admit the same verification, or
    /// `None` when one never will (a cost above its limit).
    RateLimited {
        owner: MeterOwner,
        name: RateLimitName,
        retry_at: Option<OffsetDateTime>,
        report: MeterReport,
    },
    /// `usage_exceeded`: the balance of `owner` (the key's checked first)
    /// holds less than the cost.
    UsageExceeded {
        owner: MeterOwner,
        report: MeterReport,
    },
}

impl Decision {
    pub fn report(&self) -> &MeterReport {
        match self {
            Self::Admit { report, .. } | Self::RateLimited { report, .. } | Self::UsageExceeded { report, .. } => {
                report
            }
        }
    }

    pub fn is_admitted(&self) -> bool {
        matches!(self, Self::Admit { .. })
    }

    /// The reason a refusal is answered with (`rate_limited`,
    /// `usage_exceeded`); `None` when admitted.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Admit { .. } => None,
            Self::RateLimited { .. } => Some("rate_limited"),
            Self::UsageExceeded { .. } => Some("usage_exceeded"),
        }
    }

    /// Whole seconds from `now` to `retry_at`, rounded up (what
    /// `Retry-After` says); `None` unless rate limited with a retry time.
    pub fn retry_after_seconds(&self, now: OffsetDateTime) -> Option<u64> {
        let Self::RateLimited { retry_at: Some(at), .. } = self else { return None };
        let nanos = (*at - now).whole_nanoseconds().max(0);
        u64::try_from((nanos + 999_999_999) / 1_000_000_000).ok()
    }
}

/// The first limit that refused, and the latest retry of all that did.
struct Refusal {
    owner: MeterOwner,
    name: RateLimitName,
    retry_at: Option<OffsetDateTime>,
}

/// Decides a verification's metering at `now`, after the key's own checks:
/// rate limits first (the key's auto-applied ones and those the request
/// names, then its identity's likewise; a name neither defines is
/// ignored), then credits (the key's balance and its identity's, each that
/// is set; refused when any holds less than `request.cost`). Total, and
/// changes nothing: only [`Decision::Admit`] carries the counters' next
/// states, for the caller to store.
pub fn decide<C: MeterCounters + ?Sized>(
    request: &MeterRequest,
    key: Metered<'_>,
    identity: Option<Metered<'_>>,
    counters: &C,
    now: OffsetDateTime,
) -> Decision {
    let sides: Vec<(MeterOwner, Metered<'_>)> =
        std::iter::once((MeterOwner::Key, key)).chain(identity.map(|side| (MeterOwner::Identity, side))).collect();

    let mut report = MeterReport::default();
    let mut updates = CounterUpdates::default();
    let mut refusal: Option<Refusal> = None;
    // Each applied limit with its counter as read, to report it untouched
    // when the verification is refused.
    let mut applied: Vec<(&RateLimit, Option<RateLimitState>)> = Vec::new();
    for (owner, side) in &sides {
        for limit in side.meter.rate_limits.as_slice() {
            let named = request.rate_limits.cost_of(limit.name());
            let Some(cost) = named.or(limit.auto_apply().then_some(Cost::ONE)) else { continue };
            let state = counters.rate_limit(side.subject, limit.name());
            let check = limit.check(state.as_ref(), cost, now);
            let exceeded = match check.outcome {
                RateLimitOutcome::Admitted(next) => {
                    let key = CounterKey { subject: side.subject.clone(), name: limit.name().clone() };
                    updates.rate_limits.push((key, next));
                    false
                }
                RateLimitOutcome::Refused { retry_at } => {
                    match &mut refusal {
                        None => refusal = Some(Refusal { owner: *owner, name: limit.name().clone(), retry_at }),
                        // A later instant for one limit is no earlier for all.
                        Some(first) => first.retry_at = first.retry_at.zip(retry_at).map(|(a, b)| a.max(b)),
                    }
                    true
                }
            };
            applied.push((limit, state));
            report.rate_limits.push(LimitReport {
                owner: *owner,
                name: limit.name().clone(),
                limit: limit.limit(),
                duration_seconds: limit.duration_seconds(),
                remaining: check.remaining,
                reset_at: check.reset_at,
                exceeded,
            });
        }
    }
    // A refusal takes no token: the limits that would have admitted report
    // what they hold as read.
    let untouched = |report: &mut MeterReport| {
        for (line, (limit, state)) in report.rate_limits.iter_mut().zip(&applied) {
            if !line.exceeded {
                let as_read = limit.check(state.as_ref(), Cost::ZERO, now);
                (line.remaining, line.reset_at) = (as_read.remaining, as_read.reset_at);
            }
        }
    };

    // Each metered side's balance as of now (a refill due applied), read
    // whatever the outcome so that a refusal reports it too.
    let balances: Vec<(MeterOwner, &MeterSubject, CreditBalance)> = sides
        .iter()
        .filter_map(|(owner, side)| {
            let rule = side.meter.credits?;
            let read = counters.credits(side.subject).unwrap_or_else(|| CreditBalance::empty(now));
            Some((*owner, side.subject, read.refreshed(rule.refill.as_ref(), now)))
        })
        .collect();
    let shown = |balances: &[(MeterOwner, &MeterSubject, CreditBalance)]| {
        balances.first().map(|(_, _, balance)| balance.remaining())
    };

    if let Some(Refusal { owner, name, retry_at }) = refusal {
        untouched(&mut report);
        report.credits = shown(&balances);
        return Decision::RateLimited { owner, name, retry_at, report };
    }
    let mut spent = Vec::with_capacity(balances.len());
    for (owner, subject, balance) in &balances {
        match balance.spend(request.cost) {
            Some(next) => spent.push((*owner, *subject, next)),
            None => {
                untouched(&mut report);
                report.credits = shown(&balances);
                return Decision::UsageExceeded { owner: *owner, report };
            }
        }
    }
    report.credits = shown(&spent);
    updates.credits = spent.into_iter().map(|(_, subject, balance)| (subject.clone(), balance)).collect();
    Decision::Admit { updates, report }
}
