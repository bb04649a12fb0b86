//! Metering as the store keeps it (docs/METERING.md, Across replicas): one
//! row per metered subject ([`StoredMeter`]: its limits, whether it spends
//! credits, and the balance as a [`CreditPool`]), one row per rate-limit
//! counter, and the subject a key draws on ([`KeyMeters`]).

use keys_core::meter::{CreditPool, CreditRule, Meter, RateLimit, RateLimits, Refill};
use keys_core::{ApiKeyId, ExternalId, KeyMeta, WorkspaceUid};
use time::OffsetDateTime;

use crate::error::{StoreError, StoreResult};

/// Whose meter a row is: a key's roll chain (by the id of its first key)
/// or an identity (by its `external_id`), in a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MeterOf {
    Key(ApiKeyId),
    Identity(String),
}

impl MeterOf {
    pub fn identity(external_id: &ExternalId) -> Self {
        Self::Identity(external_id.as_str().to_owned())
    }

    /// The `subject` column: `key:<root>` or `identity:<external_id>`.
    pub fn column(&self) -> String {
        match self {
            Self::Key(root) => format!("key:{root}"),
            Self::Identity(external_id) => format!("identity:{external_id}"),
        }
    }

    pub(crate) fn from_column(text: &str) -> StoreResult<Self> {
        let corrupt = || StoreError::Inconsistent(format!("meter subject '{text}' is neither a key nor an identity"));
        match text.split_once(':') {
            Some(("key", root)) => ApiKeyId::parse(root).map(Self::Key).map_err(|_| corrupt()),
            Some(("identity", external_id)) if !external_id.is_empty() => Ok(Self::Identity(external_id.to_owned())),
            _ => Err(corrupt()),
        }
    }
}

/// One metered subject: its limits, its credits (when it spends any) and
/// the balance; an identity's meta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMeter {
    pub workspace: WorkspaceUid,
    pub of: MeterOf,
    pub meter: Meter,
    pub pool: CreditPool,
    pub meta: Option<KeyMeta>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl StoredMeter {
    /// A new subject's row (what the setting keeps unsaid is empty).
    pub fn new(workspace: WorkspaceUid, of: MeterOf, setting: MeterSetting, now: OffsetDateTime) -> Self {
        let empty = Self {
            workspace,
            of,
            meter: Meter::default(),
            pool: CreditPool::new(0, now),
            meta: None,
            created_at: now,
            updated_at: now,
        };
        let mut made = empty.replaced(setting, now);
        made.pool = match made.meter.credits {
            Some(_) => CreditPool::new(made.pool.unleased(), now),
            None => CreditPool::new(0, now),
        };
        made
    }

    /// The meter with what `setting` says replaced (a put, a patch): a
    /// balance given is set in a new epoch (slices out are void); credits
    /// `Some(None)` stop spending credits.
    pub fn replaced(&self, setting: MeterSetting, now: OffsetDateTime) -> Self {
        let mut next = self.clone();
        if let Some(rate_limits) = setting.rate_limits {
            next.meter.rate_limits = rate_limits;
        }
        if let Some(meta) = setting.meta {
            next.meta = meta;
        }
        match setting.credits {
            Some(Some(credits)) => {
                let rule = CreditRule { refill: credits.refill().copied() };
                next.pool = self.pool.apply(keys_core::meter::CreditsOperation::Set(credits.remaining()), &rule, now);
                next.meter.credits = Some(rule);
            }
            Some(None) => {
                // Unmetered: the balance goes, in a new epoch, so that no
                // slice of it comes back and no later change starts from it.
                let rule = CreditRule { refill: None };
                next.pool = self.pool.apply(keys_core::meter::CreditsOperation::Set(0), &rule, now);
                next.meter.credits = None;
            }
            None => {}
        }
        next.updated_at = now;
        next
    }

    /// Whether anything meters a verification: a limit or credits.
    pub fn meters_anything(&self) -> bool {
        !self.meter.rate_limits.is_empty() || self.meter.credits.is_some()
    }
}

/// What a create, a patch or an identity's put says of metering; `None`
/// leaves a part as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterSetting {
    pub rate_limits: Option<RateLimits>,
    /// `Some(None)`: the subject spends no credits.
    pub credits: Option<Option<keys_core::meter::Credits>>,
    /// An identity's meta (`Some(None)` removes it); keys keep theirs on
    /// the key.
    pub meta: Option<Option<KeyMeta>>,
}

/// What a key draws on: the root of its roll chain, its own meter (under
/// that root) and its identity's, where they exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeters {
    pub root: ApiKeyId,
    pub key: Option<StoredMeter>,
    pub identity: Option<StoredMeter>,
}

/// What taking tokens from a shared counter gave: the batch and the
/// counter's state after it, or the instant the least batch would be
/// admitted (`None`: never, or the subject is gone).
pub type TokensTaken = Result<u32, Option<OffsetDateTime>>;

/// The `ratelimits` column: `name,limit,duration,auto` per limit, joined
/// by `|` (names hold neither character).
pub(crate) fn encode_rate_limits(limits: &RateLimits) -> String {
    let items: Vec<String> = limits
        .as_slice()
        .iter()
        .map(|limit| {
            format!(
                "{},{},{},{}",
                limit.name().as_str(),
                limit.limit(),
                limit.duration_seconds(),
                u8::from(limit.auto_apply())
            )
        })
        .collect();
    items.join("|")
}

pub(crate) fn decode_rate_limits(text: &str) -> StoreResult<RateLimits> {
    let corrupt = |reason: &str| StoreError::Inconsistent(format!("stored rate limits '{text}': {reason}"));
    let mut limits = Vec::new();
    for item in text.split('|').filter(|item| !item.is_empty()) {
        let parts: Vec<&str> = item.split(',').collect();
        let [name, limit, duration, auto] = parts[..] else { return Err(corrupt("not four fields")) };
        let number = |field: &str| field.parse::<u64>().map_err(|_| corrupt("not a number"));
        let limit = RateLimit::parse(name, number(limit)?, number(duration)?, auto == "1")
            .map_err(|error| corrupt(&error.to_string()))?;
        limits.push(limit);
    }
    RateLimits::parse(limits).map_err(|error| corrupt(&error.to_string()))
}

/// The `refill` column: `daily,amount` or `monthly,amount,day`.
pub(crate) fn encode_refill(refill: Option<&Refill>) -> Option<String> {
    refill.map(|refill| match refill.refill_day() {
        None => format!("daily,{}", refill.amount()),
        Some(day) => format!("monthly,{},{day}", refill.amount()),
    })
}

pub(crate) fn decode_refill(text: Option<&str>) -> StoreResult<Option<Refill>> {
    let Some(text) = text else { return Ok(None) };
    let corrupt = || StoreError::Inconsistent(format!("stored refill '{text}' is not one"));
    let parts: Vec<&str> = text.split(',').collect();
    let number = |field: &str| field.parse::<u64>().map_err(|_| corrupt());
    let refill = match parts[..] {
        [interval, amount] => Refill::parse(interval, number(amount)?, None),
        [interval, amount, day] => Refill::parse(interval, number(amount)?, Some(number(day)?)),
        _ => return Err(corrupt()),
    };
    refill.map(Some).map_err(|_| corrupt())
}
