//! Verification over a [`Store`]: look the credential up, check signatures
//! with keys-crypto, and let `keys_core::verify` decide.
//!
//! **Invariant:** no rule of *whether* a credential may authenticate lives
//! here. This module only fetches what the `decide_*` functions of keys-core
//! need and maps their answers (and keys-crypto's `JwtError`s) to the
//! `reason` strings of the API. Embedding services can call these functions
//! directly, without HTTP.
//!
//! Signing keys are parsed from their stored PEM once per process and kept
//! in a small memo by PEM text ([`verification_key`]): parsing costs far more
//! than a signature check's bookkeeping, and a PEM always parses to the
//! same key. The memo decides nothing: whether a key may verify is decided
//! from the record the store returns, on every request.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use keys_core::verify::{
    decide_api_key, decide_organisation_key, decide_public_key, decide_signing_key, decide_user_token, parse_issuer,
    Denial, PublicKeyAccess, UserTokenClaims,
};
use keys_core::{ApiKey, OrganisationId, OrganisationKeyId, PublicKey, SigningKeyUid, Workspace};
use keys_crypto::jwt::{self, Algorithm, Claims, JwtError, VerificationKey, DEFAULT_LEEWAY_SECONDS};
use keys_crypto::{ApiKeySecret, PublicKeyValue};
use keys_store::{Store, StoreError};
use time::OffsetDateTime;

/// Why a credential did not verify: a keys-core denial, or (for the few
/// token failures keys-core has no word for) keys-crypto's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Denied(Denial),
    Token(JwtError),
}

impl Refusal {
    /// The stable snake_case `reason` of responses and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Denied(denial) => denial.reason(),
            Self::Token(error) => error.reason(),
        }
    }
}

impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Self {
        Self::Denied(denial)
    }
}

/// The answer to "does this credential verify?": `Ok` with what it grants,
/// or the refusal; `Err` only when the store failed.
pub type Verdict<T> = Result<Result<T, Refusal>, StoreError>;

/// An API key that verified, with its workspace. Shared with the store's
/// cache rather than copied: this is the hottest path of the service.
#[derive(Debug, Clone)]
pub struct VerifiedApiKey {
    found: Arc<(ApiKey, Workspace)>,
}

impl VerifiedApiKey {
    pub fn key(&self) -> &ApiKey {
        &self.found.0
    }

    pub fn workspace(&self) -> &Workspace {
        &self.found.1
    }
}

/// Verifies a server-side API key for the caller's organisation.
pub async fn api_key(store: &dyn Store, caller: &OrganisationId, presented: &str) -> Verdict<VerifiedApiKey> {
    let Ok(secret) = ApiKeySecret::parse(presented) else {
        return Ok(Err(Denial::Malformed.into()));
    };
    let found = store.shared_api_key_by_digest(&secret.digest()).await?;
    // A key of another organisation does not exist for this caller.
    if let Some(found) = &found {
        if found.1.organisation_id != *caller {
            return Ok(Err(Denial::WrongOrganisation.into()));
        }
    }
    if let Err(denial) = decide_api_key(found.as_deref().map(|(key, _)| key)) {
        return Ok(Err(denial.into()));
    }
    Ok(match found {
        Some(found) => Ok(VerifiedApiKey { found }),
        None => Err(Denial::UnknownKey.into()),
    })
}

/// What a public-key check presents.
#[derive(Clone, Copy, Default)]
pub struct PublicKeyRequest<'a> {
    pub api_key: &'a str,
    pub origin: Option<&'a str>,
    pub user_token: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
}

impl std::fmt::Debug for PublicKeyRequest<'_> {
    // The user token is a bearer credential: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKeyRequest")
            .field("api_key", &self.api_key)
            .field("origin", &self.origin)
            .field("user_token", &self.user_token.map(|_| "<redacted>"))
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

/// A public key that verified, with the user token's subject in secure mode.
#[derive(Debug, Clone)]
pub struct VerifiedPublicKey {
    pub key: PublicKey,
    pub workspace: Workspace,
    pub entity_id: Option<String>,
}

