//! The verification decision: the one place that says whether a credential
//! may authenticate at a given moment, and why not when it may not.
//!
//! Callers look the credential up (by digest, by value, by kid) and, where a
//! signature is involved, check it cryptographically; these functions then
//! decide. Each decision is total: it takes what the lookup found (`None`
//! included) and the caller's [`Scope`], and returns either what may be
//! used or the [`Denial`], so no caller unwraps or filters again. Tenant
//! isolation, "secure mode needs a user token", "a JWT needs a `sub`" and
//! the one time policy of every token ([`TimePolicy`]) are decided here and
//! nowhere else; keys-service calls these functions for the HTTP server, the
//! CLI and embedding services alike.

mod time_policy;

use time::OffsetDateTime;

pub use time_policy::{
    TimeDenial, TimePolicy, TokenTimes, DEFAULT_LEEWAY_SECONDS, DEFAULT_USER_TOKEN_MAX_LIFETIME_SECONDS,
    MAX_LEEWAY_SECONDS,
};

use crate::origin::Origin;
use crate::{
    ApiKey, OrganisationId, OrganisationSigningKey, PublicKey, SigningKeyRing, Workspace, WorkspaceSigningKey,
    WorkspaceSlug, WorkspaceUid,
};

/// Why a credential may not authenticate. `reason()` is the stable
/// snake_case text of API responses and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// Not in the format of such a credential (checked before any lookup).
    Malformed,
    /// No such credential (or it was rotated away).
    UnknownKey,
    /// The credential was deleted.
    Deleted,
    /// A key past its expiry (an API key's `expires_at`, a rolled signing
    /// key's `expiry_at`).
    KeyExpired,
    /// A disabled API key.
    KeyDisabled,
    /// The key belongs to another organisation than the caller's.
    WrongOrganisation,
    /// The key has `allowed_domains` but the request named no origin.
    OriginRequired,
    /// The origin is not covered by `allowed_domains`.
    OriginNotAllowed,
    /// Secure mode is on and no user token was sent.
    UserTokenRequired,
    /// The user token's signature, format or algorithm did not verify.
    UserTokenInvalid,
    /// The user token is past its `exp`.
    UserTokenExpired,
    /// The user token has no `exp`: secure mode requires one.
    UserTokenExpiryMissing,
    /// The user token is not yet valid (`nbf`).
    UserTokenNotYetValid,
    /// The user token is valid for longer than a user token may be
    /// ([`TimePolicy::user_token_max_lifetime_seconds`]): an `exp` of year
    /// 9999 or 2^64 is a token that never expires.
    UserTokenLifetimeTooLong,
    /// The user token has no `kid`, none of the [`MAX_KIDLESS_CANDIDATES`]
    /// newest keys verifies it, and the workspace has more keys that verify
    /// now: the token must name its key.
    UserTokenKidRequired,
    /// `entity_type` is not `subscriber`.
    EntityTypeNotSubscriber,
    /// `entity_id` is missing or empty.
    EntityIdMissing,
    /// `scope.tenant_id` differs from the requested tenant.
    TenantMismatch,
    /// A JWT's `iss` is not `<issuer base>/sk/<KEY_ID>` with an accepted base.
    IssuerNotAccepted,
    /// A JWT lacks its `sub`.
    SubjectMissing,
    /// A JWT's signature did not verify.
    SignatureInvalid,
    /// A JWT uses another algorithm than its key's.
    AlgorithmMismatch,
    /// A JWT is past its `exp`.
    TokenExpired,
    /// A JWT is not valid yet (`nbf`).
    TokenNotYetValid,
    /// A JWT has no `exp` and the operator requires one.
    TokenExpiryMissing,
    /// A JWT is valid for longer than the operator allows.
    TokenLifetimeTooLong,
    /// A JWT's `aud` names none of the audiences the operator accepts.
    AudienceNotAccepted,
    /// The credential verified but lacks one of the required scopes.
    InsufficientScope,
    /// The key verified but one of its rate limits, or its identity's,
    /// refuses it now (`keys_core::meter::decide`).
    RateLimited,
    /// The key verified but its balance, or its identity's, holds less
    /// than the verification's cost.
    UsageExceeded,
    /// The request carried no credential at all (forward authentication).
    CredentialMissing,
    /// The gateway's own service token (forward authentication's
    /// `X-Keysd-Service-Token`) is missing, unknown, revoked or expired, or
    /// its role does not permit verification.
    ServiceTokenInvalid,
}

