//! Webhook endpoints and the rules of delivery (docs/WEBHOOKS.md): what an
//! endpoint subscribes to, which destinations it may name, when a failed
//! delivery is tried again, when a failing endpoint is disabled, and how
//! long a rotated secret keeps signing.
//!
//! The secret itself is [`EndpointSecret`], whose `Debug` never shows it;
//! keys-crypto makes it and signs with it.

use std::fmt;

use time::{Duration, OffsetDateTime};

pub use crate::ids::WebhookEndpointId;
use crate::{Actor, CoreError, Description, OrganisationId, WorkspaceUid};

/// The event types that are not audit actions: warnings about what is
/// about to happen or did happen at verification, stored once each across
/// replicas (docs/WEBHOOKS.md, Warnings).
pub const WARNING_TYPES: [&str; 4] =
    ["api_key.expiring", "api_key.rolled_key_used", "credits.low", "ratelimit.exceeded"];

/// What an endpoint receives: every event, or the listed types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    All,
    Types(Vec<String>),
}

impl EventFilter {
    /// At most this many types in one list.
    pub const MAX_TYPES: usize = 64;

    /// `["*"]`, or a list of distinct types each of which `known` accepts
    /// (the audit actions are the store's, the warnings keys-core's).
    pub fn parse(types: &[String], known: impl Fn(&str) -> bool) -> Result<Self, CoreError> {
        if types.iter().any(|name| name == "*") {
            return if types.len() == 1 { Ok(Self::All) } else { Err(CoreError::StarAlone) };
        }
        if types.is_empty() {
            return Err(CoreError::NoEventTypes);
        }
        if types.len() > Self::MAX_TYPES {
            return Err(CoreError::TooMany { field: "events", max: Self::MAX_TYPES });
        }
        let mut kept: Vec<String> = Vec::with_capacity(types.len());
        for name in types {
            if !known(name) {
                let shown: String = name.chars().take(64).collect();
                return Err(CoreError::UnknownEventType(shown));
            }
            if !kept.contains(name) {
                kept.push(name.clone());
            }
        }
        Ok(Self::Types(kept))
    }

    /// Whether an event of `kind` goes to this endpoint.
    pub fn admits(&self, kind: &str) -> bool {
        match self {
            Self::All => true,
            Self::Types(types) => types.iter().any(|name| name == kind),
        }
    }

    /// The list as the API shows it.
    pub fn names(&self) -> Vec<String> {
        match self {
            Self::All => vec!["*".to_owned()],
            Self::Types(types) => types.clone(),
        }
    }

    /// The stored form, which the database's delivery triggers match
    /// against: ` a b c ` (each name between spaces), or ` * `.
    pub fn stored(&self) -> String {
        match self {
            Self::All => " * ".to_owned(),
            Self::Types(types) => format!(" {} ", types.join(" ")),
        }
    }

    /// Reads [`EventFilter::stored`] back.
    pub fn restore(stored: &str) -> Result<Self, CoreError> {
        let names: Vec<String> = stored.split_whitespace().map(str::to_owned).collect();
        match names.as_slice() {
            [] => Err(CoreError::InconsistentRecord { kind: "webhook endpoint", reason: "no event types" }),
            [all] if all == "*" => Ok(Self::All),
            _ => Ok(Self::Types(names)),
        }
    }
}

/// Whether an endpoint takes new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStatus {
    Enabled,
    /// By its owner, or by keysd after [`DISABLE_AFTER`] of failures.
    Disabled,
}

impl EndpointStatus {
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        match text {
            "enabled" => Ok(Self::Enabled),
            "disabled" => Ok(Self::Disabled),
            _ => Err(CoreError::InvalidWebhookStatus),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }
}

