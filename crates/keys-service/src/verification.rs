//! Verification: look the credential up, check signatures with keys-crypto,
//! and let the total decisions of `keys_core::verify` decide.
//!
//! **Invariant:** no rule of *whether* a credential may authenticate lives
//! here. This module only fetches what the `decide_*` functions need, in the
//! order they need it, and maps keys-crypto's structural `JwtError`s to the
//! `reason`s of the API.
//!
//! Signing keys are parsed from their stored PEM once per service and kept
//! in a small memo by PEM text ([`ParsedKeys`]): parsing costs far more
//! than a signature check's bookkeeping, and a PEM always parses to the
//! same key. The memo decides nothing: whether a key may verify is decided
//! from the record the store returns, on every request.
//!
//! JWTs that verified are remembered by the digest of the whole token
//! ([`crate::warm`]): a hit skips the parsing and the signature check only,
//! and decides everything else again, from the store's current records, at
//! `now`, with the same `decide_*` functions as the cold path.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use keys_core::meter::{Decision, MeterRequest};
use keys_core::verify::TokenTimes;

use keys_core::verify::{
    decide_api_key, decide_organisation_key, decide_organisation_token, decide_public_key, decide_signing_key,
    decide_user_token, jwks_max_age, kidless_candidates, parse_issuer, Denial, KidlessCandidates,
    OrganisationTokenClaims, PublicKeyAccess, PublicKeyPresentation, UserTokenClaims,
};
use keys_core::{
    ApiKey, OrganisationId, OrganisationKeyId, OrganisationSigningKey, PublicKey, SigningKeyRing, SigningKeyUid,
    Workspace, WorkspaceUid,
};
use keys_core::{Permission, SecretDigest};
use keys_crypto::jwt::{self, Algorithm, Claims, JwtError, VerificationKey};
use keys_crypto::keypair::public_jwk_from_pem;
use keys_crypto::secret::sha256_digest;
use keys_crypto::{ApiKeySecret, JwkSet, PublicKeyValue, ServiceToken};
use keys_store::StoreError;
use time::OffsetDateTime;

use keys_core::usage::VALID;

use crate::usage_counts::Counted;
use crate::{Caller, Service};

/// Why a credential did not verify: a keys-core denial, or (for the few
/// structural token failures keys-core has no word for) keys-crypto's
/// reason.
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

/// Every verification needs [`Permission::Verify`] of its caller
/// ([`Caller::require`]). Every role has it; a caller without it would be
/// refused as a gateway without it is (`service_token_invalid`).
fn may_verify(caller: &Caller) -> Result<(), Refusal> {
    caller.require(Permission::Verify).map_err(|_| Denial::ServiceTokenInvalid.into())
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

/// An API key's verdict with metering's decision: `meter` is `None` when
/// nothing meters the key or it did not verify; a refusal by metering is
/// `rate_limited` or `usage_exceeded` in `verdict`, with the decision (its
/// report, its retry instant) here.
#[derive(Debug, Clone)]
pub struct MeteredVerdict {
    pub verdict: Result<VerifiedApiKey, Refusal>,
    pub meter: Option<Decision>,
}

/// What a public-key check presents.
#[derive(Clone, Copy, Default)]
pub struct PublicKeyRequest<'a> {
    pub api_key: &'a str,
    pub origin: Option<&'a str>,
    pub user_token: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
}

impl fmt::Debug for PublicKeyRequest<'_> {
    // The user token is a bearer credential: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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

/// A Versori-style JWT that verified.
#[derive(Debug, Clone)]
pub struct VerifiedJwt {
    pub organisation_id: OrganisationId,
    pub key_id: OrganisationKeyId,
    pub sub: String,
    /// Shared with the warm path's entry rather than copied.
    pub claims: Arc<serde_json::Value>,
}

/// What a token's signature check established, remembered by the digest of
/// the token ([`crate::warm`]). No decision: which key signed, and the
/// claims the rules read.
#[derive(Debug, Clone)]
pub(crate) enum Warm {
    User(Arc<WarmUserToken>),
    Organisation(Arc<WarmJwt>),
}