impl Denial {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::Deleted => "key_deleted",
            Self::KeyExpired => "key_expired",
            Self::KeyDisabled => "key_disabled",
            Self::WrongOrganisation => "unknown_key",
            Self::OriginRequired => "origin_required",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::UserTokenRequired => "user_token_required",
            Self::UserTokenInvalid => "user_token_invalid",
            Self::UserTokenExpired => "user_token_expired",
            Self::UserTokenExpiryMissing => "user_token_exp_missing",
            Self::UserTokenNotYetValid => "user_token_not_yet_valid",
            Self::UserTokenLifetimeTooLong => "user_token_lifetime_too_long",
            Self::UserTokenKidRequired => "user_token_kid_required",
            Self::EntityTypeNotSubscriber => "entity_type_not_subscriber",
            Self::EntityIdMissing => "entity_id_missing",
            Self::TenantMismatch => "tenant_mismatch",
            Self::IssuerNotAccepted => "issuer_not_accepted",
            Self::SubjectMissing => "subject_missing",
            Self::SignatureInvalid => "signature_invalid",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenExpiryMissing => "token_exp_missing",
            Self::TokenLifetimeTooLong => "token_lifetime_too_long",
            Self::AudienceNotAccepted => "audience_not_accepted",
            Self::InsufficientScope => "insufficient_scope",
            Self::RateLimited => "rate_limited",
            Self::UsageExceeded => "usage_exceeded",
            Self::CredentialMissing => "credential_missing",
            Self::ServiceTokenInvalid => "service_token_invalid",
        }
    }

    /// Every denial, for metrics that pre-register their labels.
    pub const ALL: [Denial; 32] = [
        Self::Malformed,
        Self::UnknownKey,
        Self::Deleted,
        Self::KeyExpired,
        Self::KeyDisabled,
        Self::WrongOrganisation,
        Self::OriginRequired,
        Self::OriginNotAllowed,
        Self::UserTokenRequired,
        Self::UserTokenInvalid,
        Self::UserTokenExpired,
        Self::UserTokenExpiryMissing,
        Self::UserTokenNotYetValid,
        Self::UserTokenLifetimeTooLong,
        Self::UserTokenKidRequired,
        Self::EntityTypeNotSubscriber,
        Self::EntityIdMissing,
        Self::TenantMismatch,
        Self::IssuerNotAccepted,
        Self::SubjectMissing,
        Self::SignatureInvalid,
        Self::AlgorithmMismatch,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::TokenExpiryMissing,
        Self::TokenLifetimeTooLong,
        Self::AudienceNotAccepted,
        Self::InsufficientScope,
        Self::RateLimited,
        Self::UsageExceeded,
        Self::CredentialMissing,
        Self::ServiceTokenInvalid,
    ];
}

/// What a caller may reach: its own organisation, and in it the
/// workspaces its token is limited to (all when unlimited). Every decision
/// takes it, so tenant isolation is decided here and nowhere else; a
/// credential of another organisation, or of a workspace outside the limit,
/// is for this caller no credential at all ([`Denial::WrongOrganisation`],
/// reported as `unknown_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    organisation: &'a OrganisationId,
    workspaces: Option<&'a [WorkspaceSlug]>,
}

/// How a management call may treat a workspace it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceAccess {
    /// The caller reaches it.
    Reachable,
    /// It is the caller's organisation's, outside the token's workspaces: a
    /// 403 (the caller may know it exists: it could list its own limit).
    Forbidden,
    /// Another organisation's, or none: a 404, exactly like one that does
    /// not exist.
    Hidden,
}

impl<'a> Scope<'a> {
    /// The scope of a caller authenticated for `organisation`, reaching
    /// every workspace of it.
    pub fn organisation(organisation: &'a OrganisationId) -> Self {
        Self { organisation, workspaces: None }
    }

