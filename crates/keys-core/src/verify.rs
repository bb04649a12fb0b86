//! The verification decision: the one place that says whether a credential
//! may authenticate at a given moment, and why not when it may not.
//!
//! Callers look the credential up (by digest, by value, by kid) and, where a
//! signature is involved, check it cryptographically; these functions then
//! decide. keys-http and embedding services both call them, so the rules
//! exist once.

use time::OffsetDateTime;

use crate::values::origin_host;
use crate::{ApiKey, OrganisationSigningKey, PublicKey, WorkspaceSigningKey};

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
    /// A rolled signing key past its `expiry_at`.
    KeyExpired,
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
    /// The user token is past its `exp` (or has none).
    UserTokenExpired,
    /// The user token is not yet valid (`nbf`).
    UserTokenNotYetValid,
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
}

impl Denial {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnknownKey => "unknown_key",
            Self::Deleted => "key_deleted",
            Self::KeyExpired => "key_expired",
            Self::WrongOrganisation => "unknown_key",
            Self::OriginRequired => "origin_required",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::UserTokenRequired => "user_token_required",
            Self::UserTokenInvalid => "user_token_invalid",
            Self::UserTokenExpired => "user_token_expired",
            Self::UserTokenNotYetValid => "user_token_not_yet_valid",
            Self::EntityTypeNotSubscriber => "entity_type_not_subscriber",
            Self::EntityIdMissing => "entity_id_missing",
            Self::TenantMismatch => "tenant_mismatch",
            Self::IssuerNotAccepted => "issuer_not_accepted",
            Self::SubjectMissing => "subject_missing",
            Self::SignatureInvalid => "signature_invalid",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
        }
    }

    /// Every denial, for metrics that pre-register their labels.
    pub const ALL: [Denial; 20] = [
        Self::Malformed,
        Self::UnknownKey,
        Self::Deleted,
        Self::KeyExpired,
        Self::WrongOrganisation,
        Self::OriginRequired,
        Self::OriginNotAllowed,
        Self::UserTokenRequired,
        Self::UserTokenInvalid,
        Self::UserTokenExpired,
        Self::UserTokenNotYetValid,
        Self::EntityTypeNotSubscriber,
        Self::EntityIdMissing,
        Self::TenantMismatch,
        Self::IssuerNotAccepted,
        Self::SubjectMissing,
        Self::SignatureInvalid,
        Self::AlgorithmMismatch,
        Self::TokenExpired,
        Self::TokenNotYetValid,
    ];
}

/// May this API key (looked up by the digest of the presented secret)
/// authenticate?
pub fn decide_api_key(key: Option<&ApiKey>) -> Result<(), Denial> {
    match key {
        None => Err(Denial::UnknownKey),
        Some(key) if key.is_deleted() => Err(Denial::Deleted),
        Some(_) => Ok(()),
    }
}

/// What a public key grants once its own checks pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyAccess {
    /// The key alone suffices.
    Granted,
    /// Secure mode: a user token must also verify (see
    /// [`decide_signing_key`] and [`decide_user_token`]).
    NeedsUserToken,
}

/// May this public key (looked up by its value) be used from `origin`?
pub fn decide_public_key(key: Option<&PublicKey>, origin: Option<&str>) -> Result<PublicKeyAccess, Denial> {
    let key = key.ok_or(Denial::UnknownKey)?;
    if key.is_deleted() {
        return Err(Denial::Deleted);
    }
    if let Some(allowed) = &key.allowed_domains {
        let origin = origin.filter(|origin| !origin.trim().is_empty()).ok_or(Denial::OriginRequired)?;
        let host = origin_host(origin).ok_or(Denial::OriginNotAllowed)?;
        if !allowed.iter().any(|pattern| pattern.covers(&host)) {
            return Err(Denial::OriginNotAllowed);
        }
    }
    Ok(if key.is_secure_mode_enabled { PublicKeyAccess::NeedsUserToken } else { PublicKeyAccess::Granted })
}

/// May a token whose `kid` names this workspace signing key be checked
/// against it at `now`?
pub fn decide_signing_key(key: Option<&WorkspaceSigningKey>, now: OffsetDateTime) -> Result<(), Denial> {
    let key = key.ok_or(Denial::UnknownKey)?;
    if key.is_deleted() {
        return Err(Denial::Deleted);
    }
    if !key.verifies_at(now) {
        return Err(Denial::KeyExpired);
    }
    Ok(())
}

/// The claims of a user token that the secure-mode rules read, extracted by
/// the caller from a token whose signature already verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserTokenClaims {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Seconds since the epoch.
    pub exp: Option<i64>,
    pub tenant_id: Option<String>,
}

/// The tenant a request means when it names none.
pub const DEFAULT_TENANT: &str = "default";

/// Do a verified user token's claims allow access for `tenant_id` at `now`?
pub fn decide_user_token(claims: &UserTokenClaims, tenant_id: Option<&str>, now: OffsetDateTime) -> Result<(), Denial> {
    if claims.entity_type.as_deref() != Some("subscriber") {
        return Err(Denial::EntityTypeNotSubscriber);
    }
    if claims.entity_id.as_deref().is_none_or(|id| id.trim().is_empty()) {
        return Err(Denial::EntityIdMissing);
    }
    match claims.exp {
        Some(exp) if exp > now.unix_timestamp() => {}
        _ => return Err(Denial::UserTokenExpired),
    }
    let wanted = tenant_id.unwrap_or(DEFAULT_TENANT);
    let token_tenant = claims.tenant_id.as_deref().unwrap_or(DEFAULT_TENANT);
    if wanted != token_tenant {
        return Err(Denial::TenantMismatch);
    }
    Ok(())
}

/// May this organisation signing key verify a JWT for `caller_organisation`?
pub fn decide_organisation_key(
    key: Option<&OrganisationSigningKey>,
    caller_organisation: &crate::OrganisationId,
) -> Result<(), Denial> {
    let key = key.ok_or(Denial::UnknownKey)?;
    if &key.organisation_id != caller_organisation {
        return Err(Denial::WrongOrganisation);
    }
    if key.is_deleted() {
        return Err(Denial::Deleted);
    }
    Ok(())
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