/// A secure-mode user token whose ES256 signature verified.
#[derive(Debug)]
pub(crate) struct WarmUserToken {
    /// The workspace signing key that verified it.
    key: SigningKeyUid,
    /// Whether the token's `kid` named that key (otherwise it was found
    /// among the kid-less candidates, and must still be one).
    named_by_kid: bool,
    claims: UserTokenClaims,
}

/// A Versori-style JWT whose RS256 signature verified.
#[derive(Debug)]
pub(crate) struct WarmJwt {
    key_id: OrganisationKeyId,
    sub: Option<String>,
    times: TokenTimes,
    audiences: Vec<String>,
    claims: Arc<serde_json::Value>,
}

impl Service {
    /// Authenticates a presented service token (format and checksum first,
    /// then one digest lookup, then keys-core's
    /// [`ServiceTokenRecord::authenticates`] at the clock's `now`: a revoked
    /// or expired token is refused). `None`: not a valid token. A token that
    /// authenticates has its use recorded for `last_used_at`.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Caller>, StoreError> {
        let Ok(token) = ServiceToken::parse(presented) else {
            return Ok(None);
        };
        let digest = token.digest();
        let Some(record) = self.store.shared_service_token_by_digest(&digest).await? else {
            return Ok(None);
        };
        let now = self.now();
        if !record.authenticates(now) {
            return Ok(None);
        }
        self.token_usage.record(&record.id, digest.as_bytes()[0], now);
        Ok(Some(Caller::authenticated(record)))
    }

    /// Authenticates the gateway of a forward-authentication request: a
    /// service token that [authenticates](Self::authenticate) and whose
    /// role permits [`Permission::Verify`] (keys-core decides:
    /// [`keys_core::Role::permits`]). `None`: the gateway is refused
    /// (`service_token_invalid`). Roles are ordered, so `manage` and
    /// `admin` tokens pass too; a gateway needs no more than `verify`, and
    /// one holding more is logged once per token (per process), as a
    /// warning, for its operator to replace.
    pub async fn authenticate_gateway(&self, presented: &str) -> Result<Option<Caller>, StoreError> {
        let Some(caller) = self.authenticate(presented).await? else {
            return Ok(None);
        };
        if caller.require(Permission::Verify).is_err() {
            return Ok(None);
        }
        if caller.role() > Permission::Verify.least_role() {
            self.warn_of_strong_gateway(&caller);
        }
        Ok(Some(caller))
    }

    /// Logs, once per token, that a gateway authenticated with a token
    /// stronger than it needs. The set of tokens warned of is bounded: past
    /// [`STRONG_GATEWAYS_REMEMBERED`] it starts over, so a token may be
    /// warned of again, never on every request.
    fn warn_of_strong_gateway(&self, caller: &Caller) {
        let token = caller.record();
        let mut warned = self.strong_gateways.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.contains(&token.id) {
            return;
        }
        if warned.len() >= STRONG_GATEWAYS_REMEMBERED {
            warned.clear();
        }
        warned.insert(token.id.clone());
        tracing::warn!(
            token_id = %token.id,
            role = %token.role,
            organisation = %token.organisation_id,
            "a gateway authenticates forward authentication with a service token stronger than it needs: \
             give it a `verify` token (keysd token create --role verify)"
        );
    }

    /// Verifies a server-side API key for the caller at the clock's `now`.
    /// The outer `Result` is the store's; the inner one the verdict, with
    /// the reason of a refusal (docs/API.md, Verification).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let database = keys_testkit::TestDb::sqlite();
    /// use keys_core::{Name, Role, TokenWorkspaces};
    /// use keys_service::api_keys::NewApiKey;
    /// use keys_service::{Caller, Service, ServiceConfig};
    ///
    /// let service = Service::new(keys_store::open(database.url()).await.unwrap(), ServiceConfig::default());
    /// let organisation = service.bootstrap_if_empty().await.unwrap().unwrap().organisation;
    /// let name = |text| Name::parse(text).unwrap();
    /// let admin = Caller::embedded(organisation.id.clone(), Role::Admin, TokenWorkspaces::all(), name("ops")).unwrap();
    /// let staging = service.in_workspace(&admin, "staging").await.unwrap();
    /// let issued = staging.create_api_key(NewApiKey::named(name("backend"))).await.unwrap();
    ///
    /// let verifier = Caller::embedded(organisation.id, Role::Verify, TokenWorkspaces::all(), name("api")).unwrap();
    /// let verified = service.verify_api_key(&verifier, issued.secret.expose()).await.unwrap().unwrap();
    /// assert_eq!(verified.workspace().slug.as_str(), "staging");
    /// let refused = service.verify_api_key(&verifier, "SS.not-a-key").await.unwrap().unwrap_err();
    /// assert!(!refused.reason().is_empty());
    /// # });
    /// ```
    pub async fn verify_api_key(&self, caller: &Caller, presented: &str) -> Verdict<VerifiedApiKey> {
        self.verify_api_key_with_scopes::<&str>(caller, presented, &[]).await
    }

    /// Verifies a server-side API key that must also grant every scope in
    /// `required_scopes` (the verify endpoint's `required_scopes`, forward
    /// authentication's `X-Keysd-Required-Scopes`). A key that verifies has
    /// its use recorded for `last_used_at` (in memory; see [`crate::usage`]).
    pub async fn verify_api_key_with_scopes<R: AsRef<str> + Sync>(
        &self,
        caller: &Caller,
        presented: &str,
        required_scopes: &[R],
    ) -> Verdict<VerifiedApiKey> {
        let metered = self.verify_api_key_metered(caller, presented, required_scopes, &MeterRequest::default()).await?;
        Ok(metered.verdict)
    }

    /// Verifies a server-side API key as [`Self::verify_api_key_with_scopes`]
    /// does, then meters it (docs/METERING.md): the key's rate limits and
    /// its identity's, then their credits, spending `request.cost`. A key
    /// that its metering refuses is `rate_limited` or `usage_exceeded`, and
    /// the refusal spends nothing. The answer carries metering's decision
    /// (`None` when nothing meters the key, or it did not verify).
    pub async fn verify_api_key_metered<R: AsRef<str> + Sync>(
        &self,
        caller: &Caller,
        presented: &str,
        required_scopes: &[R],
        request: &MeterRequest,
    ) -> Result<MeteredVerdict, StoreError> {
        let refused = |refusal: Refusal| MeteredVerdict { verdict: Err(refusal), meter: None };
        if let Err(refusal) = may_verify(caller) {
            return Ok(refused(refusal));
        }
        let Some(digest) = api_key_digest(presented) else {
            return Ok(refused(Denial::Malformed.into()));
        };
        let found = self.store.shared_api_key_by_digest(&digest).await?;
        let now = self.now();
        let pair = found.as_deref().map(|(key, workspace)| (key, workspace));
        let mut decided = decide_api_key(pair, caller.scope(), now, required_scopes).map(|_| ());
        let mut meter = None;
        if let (Ok(()), Some((key, workspace))) = (&decided, found.as_deref()) {
            meter = self.metering.meter(self.store.as_ref(), key, workspace, request, now).await?;
            match &meter {
                Some(Decision::RateLimited { .. }) => decided = Err(Denial::RateLimited),
                Some(Decision::UsageExceeded { .. }) => decided = Err(Denial::UsageExceeded),
                _ => {}
            }
        }
        if let Some((key, workspace)) = found.as_deref() {
            let counted = Counted { workspace: workspace.uid.as_str(), key_id: key.id.as_str() };
            let outcome = decided.map_or_else(Denial::reason, |()| VALID);
            self.usage_counts.record(counted, outcome, digest.as_bytes()[0], now);
            // Webhook warnings: only where a condition holds, never a store
            // round trip here (crate::webhooks).
            self.verification_warnings(key, workspace, decided.is_ok(), meter.as_ref(), now);
        }
        let verdict = match (decided, found) {
            (Ok(()), Some(found)) => {
                self.usage.record(&found.0.id, digest.as_bytes()[0], now);
                Ok(VerifiedApiKey { found })
            }
            (Err(denial), _) => Err(denial.into()),
            // A decision that grants always had something to grant.
            (Ok(()), None) => Err(Denial::UnknownKey.into()),
        };
        Ok(MeteredVerdict { verdict, meter })
    }

    /// Verifies a publishable key (and, in secure mode, its user token) for
    /// the caller, at the clock's `now`.
    pub async fn verify_public_key(
        &self,
        caller: &Caller,
        request: PublicKeyRequest<'_>,
    ) -> Verdict<VerifiedPublicKey> {
        if let Err(refusal) = may_verify(caller) {
            return Ok(Err(refusal));
        }
        let mut refused_key = None;
        let verdict = self.verify_public_key_of(caller, request, &mut refused_key).await?;
        let counted = match (&verdict, &refused_key) {
            (Ok(verified), _) => Some((&verified.key, &verified.workspace)),
            (Err(_), Some((key, workspace))) => Some((key, workspace)),
            (Err(_), None) => None,
        };
        if let Some((key, workspace)) = counted {
            let counted = Counted { workspace: workspace.uid.as_str(), key_id: key.id.as_str() };
            let outcome = verdict.as_ref().map_or_else(|refusal| refusal.reason(), |_| VALID);
            self.usage_counts.record(counted, outcome, counted.shard_byte(), self.now());
        }
        Ok(verdict)
    }

    /// [`Self::verify_public_key`] for a caller that may verify; a key
    /// found and refused is left in `refused_key`, to be counted.
    async fn verify_public_key_of(
        &self,
        caller: &Caller,
        request: PublicKeyRequest<'_>,
        refused_key: &mut Option<(PublicKey, Workspace)>,
    ) -> Verdict<VerifiedPublicKey> {
        let Ok(value) = PublicKeyValue::parse(request.api_key) else {
            return Ok(Err(Denial::Malformed.into()));
        };
        let found = self.store.public_key_by_value(value.as_str()).await?;
        let Some((key, workspace)) = found else {
            let presented = PublicKeyPresentation { origin: request.origin, has_user_token: false };
            return Ok(Err(decide_public_key(None, caller.scope(), presented)
                .err()
                .unwrap_or(Denial::UnknownKey)
                .into()));
        };
        let verdict = self.decide_public_key_request(caller, request, &key, &workspace).await?;
        Ok(match verdict {
            Ok(entity_id) => Ok(VerifiedPublicKey { key, workspace, entity_id }),
            Err(refusal) => {
                *refused_key = Some((key, workspace));
                Err(refusal)
            }
        })
    }

    /// Whether a public key that was found grants `request`: its rules, then
    /// in secure mode the user token's. `Ok(entity_id)` when it does.
    async fn decide_public_key_request(
        &self,
        caller: &Caller,
        request: PublicKeyRequest<'_>,
        key: &PublicKey,
        workspace: &Workspace,
    ) -> Verdict<Option<String>> {
        let found = Some((key, workspace));
        let user_token = request.user_token.filter(|token| !token.trim().is_empty());
        let presented = PublicKeyPresentation { origin: request.origin, has_user_token: user_token.is_some() };
        // What the decision grants, reduced to what outlives the borrow.
        let needs_token_for = match decide_public_key(found, caller.scope(), presented) {
            Ok(PublicKeyAccess::Granted { .. }) => None,
            Ok(PublicKeyAccess::NeedsUserToken { workspace, .. }) => Some(workspace.uid.clone()),
            Err(denial) => return Ok(Err(denial.into())),
        };
        let entity_id = match (needs_token_for, user_token) {
            (None, _) => None,
            (Some(workspace), Some(token)) => match self.user_token(&workspace, token, request.tenant_id).await? {
                Ok(entity_id) => Some(entity_id),
                Err(refusal) => return Ok(Err(refusal)),
            },
            // decide_public_key asks for a token only when one was sent.
            (Some(_), None) => return Ok(Err(Denial::UserTokenRequired.into())),
        };
        Ok(Ok(entity_id))
    }

    /// Secure mode: the user token must be an ES256 JWT signed by a key of
    /// the same workspace that verifies now — the one its `kid` names, or,
    /// without a `kid`, one of [`kidless_candidates`] — and whose claims
    /// pass [`decide_user_token`]. Returns the token's `entity_id`.
    async fn user_token(&self, workspace: &WorkspaceUid, token: &str, tenant_id: Option<&str>) -> Verdict<String> {
        let now = self.now();
        let digest = self.warm_digest(token);
        if let Some(digest) = &digest {
            if let Some(Warm::User(warm)) = self.warm.get(digest) {
                return self.warm_user_token(workspace, &warm, digest, tenant_id, now).await;
            }
        }
        let Ok(header) = jwt::peek_header(token) else {
            return Ok(Err(Denial::UserTokenInvalid.into()));
        };
        let (claims, key, named_by_kid) = match header.kid.as_deref() {
            Some(kid) => {
                let Ok(uid) = SigningKeyUid::parse(kid) else {
                    return Ok(Err(Denial::UserTokenInvalid.into()));
                };
                let found = self.store.signing_key_by_uid(&uid).await?;
                let signing_key = match decide_signing_key(found.as_ref(), workspace, now) {
                    Ok(key) => key,
                    Err(denial) => return Ok(Err(denial.into())),
                };
                let Some(parsed_key) = self.parsed_keys.get(Algorithm::Es256, &signing_key.public_key_pem) else {
                    tracing::error!(kid = %uid, "stored signing key does not parse");
                    return Ok(Err(Denial::UserTokenInvalid.into()));
                };
                match self.check_signature(token, &parsed_key) {
                    Ok(claims) => (claims, uid, true),
                    Err(_) => return Ok(Err(Denial::UserTokenInvalid.into())),
                }
            }
            None => {
                let ring = SigningKeyRing::restore(workspace.clone(), self.store.live_signing_keys(workspace).await?);
                let candidates = match kidless_candidates(&ring, now) {
                    Ok(candidates) => candidates,
                    Err(denial) => return Ok(Err(denial.into())),
                };
                match self.verify_with_any(token, &candidates) {
                    Ok((claims, key)) => (claims, key, false),
                    Err(denial) => return Ok(Err(denial.into())),
                }
            }
        };
        let user_claims = user_token_claims(&claims);
        let decided = decide_user_token(&user_claims, tenant_id, &self.config.time_policy, now).map(str::to_owned);
        if let (Ok(_), Some(digest)) = (&decided, &digest) {
            self.warm.insert(digest, Warm::User(Arc::new(WarmUserToken { key, named_by_kid, claims: user_claims })));
        }
        Ok(decided.map_err(Refusal::from))
    }

    /// A user token seen before: its signature verified with `warm.key`;
    /// everything else is decided again as [`Self::user_token`] decides it.
    async fn warm_user_token(
        &self,
        workspace: &WorkspaceUid,
        warm: &WarmUserToken,
        digest: &SecretDigest,
        tenant_id: Option<&str>,
        now: OffsetDateTime,
    ) -> Verdict<String> {
        let key = if warm.named_by_kid {
            let found = self.store.signing_key_by_uid(&warm.key).await?;
            decide_signing_key(found.as_ref(), workspace, now).map(|_| ())
        } else {
            let ring = SigningKeyRing::restore(workspace.clone(), self.store.live_signing_keys(workspace).await?);
            // The cold path tries every candidate; only the key that signed
            // can verify, so the token verifies iff that key is one of them
            // (and is refused as the cold path would refuse it otherwise).
            kidless_candidates(&ring, now).and_then(|candidates| {
                if candidates.contains(&warm.key) {
                    Ok(())
                } else {
                    Err(candidates.none_verified())
                }
            })
        };
        if let Err(denial) = key {
            return Ok(Err(denial.into()));
        }
        match decide_user_token(&warm.claims, tenant_id, &self.config.time_policy, now) {
            Ok(entity_id) => Ok(Ok(entity_id.to_owned())),
            Err(denial) => {
                if denial == Denial::UserTokenExpired {
                    self.warm.remove(digest);
                }
                Ok(Err(denial.into()))
            }
        }
    }

    /// The digest a token is remembered by, when the warm path is on.
    fn warm_digest(&self, token: &str) -> Option<SecretDigest> {
        self.warm.enabled().then(|| sha256_digest(token.as_bytes()))
    }

    /// The claims of `token` if one of `candidates` verifies its signature,
    /// with the key that did; otherwise the candidates' refusal
    /// ([`KidlessCandidates::none_verified`]). Only a bad signature moves on
    /// to the next key: a token that is malformed or names another
    /// algorithm fails the same way for every key, so it is refused after
    /// one check. At most [`keys_core::verify::MAX_KIDLESS_CANDIDATES`]
    /// checks, however many keys are in grace.
    fn verify_with_any(
        &self,
        token: &str,
        candidates: &KidlessCandidates<'_>,
    ) -> Result<(Claims, SigningKeyUid), Denial> {
        for key in candidates.keys() {
            let Some(parsed_key) = self.parsed_keys.get(Algorithm::Es256, &key.public_key_pem) else {
                tracing::error!(kid = %key.uid, "stored signing key does not parse");
                continue;
            };
            match self.check_signature(token, &parsed_key) {
                Ok(claims) => return Ok((claims, key.uid.clone())),
                Err(JwtError::BadSignature) => continue,
                Err(_) => return Err(Denial::UserTokenInvalid),
            }
        }
        Err(candidates.none_verified())
    }

    /// keys-crypto's verification of `token` with `key`, counted: every
    /// call is one signature check in [`Service::signature_checks`] (an
    /// upper bound: a token refused before the cryptography counts too).
    fn check_signature(&self, token: &str, key: &VerificationKey) -> Result<Claims, JwtError> {
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        jwt::verify(token, key)
    }

    /// How many signature checks verification has made since the service
    /// started: user tokens (by `kid` or among the kid-less candidates) and
    /// organisation-key JWTs; the warm path makes none. `/metrics` shows it
    /// as `keysd_signature_checks_total`.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.load(Ordering::Relaxed)
    }

    /// Verifies an RS256 JWT whose `iss` is `<base>/sk/<KEY_ID>` against that
    /// organisation key, for the caller.
    pub async fn verify_jwt(&self, caller: &Caller, token: &str) -> Verdict<VerifiedJwt> {
        if let Err(refusal) = may_verify(caller) {
            return Ok(Err(refusal));
        }
        let mut refused_key = None;
        let verdict = self.verify_jwt_of(caller, token, &mut refused_key).await?;
        let key_id = match (&verdict, &refused_key) {
            (Ok(verified), _) => Some(&verified.key_id),
            (Err(_), key_id) => key_id.as_ref(),
        };
        if let Some(key_id) = key_id {
            let counted = Counted { workspace: "", key_id: key_id.as_str() };
            let outcome = verdict.as_ref().map_or_else(|refusal| refusal.reason(), |_| VALID);
            self.usage_counts.record(counted, outcome, counted.shard_byte(), self.now());
        }
        Ok(verdict)
    }

    /// [`Self::verify_jwt`] for a caller that may verify; the id of an
    /// organisation key found, whose token was refused, is left in
    /// `refused_key`, to be counted.
    async fn verify_jwt_of(
        &self,
        caller: &Caller,
        token: &str,
        refused_key: &mut Option<OrganisationKeyId>,
    ) -> Verdict<VerifiedJwt> {
        let digest = self.warm_digest(token);
        if let Some(digest) = &digest {
            if let Some(Warm::Organisation(warm)) = self.warm.get(digest) {
                let verdict = self.warm_jwt(caller, &warm, digest).await?;
                if verdict.is_err() {
                    *refused_key = Some(warm.key_id.clone());
                }
                return Ok(verdict);
            }
        }
        let unverified = match jwt::peek_unverified_claims(token) {
            Ok(claims) => claims,
            Err(_) => return Ok(Err(Denial::Malformed.into())),
        };
        let Some(issuer) = unverified.iss() else {
            return Ok(Err(Denial::IssuerNotAccepted.into()));
        };
        let key_id = match parse_issuer(issuer, &self.config.issuer_bases) {
            Ok((_base, key_id)) => key_id,
            Err(denial) => return Ok(Err(denial.into())),
        };
        let Ok(key_id) = OrganisationKeyId::parse(key_id) else {
            return Ok(Err(Denial::UnknownKey.into()));
        };
        let found = self.store.organisation_key(&key_id).await?;
        if found.is_some() {
            *refused_key = Some(key_id.clone());
        }
        let key = match decide_organisation_key(found.as_ref(), caller.scope()) {
            Ok(key) => key,
            Err(denial) => return Ok(Err(denial.into())),
        };
        let Some(parsed_key) = self.parsed_keys.get(Algorithm::Rs256, &key.public_key_pem) else {
            tracing::error!(key_id = %key.id, "stored organisation key does not parse");
            return Ok(Err(Denial::SignatureInvalid.into()));
        };
        let claims = match self.check_signature(token, &parsed_key) {
            Ok(claims) => claims,
            Err(error) => return Ok(Err(refusal_of_jwt_error(error))),
        };
        let warm = WarmJwt {
            key_id: key.id.clone(),
            sub: claims.sub().map(str::to_owned),
            times: claims.times(),
            audiences: claims.aud().into_iter().map(str::to_owned).collect(),
            claims: Arc::new(claims.into_value()),
        };
        let verified = self.decide_jwt(key, &warm);
        if let (Ok(_), Some(digest)) = (&verified, &digest) {
            self.warm.insert(digest, Warm::Organisation(Arc::new(warm)));
        }
        Ok(verified)
    }

    /// A JWT seen before: its signature verified with `warm.key_id`;
    /// everything else is decided again as [`Self::verify_jwt`] decides it.
    async fn warm_jwt(&self, caller: &Caller, warm: &WarmJwt, digest: &SecretDigest) -> Verdict<VerifiedJwt> {
        let found = self.store.organisation_key(&warm.key_id).await?;
        let key = match decide_organisation_key(found.as_ref(), caller.scope()) {
            Ok(key) => key,
            Err(denial) => return Ok(Err(denial.into())),
        };
        let verified = self.decide_jwt(key, warm);
        if matches!(verified, Err(Refusal::Denied(Denial::TokenExpired))) {
            self.warm.remove(digest);
        }
        Ok(verified)
    }

    /// keys-core's decision on the claims of a JWT that `key` verified.
    fn decide_jwt(&self, key: &OrganisationSigningKey, warm: &WarmJwt) -> Result<VerifiedJwt, Refusal> {
        let decided = OrganisationTokenClaims {
            sub: warm.sub.as_deref(),
            times: warm.times,
            audiences: warm.audiences.iter().map(String::as_str).collect(),
        };
        let sub = decide_organisation_token(
            &decided,
            &self.config.time_policy,
            &self.config.organisation_token_policy,
            self.now(),
        )?;
        Ok(VerifiedJwt {
            organisation_id: key.organisation_id.clone(),
            key_id: key.id.clone(),
            sub: sub.to_owned(),
            claims: Arc::clone(&warm.claims),
        })
    }

    /// The JWKS of a workspace: the keys that verify now (active, and rolled
    /// before their `expiry_at`), by the ring's rule, which is the one
    /// [`decide_signing_key`] applies, with how long outside verifiers may
    /// cache it. `None`: no such workspace.
    pub async fn workspace_jwks(&self, uid: &WorkspaceUid) -> Result<Option<PublishedJwks>, StoreError> {
        let Some(workspace) = self.store.workspace_by_uid(uid).await? else {
            return Ok(None);
        };
        let ring = SigningKeyRing::restore(workspace.uid.clone(), self.store.live_signing_keys(&workspace.uid).await?);
        let now = self.now();
        let mut set = JwkSet::default();
        for key in ring.verifying_at(now) {
            match public_jwk_from_pem(Algorithm::Es256, &key.public_key_pem, key.uid.as_str()) {
                Ok(jwk) => set.keys.push(jwk),
                Err(error) => tracing::error!(kid = %key.uid, error = %error, "stored signing key does not parse"),
            }
        }
        Ok(Some(PublishedJwks { max_age_seconds: jwks_max_age(Some(&ring), now), keys: set }))
    }

    /// The JWKS of an organisation: its keys that verify (not deleted; they
    /// have no expiry, so the full cache lifetime applies). `None`: no such
    /// organisation.
    pub async fn organisation_jwks(&self, id: &OrganisationId) -> Result<Option<PublishedJwks>, StoreError> {
        if self.store.organisation(id).await?.is_none() {
            return Ok(None);
        }
        let mut set = JwkSet::default();
        for key in self.store.list_organisation_keys(id).await?.iter().filter(|key| key.verifies()) {
            match public_jwk_from_pem(Algorithm::Rs256, &key.public_key_pem, key.id.as_str()) {
                Ok(jwk) => set.keys.push(jwk),
                Err(error) => {
                    tracing::error!(key_id = %key.id, error = %error, "stored organisation key does not parse")
                }
            }
        }
        Ok(Some(PublishedJwks { keys: set, max_age_seconds: jwks_max_age(None, self.now()) }))
    }
}