    /// The scope of a caller limited to `workspaces` (`None`: all).
    pub fn limited(organisation: &'a OrganisationId, workspaces: Option<&'a [WorkspaceSlug]>) -> Self {
        Self { organisation, workspaces }
    }

    /// The organisation the caller belongs to.
    pub fn organisation_id(&self) -> &'a OrganisationId {
        self.organisation
    }

    /// The workspaces the caller is limited to, `None` when it reaches all.
    pub fn workspace_limit(&self) -> Option<&'a [WorkspaceSlug]> {
        self.workspaces
    }

    /// Whether the caller reaches every workspace of its organisation, and
    /// so what spans them (organisation keys).
    pub fn reaches_every_workspace(&self) -> bool {
        self.workspaces.is_none()
    }

    /// Whether the caller may see this organisation's resources.
    pub fn reaches_organisation(&self, organisation: &OrganisationId) -> bool {
        self.organisation == organisation
    }

    /// Whether the caller's limit admits the workspace with this slug.
    pub fn admits_slug(&self, slug: &WorkspaceSlug) -> bool {
        self.workspaces.is_none_or(|limit| limit.contains(slug))
    }

    /// Whether every workspace `limit` reaches is one this scope reaches: a
    /// token may only hand on what it has.
    pub fn covers_all(&self, limit: &crate::TokenWorkspaces) -> bool {
        match (self.workspaces, limit.slugs()) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(wanted)) => wanted.iter().all(|slug| self.admits_slug(slug)),
        }
    }

    /// How the caller may treat this workspace.
    pub fn access(&self, workspace: &Workspace) -> WorkspaceAccess {
        if !self.reaches_organisation(&workspace.organisation_id) {
            WorkspaceAccess::Hidden
        } else if self.admits_slug(&workspace.slug) {
            WorkspaceAccess::Reachable
        } else {
            WorkspaceAccess::Forbidden
        }
    }

    /// How the caller may treat the organisation keys of `organisation`
    /// (management and verification alike). An organisation key spans every
    /// workspace, so a token limited to some workspaces may not manage or
    /// use one: [`WorkspaceAccess::Forbidden`]. Another organisation's keys
    /// are [`WorkspaceAccess::Hidden`], exactly like none.
    pub fn organisation_keys_access(&self, organisation: &OrganisationId) -> WorkspaceAccess {
        if !self.reaches_organisation(organisation) {
            WorkspaceAccess::Hidden
        } else if self.reaches_every_workspace() {
            WorkspaceAccess::Reachable
        } else {
            WorkspaceAccess::Forbidden
        }
    }

    /// Whether the caller may see this workspace and its keys.
    pub fn reaches(&self, workspace: &Workspace) -> bool {
        self.access(workspace) == WorkspaceAccess::Reachable
    }

    /// `found`, if the caller may see it: the filter of verification's
    /// workspace lookups.
    pub fn filter_workspace(&self, found: Option<Workspace>) -> Option<Workspace> {
        found.filter(|workspace| self.reaches(workspace))
    }
}

/// May this API key (looked up by the digest of the presented secret, with
/// its workspace) authenticate for the caller at `now`, holding every one
/// of `required` scopes? Returns what was found. Deleted, disabled and
/// expired keys may not (see [`ApiKey::authenticates`]).
pub fn decide_api_key<'a, R: AsRef<str>>(
    found: Option<(&'a ApiKey, &'a Workspace)>,
    scope: Scope<'_>,
    now: OffsetDateTime,
    required: &[R],
) -> Result<(&'a ApiKey, &'a Workspace), Denial> {
    let (key, workspace) = found.ok_or(Denial::UnknownKey)?;
    if !scope.reaches(workspace) {
        return Err(Denial::WrongOrganisation);
    }
    key.authenticates(now)?;
    decide_scopes(key.scopes.as_slice(), required)?;
    Ok((key, workspace))
}

/// What a public key grants once its own checks pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyAccess<'a> {
    /// The key alone suffices.
    Granted { key: &'a PublicKey, workspace: &'a Workspace },
    /// Secure mode, and a user token was presented: it must verify (see
    /// [`decide_signing_key`] and [`decide_user_token`]).
    NeedsUserToken { key: &'a PublicKey, workspace: &'a Workspace },
}

