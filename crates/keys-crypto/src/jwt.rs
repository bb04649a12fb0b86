//! Verification of JWS compact tokens (JWTs) signed with ES256 or RS256.
//!
//! **The algorithm is pinned by the key, never taken from the token.** A
//! [`VerificationKey`] knows its algorithm; a token whose header says
//! anything else is rejected before any cryptography: `alg: none` and
//! everything that is not ES256/RS256 (HS256 with the public key as HMAC
//! secret, the classic confusion attack) is
//! [`JwtError::UnsupportedAlgorithm`], the other supported algorithm is
//! [`JwtError::AlgorithmMismatch`].
//!
//! **Time is a parameter.** `exp` and `nbf`, when present, are checked
//! against the `now` the caller passes, never the system clock, with a
//! leeway for clock skew ([`DEFAULT_LEEWAY_SECONDS`]):
//! - valid while `now < exp + leeway` (RFC 7519 §4.1.4: "on or after" the
//!   expiry the token is rejected), so at exactly `exp + leeway` it has
//!   expired;
//! - valid from `now + leeway >= nbf` (§4.1.5: "on or after").
//!
//! Whether a claim such as `exp` or `sub` is *required* is the caller's
//! policy: use [`Claims::require_str`] or check [`Claims::exp`].
//!
//! Tokens longer than [`MAX_TOKEN_BYTES`] are rejected before decoding.
//!
//! Signature checking is done by `jsonwebtoken` (RustCrypto backend) with a
//! `Validation` that pins the algorithm and has every time and claim check
//! turned off, so that the only clock in play is ours.

mod claims;
mod error;
mod verifier;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::key_material::PublicKeyMaterial;
use crate::keypair::{EcKeyPair, Jwk, RsaKeyPair};
use crate::{provider, CryptoError};

pub use claims::{Claims, Header, UnverifiedClaims};
pub use error::JwtError;
pub use verifier::Verifier;

use claims::{numeric_date, Rounding};

/// Default allowance for clock skew when checking `exp` and `nbf`.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 60;

/// Longest token accepted, in bytes (8 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The two signature algorithms of keysd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256: workspace signing keys.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256: organisation keys.
    Rs256,
}

impl Algorithm {
    /// The JOSE name (`ES256`, `RS256`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// Reads a JOSE `alg` name; exact, case-sensitive match (RFC 7515
    /// §4.1.1 names are case-sensitive).
    pub fn from_jose_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }

    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed public key with its algorithm, ready to verify many tokens:
/// PEM or JWK parsing and validation happen once, here. Cloning is cheap
/// (an `Arc`), so callers can cache it.
#[derive(Clone)]
pub struct VerificationKey {
    inner: Arc<KeyInner>,
}

struct KeyInner {
    material: PublicKeyMaterial,
    decoding_key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl VerificationKey {
    /// From a public key PEM (SPKI; for RS256 PKCS#1 too) for `algorithm`.
    pub fn from_pem(algorithm: Algorithm, public_key_pem: &str) -> Result<Self, CryptoError> {
        PublicKeyMaterial::from_pem(algorithm, public_key_pem).map(Self::from_material)
    }

    /// From a public JWK: `kty`/`crv` choose the algorithm; `alg` and `use`,
    /// when present, must agree (`ES256`/`RS256`, `sig`).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, CryptoError> {
        PublicKeyMaterial::from_jwk(jwk).map(Self::from_material)
    }

    pub(crate) fn from_material(material: PublicKeyMaterial) -> Self {
        let algorithm = material.algorithm();
        let mut validation = jsonwebtoken::Validation::new(algorithm.to_jsonwebtoken());
        // Signature only: time is checked by us against the caller's `now`,
        // and which claims are required is the caller's policy.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let decoding_key = material.to_decoding_key();
        Self { inner: Arc::new(KeyInner { material, decoding_key, validation }) }
    }

    /// The algorithm every token verified with this key must use.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.material.algorithm()
    }

    /// The key as SPKI PEM.
    pub fn public_key_pem(&self) -> String {
        self.inner.material.to_pem()
    }

    /// The key as a public JWK with the given `kid`.
    pub fn to_jwk(&self, kid: &str) -> Jwk {
        self.inner.material.to_jwk(kid)
    }
}

impl PartialEq for VerificationKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.material == other.inner.material
    }
}

impl Eq for VerificationKey {}

impl fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerificationKey").field("algorithm", &self.algorithm()).finish_non_exhaustive()
    }
}

