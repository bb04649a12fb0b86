//! Why a token does not verify.

use super::MAX_TOKEN_BYTES;

/// A token that did not pass verification, with a short, stable,
/// snake_case [`reason`](JwtError::reason) for API responses (`valid:false,
/// reason: ...`). Never carries token text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments, or a header or payload that is not a
    /// JSON object, or a signature that is not base64url.
    #[error("token is not a well-formed JWS compact serialization")]
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`]; rejected before any decoding.
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// The header's `alg` is neither ES256 nor RS256 (`none`, HS256, ...).
    #[error("token algorithm is not supported")]
    UnsupportedAlgorithm,
    /// A supported `alg`, but not the algorithm of the key.
    #[error("token algorithm does not match the key")]
    AlgorithmMismatch,
    /// The header has `crit` parameters; this verifier understands no JWS
    /// extensions, so RFC 7515 §4.1.11 requires rejecting the token.
    #[error("token has critical header parameters")]
    UnsupportedCriticalHeader,
    /// The signature does not verify with the key.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` (plus leeway) is not after `now` ([`super::Verifier`] only;
    /// keysd itself maps keys-core's time denials).
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is after `now` (plus leeway) ([`super::Verifier`]
    /// only).
    #[error("token is not valid yet")]
    NotYetValid,
    /// No key with the token's `kid` (or the token has no `kid`).
    #[error("no key matches the token")]
    UnknownKey,
    /// A claim the caller requires is absent.
    #[error("claim {0:?} is missing")]
    MissingClaim(&'static str),
    /// A claim is present with a value of the wrong type (`exp` that is not
    /// a number, `sub` that is not a string, ...).
    #[error("claim {0:?} has an invalid value")]
    InvalidClaim(&'static str),
}

impl JwtError {
    /// The stable machine-readable reason.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::UnsupportedCriticalHeader => "unsupported_critical_header",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownKey => "unknown_key",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
        }
    }
}