/// What a public-key request presents besides the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublicKeyPresentation<'r> {
    /// The `Origin` (or bare host) the request came from.
    pub origin: Option<&'r str>,
    /// Whether a non-blank user token was sent.
    pub has_user_token: bool,
}

/// May this public key (looked up by its value, with its workspace) be used
/// by the caller from the presented origin, and does it need a user token?
pub fn decide_public_key<'a>(
    found: Option<(&'a PublicKey, &'a Workspace)>,
    scope: Scope<'_>,
    presented: PublicKeyPresentation<'_>,
) -> Result<PublicKeyAccess<'a>, Denial> {
    let (key, workspace) = found.ok_or(Denial::UnknownKey)?;
    if !scope.reaches(workspace) {
        return Err(Denial::WrongOrganisation);
    }
    if key.is_deleted() {
        return Err(Denial::Deleted);
    }
    if let Some(allowed) = &key.allowed_domains {
        let origin = presented.origin.filter(|origin| !origin.trim().is_empty()).ok_or(Denial::OriginRequired)?;
        let origin = Origin::parse(origin).ok_or(Denial::OriginNotAllowed)?;
        if !allowed.iter().any(|pattern| pattern.allows(&origin)) {
            return Err(Denial::OriginNotAllowed);
        }
    }
    if !key.is_secure_mode_enabled {
        return Ok(PublicKeyAccess::Granted { key, workspace });
    }
    if !presented.has_user_token {
        return Err(Denial::UserTokenRequired);
    }
    Ok(PublicKeyAccess::NeedsUserToken { key, workspace })
}

/// May a user token for `workspace` whose `kid` names this signing key be
/// checked against it at `now`? A key of another workspace is, for this
/// workspace, no key at all.
pub fn decide_signing_key<'a>(
    found: Option<&'a WorkspaceSigningKey>,
    workspace: &WorkspaceUid,
    now: OffsetDateTime,
) -> Result<&'a WorkspaceSigningKey, Denial> {
    let key = found.filter(|key| &key.workspace == workspace).ok_or(Denial::UnknownKey)?;
    if key.is_deleted() {
        return Err(Denial::Deleted);
    }
    if !key.verifies_at(now) {
        return Err(Denial::KeyExpired);
    }
    Ok(key)
}

/// The longest an outside verifier may cache a JWKS (`Cache-Control:
/// public, max-age`), in seconds: a key deleted or past its grace is still
/// trusted by such a cache for at most this long.
pub const JWKS_MAX_AGE_SECONDS: u32 = 60;

/// How long a JWKS published at `now` may be cached: at most
/// [`JWKS_MAX_AGE_SECONDS`], and for a workspace (its `ring`) never past
/// the earliest end of grace of a key it lists
/// ([`SigningKeyRing::jwks_max_age`]). An organisation's JWKS (`None`)
/// lists keys without a grace: the cap.
pub fn jwks_max_age(ring: Option<&SigningKeyRing>, now: OffsetDateTime) -> u32 {
    ring.map_or(JWKS_MAX_AGE_SECONDS, |ring| ring.jwks_max_age(now, JWKS_MAX_AGE_SECONDS))
}

/// The most signature checks a user token *without* a `kid` costs: it is
/// checked against at most this many keys, newest first. Without a bound
/// one such token costs a check per key in grace (a `manage` token can
/// roll a thousand keys into a 30-day grace in seconds, and then every
/// kid-less token, forged ones included, costs a thousand checks). Three
/// covers the active key and the two most recent rolls, which is what a
/// workspace that rolls on a schedule has in grace; a workspace with more
/// keys verifying at once needs tokens that name their key
/// ([`Denial::UserTokenKidRequired`]).
pub const MAX_KIDLESS_CANDIDATES: usize = 3;

/// The keys a user token *without* a `kid` is checked against, in order,
/// and what to answer when none of them verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KidlessCandidates<'a> {
    keys: Vec<&'a WorkspaceSigningKey>,
    /// Whether more keys verify now than were kept.
    truncated: bool,
}