/// Verifies `token` with `key`: algorithm (pinned by the key), signature,
/// then `exp`/`nbf` against `now` with `leeway_seconds`. Returns the claims.
pub fn verify(
    token: &str,
    key: &VerificationKey,
    now: OffsetDateTime,
    leeway_seconds: u64,
) -> Result<Claims, JwtError> {
    let segments = split(token)?;
    let (header, has_critical_parameters) = parse_header(segments.header)?;
    let algorithm = header.algorithm().ok_or(JwtError::UnsupportedAlgorithm)?;
    if algorithm != key.algorithm() {
        return Err(JwtError::AlgorithmMismatch);
    }
    if has_critical_parameters {
        return Err(JwtError::UnsupportedCriticalHeader);
    }

    // Decoded here so that a payload that is not a JSON object is reported
    // as malformed rather than as a bad signature.
    let claims = Claims::from_map(decode_json_object(segments.payload)?);

    provider::ensure_installed();
    let inner = &key.inner;
    // The claims were decoded above; jsonwebtoken only checks the signature
    // (`IgnoredAny` skips building a second map).
    jsonwebtoken::decode::<IgnoredAny>(token, &inner.decoding_key, &inner.validation).map_err(|error| {
        match error.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtError::AlgorithmMismatch,
            ErrorKind::UnsupportedAlgorithm | ErrorKind::InvalidAlgorithmName => JwtError::UnsupportedAlgorithm,
            // Base64, JSON, UTF-8 and shape errors.
            _ => JwtError::Malformed,
        }
    })?;

    check_time_window(&claims, now, leeway_seconds)?;
    Ok(claims)
}

/// Reads the header of `token` **without verifying anything**, to choose a
/// key by `kid`. Fails on oversized or malformed tokens and on a missing or
/// non-string `alg`.
pub fn peek_header(token: &str) -> Result<Header, JwtError> {
    let segments = split(token)?;
    parse_header(segments.header).map(|(header, _)| header)
}

/// Reads the claims of `token` **without verifying anything** (signature or
/// time), to choose a key by `iss` before calling [`verify`]. The result is
/// an [`UnverifiedClaims`], which cannot be turned into [`Claims`].
pub fn peek_unverified_claims(token: &str) -> Result<UnverifiedClaims, JwtError> {
    let segments = split(token)?;
    decode_json_object(segments.payload).map(UnverifiedClaims::from_map)
}

/// Signs `claims` (a JSON object) as a compact JWS with `alg`, the header
/// `{"typ":"JWT","alg":...,"kid":...}` and a PKCS#8 private key PEM
/// (`-----BEGIN PRIVATE KEY-----`). For tests and embedders; the service
/// itself never holds private keys.
pub fn sign(claims: &Value, kid: Option<&str>, private_key_pem: &str, alg: Algorithm) -> Result<String, CryptoError> {
    if !claims.is_object() {
        return Err(CryptoError::Signing("claims must be a JSON object".to_owned()));
    }
    // The PEM is parsed and validated by p256 / rsa; jsonwebtoken is built
    // without its own PEM support and gets DER.
    let encoding_key = match alg {
        Algorithm::Es256 => EcKeyPair::from_pkcs8_pem(private_key_pem)?.encoding_key(),
        Algorithm::Rs256 => RsaKeyPair::from_pkcs8_pem(private_key_pem)?.encoding_key(),
    };
    provider::ensure_installed();
    let mut header = jsonwebtoken::Header::new(alg.to_jsonwebtoken());
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key).map_err(|error| CryptoError::Signing(error.to_string()))
}

/// The three segments of a compact JWS, borrowed from the token.
struct Segments<'a> {
    header: &'a str,
    payload: &'a str,
}

fn split(token: &str) -> Result<Segments<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(JwtError::Malformed);
    }
    Ok(Segments { header, payload })
}

/// The header fields we use, plus whether it lists `crit` parameters.
fn parse_header(segment: &str) -> Result<(Header, bool), JwtError> {
    let object = decode_json_object(segment)?;
    let alg = match object.get("alg") {
        Some(Value::String(alg)) => alg.clone(),
        _ => return Err(JwtError::Malformed),
    };
    let kid = match object.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok((Header { alg, kid }, object.contains_key("crit")))
}

fn decode_json_object(segment: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| JwtError::Malformed)?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(JwtError::Malformed),
    }
}

fn check_time_window(claims: &Claims, now: OffsetDateTime, leeway_seconds: u64) -> Result<(), JwtError> {
    let now = now.unix_timestamp();
    let leeway = i64::try_from(leeway_seconds).unwrap_or(i64::MAX);
    if let Some(value) = claims.get("exp") {
        let expires = numeric_date(value, Rounding::Down).ok_or(JwtError::InvalidClaim("exp"))?;
        if now >= expires.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
    }
    if let Some(value) = claims.get("nbf") {
        let not_before = numeric_date(value, Rounding::Up).ok_or(JwtError::InvalidClaim("nbf"))?;
        if now.saturating_add(leeway) < not_before {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(())
}