/// A destination: an `https://` URL (or `http://` where the operator
/// allows private destinations), with a host, without credentials or a
/// fragment, at most 2048 bytes. Which addresses its host may resolve to
/// is decided when it is sent to (the address connected to is checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(text: &str, allow_http: bool) -> Result<Self, CoreError> {
        if text.len() > Self::MAX_LEN {
            return Err(CoreError::InvalidWebhookUrl("is longer than 2048 bytes"));
        }
        let url =
            url::Url::parse(text).map_err(|_| CoreError::InvalidWebhookUrl("must be an absolute https:// URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            "http" => {
                return Err(CoreError::InvalidWebhookUrl(
                    "must use https:// (http:// needs --webhook-allow-private-destinations)",
                ))
            }
            _ => return Err(CoreError::InvalidWebhookUrl("must be an absolute https:// URL")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(CoreError::InvalidWebhookUrl("must name a host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CoreError::InvalidWebhookUrl("may not carry a user name or password"));
        }
        if url.fragment().is_some() {
            return Err(CoreError::InvalidWebhookUrl("may not carry a fragment"));
        }
        // Normalised (percent-encoded, punycode) it may have grown.
        if url.as_str().len() > Self::MAX_LEN {
            return Err(CoreError::InvalidWebhookUrl("is longer than 2048 bytes once percent-encoded"));
        }
        Ok(Self(url.into()))
    }

    /// A stored URL: checked when it was made, under the flags of then.
    pub fn restore(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A signing secret (`whsec_…`). The one secret keysd keeps in its
/// database, because signing needs it: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret(String);

impl EndpointSecret {
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// The secret itself, for signing and for the one answer that hands
    /// it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndpointSecret(…)")
    }
}

/// How long a rotated secret keeps signing beside its successor.
pub const SECRET_OVERLAP: Duration = Duration::hours(24);

/// An endpoint that failed every attempt for this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);

/// The waits between attempts after a failure: the `n`th failure waits
/// `RETRY_SCHEDULE[n - 1]`, stretched by a jitter of 0–20 %. The last
/// attempt comes at least 31 h 42 min after the first, beyond the 24 h
/// the contract promises; then the delivery has failed.
pub const RETRY_SCHEDULE: [Duration; 11] = [
    Duration::seconds(5),
    Duration::seconds(30),
    Duration::minutes(2),
    Duration::minutes(10),
    Duration::minutes(30),
    Duration::hours(1),
    Duration::hours(2),
    Duration::hours(4),
    Duration::hours(8),
    Duration::hours(8),
    Duration::hours(8),
];

/// When to try again after `attempts` failed attempts, with `jitter` in
/// `[0, 1)` (a uniform draw): `None` once the schedule is spent.
pub fn next_attempt(attempts: u32, failed_at: OffsetDateTime, jitter: f64) -> Option<OffsetDateTime> {
    let wait = RETRY_SCHEDULE.get(usize::try_from(attempts.checked_sub(1)?).ok()?)?;
    let jitter = jitter.clamp(0.0, 1.0);
    Some(failed_at + *wait * (1.0 + 0.2 * jitter))
}

/// Whether a balance is low (`credits.low`): below 10 % of `basis`, its
/// refill amount, or its last set value when it has no refill.
pub fn credits_low(remaining: u64, basis: u64) -> bool {
    remaining < basis / 10
}

/// Whether an endpoint failing since `failing_since` is to be disabled now.
pub fn failed_too_long(failing_since: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    failing_since.is_some_and(|since| now - since >= DISABLE_AFTER)
}

/// A webhook endpoint of an organisation. Its secrets are kept apart
/// ([`EndpointSecrets`]) so that the record can be shown and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: WebhookEndpointId,
    pub organisation_id: OrganisationId,
    pub url: WebhookUrl,
    pub events: EventFilter,
    /// `None`: every workspace, and the organisation's own events.
    pub workspaces: Option<Vec<WorkspaceUid>>,
    pub description: Option<Description>,
    pub status: EndpointStatus,
    /// Since when every attempt failed (`None` after a success).
    pub failing_since: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub updated_at: OffsetDateTime,
}

impl WebhookEndpoint {
    /// At most this many workspaces in one endpoint's list.
    pub const MAX_WORKSPACES: usize = 100;
    /// At most this many endpoints in one organisation.
    pub const MAX_PER_ORGANISATION: usize = 32;

    /// Whether an event of `kind` in `workspace` (`None`: the
    /// organisation's own) goes to this endpoint. The database's triggers
    /// decide the same on the stored form.
    pub fn subscribes(&self, kind: &str, workspace: Option<&WorkspaceUid>) -> bool {
        let place = match (&self.workspaces, workspace) {
            (None, _) => true,
            (Some(listed), Some(workspace)) => listed.contains(workspace),
            (Some(_), None) => false,
        };
        self.status == EndpointStatus::Enabled && place && self.events.admits(kind)
    }
}

/// An endpoint's signing secrets: the current one and, for
/// [`SECRET_OVERLAP`] after a rotation, the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSecrets {
    pub current: EndpointSecret,
    pub previous: Option<(EndpointSecret, OffsetDateTime)>,
}