/// A JWKS as published, with its cache lifetime.
#[derive(Debug, Clone)]
pub struct PublishedJwks {
    pub keys: JwkSet,
    /// `Cache-Control: public, max-age=N`.
    pub max_age_seconds: u32,
}

/// The claims the secure-mode rules read, from a verified token.
fn user_token_claims(claims: &Claims) -> UserTokenClaims {
    UserTokenClaims {
        entity_type: claims.get_str("entity_type").map(str::to_owned),
        entity_id: claims.get_str("entity_id").map(str::to_owned),
        times: claims.times(),
        tenant_id: claims
            .get("scope")
            .and_then(|scope| scope.get("tenant_id"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    }
}

/// keys-core's word for a structural token failure where it has one,
/// keys-crypto's otherwise (the OpenAPI document lists the reasons this
/// gives).
pub fn refusal_of_jwt_error(error: JwtError) -> Refusal {
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

/// The most gateway tokens [`Service::authenticate_gateway`] remembers
/// having warned of.
pub(crate) const STRONG_GATEWAYS_REMEMBERED: usize = 1_024;

/// The digest a presented API key is looked up by, or `None` for a text
/// that can be no key at all, refused without a lookup. keysd's own formats
/// (`SS.` …, or a workspace prefix such as `acme_live_` …) must pass their
/// checksum; any other text is a key imported from another system if it is
/// 16–256 printable ASCII characters. Those reach the lookup, as a
/// well-formed but unknown keysd key does, and their misses are
/// remembered by the store's cache the same way (bounded, per process,
/// dropped when keys are created or imported), so the same unknown text
/// presented again does not reach the database again.
pub(crate) fn api_key_digest(presented: &str) -> Option<keys_core::SecretDigest> {
    match ApiKeySecret::recognise(presented) {
        Some(parsed) => parsed.ok().map(|secret| secret.digest()),
        None => keys_crypto::ImportedKeyText::parse_foreign(presented).ok().map(|text| text.digest()),
    }
}

/// The most parsed keys the memo keeps; past it, it starts over. Keys only
/// come from the store, so this is a guard, not a working limit.
const PARSED_KEYS_CAPACITY: usize = 10_000;

/// Parsed keys by PEM text.
#[derive(Default)]
pub(crate) struct ParsedKeys {
    keys: RwLock<HashMap<String, Arc<VerificationKey>>>,
}

impl ParsedKeys {
    /// The key a stored PEM holds, parsed for `algorithm`; `None` if it does
    /// not parse as one (failures are not remembered: they are logged, and
    /// should not happen).
    fn get(&self, algorithm: Algorithm, public_key_pem: &str) -> Option<Arc<VerificationKey>> {
        // A poisoned lock still guards a consistent map: every update is one
        // insert or clear.
        let known = self.keys.read().unwrap_or_else(PoisonError::into_inner).get(public_key_pem).cloned();
        if let Some(key) = known.filter(|key| key.algorithm() == algorithm) {
            return Some(key);
        }
        let key = Arc::new(VerificationKey::from_pem(algorithm, public_key_pem).ok()?);
        let mut parsed = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if parsed.len() >= PARSED_KEYS_CAPACITY {
            parsed.clear();
        }
        parsed.insert(public_key_pem.to_owned(), Arc::clone(&key));
        Some(key)
    }
}