impl<'a> KidlessCandidates<'a> {
    /// The keys to try, newest first: at most [`MAX_KIDLESS_CANDIDATES`].
    pub fn keys(&self) -> &[&'a WorkspaceSigningKey] {
        &self.keys
    }

    /// Whether the key `uid` is one of them (the warm path's question: a
    /// token verified earlier by a key now outside them would not verify
    /// again on the cold path).
    pub fn contains(&self, uid: &crate::SigningKeyUid) -> bool {
        self.keys.iter().any(|key| &key.uid == uid)
    }

    /// Whether keys beyond [`MAX_KIDLESS_CANDIDATES`] verify now too.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The denial of a token whose signature none of them verifies: it
    /// names no key and more keys verify now than a kid-less token is
    /// checked against ([`Denial::UserTokenKidRequired`]), or it is simply
    /// not signed by a key of the workspace ([`Denial::UserTokenInvalid`]).
    pub fn none_verified(&self) -> Denial {
        if self.truncated {
            Denial::UserTokenKidRequired
        } else {
            Denial::UserTokenInvalid
        }
    }
}

/// The keys a user token *without* a `kid` is checked against, in order:
/// the workspace's active key, then the rolled keys still inside their
/// grace, most recently rolled first, at most [`MAX_KIDLESS_CANDIDATES`] in
/// all. SuprSend's documented recipe (`jwt.sign(payload, pem, {algorithm:
/// 'ES256'})`) writes no `kid`, so this is how most real tokens arrive. The
/// token is valid if one of them verifies its signature: at most that many
/// signature checks, each with the algorithm pinned by the key, however
/// many keys are in grace. No key verifying now is [`Denial::UnknownKey`].
pub fn kidless_candidates(ring: &SigningKeyRing, now: OffsetDateTime) -> Result<KidlessCandidates<'_>, Denial> {
    let mut keys: Vec<&WorkspaceSigningKey> = ring.verifying_at(now).collect();
    if keys.is_empty() {
        return Err(Denial::UnknownKey);
    }
    // Active first (it has no `rolled_at`), then the newest roll.
    keys.sort_by(|left, right| {
        right.rolled_at().is_none().cmp(&left.rolled_at().is_none()).then(right.rolled_at().cmp(&left.rolled_at()))
    });
    let truncated = keys.len() > MAX_KIDLESS_CANDIDATES;
    keys.truncate(MAX_KIDLESS_CANDIDATES);
    Ok(KidlessCandidates { keys, truncated })
}

/// The claims of a user token that the secure-mode rules read, extracted by
/// the caller from a token whose signature already verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTokenClaims {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub times: TokenTimes,
    pub tenant_id: Option<String>,
}

/// The tenant a request means when it names none.
pub const DEFAULT_TENANT: &str = "default";

/// A time window refusal as the denial a kind of token reports for it.
fn time_denial(denial: TimeDenial, expired: Denial, not_yet_valid: Denial) -> Denial {
    match denial {
        TimeDenial::Expired => expired,
        TimeDenial::NotYetValid => not_yet_valid,
    }
}

/// Do a verified user token's claims allow access for `tenant_id` at `now`?
/// Returns the token's `entity_id`.
pub fn decide_user_token<'c>(
    claims: &'c UserTokenClaims,
    tenant_id: Option<&str>,
    policy: &TimePolicy,
    now: OffsetDateTime,
) -> Result<&'c str, Denial> {
    policy
        .check(&claims.times, now)
        .map_err(|denial| time_denial(denial, Denial::UserTokenExpired, Denial::UserTokenNotYetValid))?;
    if claims.entity_type.as_deref() != Some("subscriber") {
        return Err(Denial::EntityTypeNotSubscriber);
    }
    let entity_id = claims.entity_id.as_deref().filter(|id| !id.trim().is_empty()).ok_or(Denial::EntityIdMissing)?;
    // A user token without an expiry would be valid for as long as its key:
    // secure mode requires one.
    if claims.times.exp.is_none() {
        return Err(Denial::UserTokenExpiryMissing);
    }
    // Nor may one be valid for ever: an `exp` of year 9999 (or 2^64, which
    // keys-crypto reads as the far future) meets "has an `exp`" and
    // nothing else.
    if TimePolicy::lifetime_exceeds(&claims.times, now, policy.user_token_max_lifetime_seconds()) {
        return Err(Denial::UserTokenLifetimeTooLong);
    }
    let wanted = tenant_id.unwrap_or(DEFAULT_TENANT);
    let token_tenant = claims.tenant_id.as_deref().unwrap_or(DEFAULT_TENANT);
    if wanted != token_tenant {
        return Err(Denial::TenantMismatch);
    }
    Ok(entity_id)
}

