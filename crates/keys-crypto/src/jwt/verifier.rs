//! A set of keys addressed by `kid`, for services that embed keysd's
//! verification without HTTP.

use std::collections::BTreeMap;

use keys_core::verify::{TimeDenial, TimePolicy};
use time::OffsetDateTime;

use super::{Claims, JwtError, ParsedToken, VerificationKey};
use crate::jwk::JwkSet;
use crate::CryptoError;

/// Verifies tokens against a fixed set of keys, choosing the key by the
/// token's `kid` header. Each key pins its own algorithm.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: BTreeMap<String, VerificationKey>,
    policy: TimePolicy,
}

impl Verifier {
    /// From `(kid, key)` pairs. Two keys with one `kid` are an error, since
    /// a token could then not name its key unambiguously.
    pub fn new(keys: impl IntoIterator<Item = (String, VerificationKey)>) -> Result<Self, CryptoError> {
        let mut by_kid = BTreeMap::new();
        for (kid, key) in keys {
            if by_kid.contains_key(&kid) {
                return Err(CryptoError::DuplicateKeyId(kid));
            }
            by_kid.insert(kid, key);
        }
        Ok(Self { keys: by_kid, policy: TimePolicy::default() })
    }

    /// From a JWK Set. As RFC 7517 §5 asks, keys this verifier cannot use
    /// are skipped: other key types or curves, `use` other than `sig`, an
    /// `alg` other than ES256/RS256, and keys without a `kid` (a token could
    /// never select them). A key of a supported type with broken material,
    /// or a repeated `kid`, is an error rather than silently ignored.
    pub fn from_jwk_set(set: &JwkSet) -> Result<Self, CryptoError> {
        let mut keys = Vec::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let Some(kid) = jwk.kid.as_ref() else {
                continue;
            };
            match VerificationKey::from_jwk(jwk) {
                Ok(key) => keys.push((kid.clone(), key)),
                Err(CryptoError::UnsupportedKey(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Self::new(keys)
    }

    /// From a JWKS JSON document (`{"keys": [...]}`).
    pub fn from_jwks_json(json: &str) -> Result<Self, CryptoError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|error| CryptoError::InvalidJwkSet(error.to_string()))?;
        Self::from_jwk_set(&set)
    }

    /// The same verifier with another time policy (default: keys-core's
    /// default leeway for `exp`, `nbf` and `iat`).
    pub fn with_time_policy(mut self, policy: TimePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The key for a `kid`.
    pub fn key(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    /// The key ids, sorted.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys (every token is then
    /// [`JwtError::UnknownKey`]).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Picks the key named by the token's `kid` ([`JwtError::UnknownKey`] if
    /// there is none or it names no key here) and verifies with it, as
    /// [`super::verify`] does, then applies the time policy at `now`.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Claims, JwtError> {
        let parsed = ParsedToken::parse(token)?;
        let key = parsed.header.kid.as_deref().and_then(|kid| self.keys.get(kid)).ok_or(JwtError::UnknownKey)?;
        let claims = parsed.verify(key)?;
        self.policy.check(&claims.times(), now).map_err(|denial| match denial {
            TimeDenial::Expired => JwtError::Expired,
            TimeDenial::NotYetValid => JwtError::NotYetValid,
        })?;
        Ok(claims)
    }
}