/// Verifies a publishable key (and, in secure mode, its user token) for the
/// caller's organisation at `now`.
pub async fn public_key(
    store: &dyn Store,
    caller: &OrganisationId,
    request: PublicKeyRequest<'_>,
    now: OffsetDateTime,
) -> Verdict<VerifiedPublicKey> {
    let Ok(value) = PublicKeyValue::parse(request.api_key) else {
        return Ok(Err(Denial::Malformed.into()));
    };
    let found = store.public_key_by_value(value.as_str()).await?;
    if let Some((_, workspace)) = &found {
        if &workspace.organisation_id != caller {
            return Ok(Err(Denial::WrongOrganisation.into()));
        }
    }
    let access = match decide_public_key(found.as_ref().map(|(key, _)| key), request.origin) {
        Ok(access) => access,
        Err(denial) => return Ok(Err(denial.into())),
    };
    let Some((key, workspace)) = found else {
        return Ok(Err(Denial::UnknownKey.into()));
    };
    let entity_id = match access {
        PublicKeyAccess::Granted => None,
        PublicKeyAccess::NeedsUserToken => {
            let Some(token) = request.user_token.filter(|token| !token.trim().is_empty()) else {
                return Ok(Err(Denial::UserTokenRequired.into()));
            };
            match user_token(store, &workspace, token, request.tenant_id, now).await? {
                Ok(entity_id) => Some(entity_id),
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
    };
    Ok(Ok(VerifiedPublicKey { key, workspace, entity_id }))
}

/// Secure mode: the user token must be an ES256 JWT whose `kid` is a signing
/// key of the same workspace that verifies now, and whose claims pass
/// [`decide_user_token`]. Returns the token's `entity_id`.
async fn user_token(
    store: &dyn Store,
    workspace: &Workspace,
    token: &str,
    tenant_id: Option<&str>,
    now: OffsetDateTime,
) -> Verdict<String> {
    let Ok(header) = jwt::peek_header(token) else {
        return Ok(Err(Denial::UserTokenInvalid.into()));
    };
    let Some(uid) = header.kid.as_deref().and_then(|kid| SigningKeyUid::parse(kid).ok()) else {
        return Ok(Err(Denial::UserTokenInvalid.into()));
    };
    // A key of another workspace is, for this workspace, no key at all.
    let signing_key = store.signing_key_by_uid(&uid).await?.filter(|key| key.workspace == workspace.uid);
    if let Err(denial) = decide_signing_key(signing_key.as_ref(), now) {
        return Ok(Err(denial.into()));
    }
    let Some(signing_key) = signing_key else {
        return Ok(Err(Denial::UnknownKey.into()));
    };
    let Some(parsed_key) = verification_key(Algorithm::Es256, &signing_key.public_key_pem) else {
        tracing::error!(kid = %uid, "stored signing key does not parse");
        return Ok(Err(Denial::UserTokenInvalid.into()));
    };
    let claims = match jwt::verify(token, &parsed_key, now, DEFAULT_LEEWAY_SECONDS) {
        Ok(claims) => claims,
        Err(JwtError::Expired) => return Ok(Err(Denial::UserTokenExpired.into())),
        Err(JwtError::NotYetValid) => return Ok(Err(Denial::UserTokenNotYetValid.into())),
        Err(_) => return Ok(Err(Denial::UserTokenInvalid.into())),
    };
    let user_claims = user_token_claims(&claims);
    if let Err(denial) = decide_user_token(&user_claims, tenant_id, now) {
        return Ok(Err(denial.into()));
    }
    Ok(Ok(user_claims.entity_id.unwrap_or_default()))
}

/// The claims the secure-mode rules read, from a verified token.
fn user_token_claims(claims: &Claims) -> UserTokenClaims {
    UserTokenClaims {
        entity_type: claims.get_str("entity_type").map(str::to_owned),
        entity_id: claims.get_str("entity_id").map(str::to_owned),
        exp: claims.exp(),
        tenant_id: claims
            .get("scope")
            .and_then(|scope| scope.get("tenant_id"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    }
}

/// A Versori-style JWT that verified.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub organisation_id: OrganisationId,
    pub key_id: OrganisationKeyId,
    pub sub: String,
    pub claims: serde_json::Value,
}

/// Verifies an RS256 JWT whose `iss` is `<base>/sk/<KEY_ID>` against that
/// organisation key, for the caller's organisation. `pinned_bases` empty:
/// any base is accepted as sent.
pub async fn organisation_jwt(
    store: &dyn Store,
    caller: &OrganisationId,
    token: &str,
    pinned_bases: &[String],
    now: OffsetDateTime,
) -> Verdict<VerifiedJwt> {
    let unverified = match jwt::peek_unverified_claims(token) {
        Ok(claims) => claims,
        Err(_) => return Ok(Err(Denial::Malformed.into())),
    };
    let Some(issuer) = unverified.iss() else {
        return Ok(Err(Denial::IssuerNotAccepted.into()));
    };
    let key_id = match parse_issuer(issuer, pinned_bases) {
        Ok((_base, key_id)) => key_id,
        Err(denial) => return Ok(Err(denial.into())),
    };
    let Ok(key_id) = OrganisationKeyId::parse(key_id) else {
        return Ok(Err(Denial::UnknownKey.into()));
    };
    let key = store.organisation_key(&key_id).await?;
    if let Err(denial) = decide_organisation_key(key.as_ref(), caller) {
        return Ok(Err(denial.into()));
    }
    let Some(key) = key else {
        return Ok(Err(Denial::UnknownKey.into()));
    };
    let Some(parsed_key) = verification_key(Algorithm::Rs256, &key.public_key_pem) else {
        tracing::error!(key_id = %key.id, "stored organisation key does not parse");
        return Ok(Err(Denial::SignatureInvalid.into()));
    };
    let claims = match jwt::verify(token, &parsed_key, now, DEFAULT_LEEWAY_SECONDS) {
        Ok(claims) => claims,
        Err(error) => return Ok(Err(refusal_of_jwt_error(error))),
    };
    let Some(sub) = claims.sub().filter(|sub| !sub.trim().is_empty()).map(str::to_owned) else {
        return Ok(Err(Denial::SubjectMissing.into()));
    };
    Ok(Ok(VerifiedJwt {
        organisation_id: key.organisation_id.clone(),
        key_id: key.id.clone(),
        sub,
        claims: claims.into_value(),
    }))
}

/// The most parsed keys the memo keeps; past it, it starts over. Keys only
/// come from the store, so this is a guard, not a working limit.
const PARSED_KEYS_CAPACITY: usize = 10_000;

/// Parsed keys by PEM text.
static PARSED_KEYS: LazyLock<RwLock<HashMap<String, Arc<VerificationKey>>>> = LazyLock::new(RwLock::default);

/// The key a stored PEM holds, parsed for `algorithm`; `None` if it does
/// not parse as one (failures are not remembered: they are logged, and
/// should not happen).
pub fn verification_key(algorithm: Algorithm, public_key_pem: &str) -> Option<Arc<VerificationKey>> {
    // A poisoned lock still guards a consistent map: every update is one
    // insert or clear.
    let known = PARSED_KEYS.read().unwrap_or_else(PoisonError::into_inner).get(public_key_pem).cloned();
    if let Some(key) = known.filter(|key| key.algorithm() == algorithm) {
        return Some(key);
    }
    let key = Arc::new(VerificationKey::from_pem(algorithm, public_key_pem).ok()?);
    let mut parsed = PARSED_KEYS.write().unwrap_or_else(PoisonError::into_inner);
    if parsed.len() >= PARSED_KEYS_CAPACITY {
        parsed.clear();
    }
    parsed.insert(public_key_pem.to_owned(), Arc::clone(&key));
    Some(key)
}

/// keys-core's word for a token failure where it has one, keys-crypto's
/// otherwise.
pub(crate) fn refusal_of_jwt_error(error: JwtError) -> Refusal {
    match error {
        JwtError::Malformed | JwtError::TooLarge => Denial::Malformed.into(),
        JwtError::BadSignature => Denial::SignatureInvalid.into(),
        JwtError::AlgorithmMismatch | JwtError::UnsupportedAlgorithm => Denial::AlgorithmMismatch.into(),
        JwtError::Expired => Denial::TokenExpired.into(),
        JwtError::NotYetValid => Denial::TokenNotYetValid.into(),
        JwtError::UnknownKey => Denial::UnknownKey.into(),
        other => Refusal::Token(other),
    }
}