/// May this organisation signing key verify a JWT for the caller? Returns
/// the key. An organisation key spans every workspace of its organisation,
/// so a caller limited to some workspaces does not reach it: for such a
/// caller it is no key at all ([`Denial::WrongOrganisation`], reported as
/// `unknown_key`), as a key of a workspace outside its limit is.
pub fn decide_organisation_key<'a>(
    found: Option<&'a OrganisationSigningKey>,
    scope: Scope<'_>,
) -> Result<&'a OrganisationSigningKey, Denial> {
    let key = found.ok_or(Denial::UnknownKey)?;
    if scope.organisation_keys_access(&key.organisation_id) != WorkspaceAccess::Reachable {
        return Err(Denial::WrongOrganisation);
    }
    if key.is_deleted() {
        return Err(Denial::Deleted);
    }
    Ok(key)
}

/// The claims of a Versori-style JWT that the rules read, from a token
/// whose signature already verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganisationTokenClaims<'c> {
    pub sub: Option<&'c str>,
    pub times: TokenTimes,
    /// `aud`: a single string or each string of an array.
    pub audiences: Vec<&'c str>,
}

/// What an operator demands of Versori-style JWTs beyond the time window
/// (`--jwt-require-exp`, `--jwt-max-lifetime-seconds`, `--jwt-audience`).
/// The default demands nothing more, as Versori's tokens do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganisationTokenPolicy {
    /// A token without `exp` would be valid until its key is deleted.
    pub require_exp: bool,
    /// The longest a token may be valid: `exp` at most this long after its
    /// `iat` (or after `now` when it has none). Implies `require_exp`.
    pub max_lifetime_seconds: Option<u32>,
    /// When not empty, `aud` must name one of these.
    pub audiences: Vec<String>,
}

/// Do a verified organisation JWT's claims allow access at `now`? Returns
/// its subject.
pub fn decide_organisation_token<'c>(
    claims: &OrganisationTokenClaims<'c>,
    time_policy: &TimePolicy,
    token_policy: &OrganisationTokenPolicy,
    now: OffsetDateTime,
) -> Result<&'c str, Denial> {
    time_policy
        .check(&claims.times, now)
        .map_err(|denial| time_denial(denial, Denial::TokenExpired, Denial::TokenNotYetValid))?;
    let exp = claims.times.exp;
    if exp.is_none() && (token_policy.require_exp || token_policy.max_lifetime_seconds.is_some()) {
        return Err(Denial::TokenExpiryMissing);
    }
    if let Some(max) = token_policy.max_lifetime_seconds {
        if TimePolicy::lifetime_exceeds(&claims.times, now, max) {
            return Err(Denial::TokenLifetimeTooLong);
        }
    }
    if !token_policy.audiences.is_empty()
        && !claims.audiences.iter().any(|audience| token_policy.audiences.iter().any(|accepted| accepted == audience))
    {
        return Err(Denial::AudienceNotAccepted);
    }
    claims.sub.filter(|sub| !sub.trim().is_empty()).ok_or(Denial::SubjectMissing)
}

/// Does a credential granted `granted` cover every scope in `required`? A
/// granted scope ending in `:*` covers every scope that starts with the
/// part before the `*` (`keys:*` covers `keys:read` and `keys:admin:write`);
/// any other covers only itself. Nothing required: always covered.
pub fn decide_scopes<G: AsRef<str>, R: AsRef<str>>(granted: &[G], required: &[R]) -> Result<(), Denial> {
    let covers = |granted: &str, wanted: &str| match granted.strip_suffix('*') {
        Some(prefix) if prefix.ends_with(':') => wanted.starts_with(prefix),
        _ => granted == wanted,
    };
    let all_covered =
        required.iter().all(|wanted| granted.iter().any(|granted| covers(granted.as_ref(), wanted.as_ref())));
    if all_covered {
        Ok(())
    } else {
        Err(Denial::InsufficientScope)
    }
}