impl EndpointSecrets {
    /// The secrets that sign at `now`, current first.
    pub fn signing(&self, now: OffsetDateTime) -> Vec<&EndpointSecret> {
        let mut secrets = vec![&self.current];
        if let Some((previous, until)) = &self.previous {
            if now < *until {
                secrets.push(previous);
            }
        }
        secrets
    }

    /// The secrets after a rotation to `fresh` at `now`.
    #[must_use]
    pub fn rotated(self, fresh: EndpointSecret, now: OffsetDateTime) -> Self {
        Self { current: fresh, previous: Some((self.current, now + SECRET_OVERLAP)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        ["api_key.generated", "credits.low"].contains(&name)
    }

    #[test]
    fn filters_take_star_alone_or_known_types() {
        assert_eq!(EventFilter::parse(&["*".into()], known), Ok(EventFilter::All));
        assert!(EventFilter::parse(&["*".into(), "credits.low".into()], known).is_err());
        assert_eq!(EventFilter::parse(&[], known), Err(CoreError::NoEventTypes));
        assert!(matches!(EventFilter::parse(&["nope.nope".into()], known), Err(CoreError::UnknownEventType(_))));
        let both = EventFilter::parse(&["credits.low".into(), "credits.low".into(), "api_key.generated".into()], known);
        let both = both.expect("known");
        assert_eq!(both.names(), ["credits.low", "api_key.generated"]);
        assert_eq!(EventFilter::restore(&both.stored()), Ok(both.clone()));
        assert!(both.admits("credits.low") && !both.admits("api_key.rolled"));
        assert_eq!(EventFilter::restore(&EventFilter::All.stored()), Ok(EventFilter::All));
    }

    #[test]
    fn urls_are_https_with_a_host_unless_http_is_allowed() {
        assert!(WebhookUrl::parse("https://hooks.example.com/keysd", false).is_ok());
        assert!(WebhookUrl::parse("http://hooks.example.com/keysd", false).is_err());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/", true).is_ok());
        for bad in ["ftp://example.com/", "https://user:pw@example.com/", "https://example.com/#x", "/relative", ""] {
            assert!(WebhookUrl::parse(bad, true).is_err(), "{bad}");
        }
        assert!(WebhookUrl::parse(&format!("https://example.com/{}", "a".repeat(2100)), false).is_err());
        // 1,200 bytes as sent, 3,600 once percent-encoded.
        assert!(WebhookUrl::parse(&format!("https://example.com/{}", "é".repeat(600)), false).is_err());
    }

    #[test]
    fn the_schedule_retries_within_a_minute_and_for_more_than_a_day() {
        let start = OffsetDateTime::UNIX_EPOCH;
        let first = next_attempt(1, start, 0.99).expect("a retry");
        assert!(first - start < Duration::seconds(60));
        let (mut at, mut attempts) = (start, 1);
        while let Some(next) = next_attempt(attempts, at, 0.0) {
            at = next;
            attempts += 1;
        }
        assert!(at - start >= Duration::hours(24), "the last attempt comes {:?} after the first", at - start);
        assert_eq!(attempts as usize, RETRY_SCHEDULE.len() + 1);
        assert_eq!(next_attempt(0, start, 0.5), None);
    }

    #[test]
    fn credits_are_low_below_a_tenth_of_their_basis() {
        assert!(credits_low(9, 100) && !credits_low(10, 100) && !credits_low(0, 0));
    }

    #[test]
    fn an_endpoint_is_disabled_after_five_days_of_failures_only() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(10);
        assert!(!failed_too_long(None, now));
        assert!(!failed_too_long(Some(now - Duration::days(4)), now));
        assert!(failed_too_long(Some(now - Duration::days(5)), now));
    }

    #[test]
    fn a_rotated_secret_signs_for_a_day_and_never_shows() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let secrets = EndpointSecrets { current: EndpointSecret::new("whsec_old".into()), previous: None };
        let rotated = secrets.rotated(EndpointSecret::new("whsec_new".into()), now);
        assert_eq!(rotated.signing(now + Duration::hours(23)).len(), 2);
        assert_eq!(rotated.signing(now + Duration::hours(24)).len(), 1);
        assert_eq!(rotated.signing(now)[0].expose(), "whsec_new");
        assert!(!format!("{rotated:?}").contains("whsec_"));
    }
}
