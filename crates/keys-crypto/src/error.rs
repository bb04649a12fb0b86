//! The one error type at the boundary of this crate.
//!
//! Verification failures of a token are not errors of the crate but answers
//! to a question ("is this token valid?"), so they have their own type,
//! [`crate::jwt::JwtError`], with stable reason strings for API responses.

use crate::secret::SecretRejection;

/// Everything that can go wrong when parsing secrets, handling key material,
/// building verifiers or signing.
///
/// No variant ever carries secret or private-key text: messages describe the
/// shape of the problem only, so an error can be logged as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A presented API key, service token or publishable key does not have
    /// the expected format or checksum.
    #[error("malformed secret: {0}")]
    InvalidSecret(SecretRejection),
    /// Key material (PEM, DER or JWK) that cannot be parsed, or that parses
    /// into a key this crate refuses (wrong curve, RSA modulus too small...).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A well-formed key of a kind this crate does not handle (for example an
    /// `OKP` JWK or a P-384 curve).
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// A JWK Set document that is not valid JSON of the expected shape.
    #[error("invalid JWK set: {0}")]
    InvalidJwkSet(String),
    /// Two keys with the same `kid` given to one verifier.
    #[error("duplicate key id {0:?}")]
    DuplicateKeyId(String),
    /// Producing a signature failed (claims that are not a JSON object, or a
    /// private key the signer rejects).
    #[error("signing failed: {0}")]
    Signing(String),
}