/// Splits a Versori-style issuer `<base>/sk/<KEY_ID>` into (base, key id),
/// and checks the base against the operator's pinned bases (empty: any base
/// is accepted as sent).
pub fn parse_issuer<'a>(issuer: &'a str, pinned_bases: &[String]) -> Result<(&'a str, &'a str), Denial> {
    let (base, key_id) = issuer.rsplit_once("/sk/").ok_or(Denial::IssuerNotAccepted)?;
    if base.is_empty() || key_id.is_empty() || key_id.contains('/') {
        return Err(Denial::IssuerNotAccepted);
    }
    if !pinned_bases.is_empty() && !pinned_bases.iter().any(|pinned| pinned.trim_end_matches('/') == base) {
        return Err(Denial::IssuerNotAccepted);
    }
    Ok((base, key_id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use time::Duration;

    use super::*;
    use crate::{Actor, GracePeriod, NewSigningKey, SigningKeyId, TokenWorkspaces};

    fn organisation(last: char) -> OrganisationId {
        OrganisationId::parse(&format!("01J000000000000000000000{last}A")).unwrap()
    }

    #[test]
    fn organisation_keys_are_for_the_own_organisation_and_an_unlimited_token_only() {
        let (own, other) = (organisation('1'), organisation('2'));
        let limit = TokenWorkspaces::only(vec![WorkspaceSlug::parse("staging").unwrap()]).unwrap();
        let cases = [
            (Scope::organisation(&own), &own, WorkspaceAccess::Reachable),
            (Scope::organisation(&own), &other, WorkspaceAccess::Hidden),
            (Scope::limited(&own, limit.slugs()), &own, WorkspaceAccess::Forbidden),
            (Scope::limited(&own, limit.slugs()), &other, WorkspaceAccess::Hidden),
        ];
        for (scope, named, access) in cases {
            assert_eq!(scope.organisation_keys_access(named), access, "{scope:?} {named:?}");
        }
    }

    #[test]
    fn a_jwks_is_cached_at_most_the_cap_and_never_past_a_grace() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(JWKS_MAX_AGE_SECONDS, 60);
        assert_eq!(jwks_max_age(None, now), JWKS_MAX_AGE_SECONDS, "an organisation's keys have no grace");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let new_key = |rng: &mut ChaCha8Rng| NewSigningKey {
            id: SigningKeyId::generate(now, rng),
            uid: crate::SigningKeyUid::generate(now, rng),
            public_key_pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(),
        };
        let (actor, workspace) = (Actor::new("a", "a@example.com"), WorkspaceUid::generate(now, &mut rng));
        let mut ring = SigningKeyRing::restore(workspace, Vec::new());
        assert_eq!(jwks_max_age(Some(&ring), now), JWKS_MAX_AGE_SECONDS, "no key");
        let first = ring.create(new_key(&mut rng), &actor, now).unwrap().uid.clone();
        assert_eq!(jwks_max_age(Some(&ring), now), JWKS_MAX_AGE_SECONDS, "an active key has no grace");
        let long = GracePeriod::from_seconds(3_600).unwrap();
        let (_, second) = ring.roll(&first, Some(long), new_key(&mut rng), &actor, now).unwrap();
        let second = second.uid.clone();
        assert_eq!(jwks_max_age(Some(&ring), now), JWKS_MAX_AGE_SECONDS, "a grace beyond the cap");
        let short = GracePeriod::from_seconds(10).unwrap();
        ring.roll(&second, Some(short), new_key(&mut rng), &actor, now).unwrap();
        assert_eq!(jwks_max_age(Some(&ring), now), 10, "never past the earliest end of grace");
        assert_eq!(jwks_max_age(Some(&ring), now + Duration::seconds(10)), JWKS_MAX_AGE_SECONDS, "ended");
    }
}
