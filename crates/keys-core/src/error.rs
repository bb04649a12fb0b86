//! `CoreError`: every refusal of the domain, with the client-facing message.
//!
//! Uniqueness (a taken slug or organisation name) is not the domain's to
//! know: the store reports it as a conflict.

/// Why the domain refused a value or a transition. Every variant is the
/// client's doing (a 400 or a 404 at the HTTP boundary), never an internal
/// failure; the `Display` text is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("{kind} id is malformed")]
    InvalidId { kind: &'static str },
    #[error("slug must match ^[a-z0-9][a-z0-9_-]{{0,62}}$")]
    InvalidSlug,
    #[error("slug '{0}' is reserved")]
    ReservedSlug(String),
    #[error("{field} may not be blank")]
    Blank { field: &'static str },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains control characters")]
    ControlCharacters { field: &'static str },
    #[error("{field} contains invisible format characters (such as U+200B, U+202E, U+2028 or U+3164)")]
    FormatCharacters { field: &'static str },
    #[error("{field} stacks more than {max} combining marks in a row")]
    CombiningMarks { field: &'static str, max: usize },
    #[error(
        "invalid domain '{0}': expected a host name such as app.example.com or *.example.com, \
         optionally with a scheme and port such as https://app.example.com:8443"
    )]
    InvalidDomain(String),
    #[error("'{0}' is too broad: a wildcard must cover the subdomains of a registrable domain such as *.example.com, not a public suffix")]
    WildcardTooBroad(String),
    #[error("too many allowed domains (at most {max})")]
    TooManyDomains { max: usize },
    #[error("mode must be 'sandbox' or 'production'")]
    InvalidMode,
    #[error("api_key_prefix must match ^[a-z][a-z0-9]{{1,15}}_(live|test)$ (or be null for the default SS.)")]
    InvalidApiKeyPrefix,
    #[error("on_leak must be 'disable' or 'notify'")]
    InvalidOnLeak,
    #[error("granularity must be 'minute', 'hour' or 'day'")]
    InvalidGranularity,
    #[error("usage retention must keep each width for at least one bucket, coarser widths no shorter than finer ones")]
    InvalidUsageRetention,
    #[error("since must be before until")]
    InvalidUsageWindow,
    #[error("grace_period_seconds must be a whole number of seconds between 0 and {max}")]
    InvalidGracePeriod { max: u64 },
    /// Storage returned a record no transition can produce. Never the
    /// client's doing: the store reports it as an inconsistency.
    #[error("stored {kind} is inconsistent: {reason}")]
    InconsistentRecord { kind: &'static str, reason: &'static str },
    #[error("the token leeway must be a whole number of seconds between 0 and {max}")]
    InvalidLeeway { max: u32 },
    #[error("limit must be an integer between 1 and 100")]
    InvalidLimit,
    #[error("limit must be an integer between 1 and {max}")]
    InvalidKeyPageLimit { max: u32 },
    #[error("offset must be a non-negative integer")]
    InvalidOffset,
    #[error("only 1 active signing key is allowed")]
    OnlyOneActiveSigningKey,
    #[error("only an active signing key can be rolled")]
    SigningKeyNotActive,
    #[error("the default public key cannot be deleted while other public keys exist")]
    DefaultPublicKeyInUse,
    #[error(
        "invalid scope '{0}': a scope is 1 to 64 characters of a-z, 0-9, ':', '.', '_' and '-', starting with a \
         letter or digit and optionally ending in ':*'"
    )]
    InvalidScope(String),
    #[error("too many scopes (at most {max})")]
    TooManyScopes { max: usize },
    #[error("meta must be a JSON object")]
    MetaNotAnObject,
    #[error("meta must serialise to at most {max} bytes")]
    MetaTooLarge { max: usize },
    #[error("expires_at must be in the future")]
    ExpiryInPast,
    #[error("the expires_at of a rolled API key can only be brought forward")]
    RolledKeyExpiry,
    #[error("only an active API key can be {action}")]
    ApiKeyNotActive { action: &'static str },
    #[error("only a disabled API key can be enabled")]
    ApiKeyNotDisabled,
    #[error("the API key has expired")]
    ApiKeyExpired,
    #[error("role must be 'admin', 'manage' or 'verify'")]
    InvalidRole,
    #[error("workspaces must name at least one workspace, or be null for all of them")]
    NoTokenWorkspaces,
    #[error("too many workspaces (at most {max})")]
    TooManyTokenWorkspaces { max: usize },
    #[error("an admin token reaches every workspace: workspaces applies to manage and verify tokens only")]
    AdminTokenLimited,
    #[error("a service token cannot create a token with a higher role or more workspaces than its own")]
    TokenBeyondCreator,
    #[error("the last unexpired admin token of an organisation cannot be revoked; create another admin token first (keysd token create)")]
    LastAdminToken,
    /// A cap of [`crate::Quotas`] is reached: nothing was created.
    #[error("the {holder} has reached its limit of {limit} {counted}: delete one it no longer needs first")]
    QuotaReached { holder: &'static str, counted: &'static str, limit: u32 },
    #[error("url {0}")]
    InvalidWebhookUrl(&'static str),
    #[error("unknown event type '{0}': see docs/WEBHOOKS.md for the list, or use [\"*\"] for every event")]
    UnknownEventType(String),
    #[error("events must list at least one event type, or be [\"*\"]")]
    NoEventTypes,
    #[error("events: \"*\" (every event) stands alone: [\"*\"], or a list of event types")]
    StarAlone,
    #[error("too many {field} (at most {max})")]
    TooMany { field: &'static str, max: usize },
    #[error("status must be 'enabled' or 'disabled'")]
    InvalidWebhookStatus,
    #[error("a quota must be at least 1")]
    InvalidQuota,
    #[error("{kind} is deleted")]
    AlreadyDeleted { kind: &'static str },
    /// A ring was asked for a key it does not hold (absent, or deleted and
    /// so dropped on `restore`). The store reports it as its own
    /// "not found" outcome.
    #[error("{kind} not found")]
    NotFound { kind: &'static str },
    /// A whole number outside its range; `field` is its name on the wire
    /// (`ratelimits.limit`, `credits.remaining`, `cost`, …).
    #[error("{field} must be a whole number between {min} and {max}")]
    OutOfRange { field: &'static str, min: u64, max: u64 },
    #[error(
        "invalid rate limit name '{0}': a name is 1 to 64 characters of a-z, 0-9, '_', '.', ':' and '-', starting \
         with a letter or digit"
    )]
    InvalidRateLimitName(String),
    #[error("too many rate limits (at most {max})")]
    TooManyRateLimits { max: usize },
    #[error("{field} names '{name}' twice: each name may appear once")]
    DuplicateRateLimit { field: &'static str, name: String },
    #[error("credits.refill.interval must be 'daily' or 'monthly'")]
    InvalidRefillInterval,
    #[error("credits.refill.refill_day applies to monthly refills only")]
    RefillDayNotMonthly,
    #[error("operation must be 'set', 'increment' or 'decrement'")]
    InvalidCreditsOperation,
}
