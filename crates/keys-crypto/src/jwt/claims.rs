//! Claims of a verified token, and the unverified views used to choose a
//! key.

use std::marker::PhantomData;

use serde_json::{Map, Value};

use super::{Algorithm, JwtError};

/// The claims of a token whose signature and claim shapes have been verified
/// (not its time window: that is keys-core's `TimePolicy`).
/// Only [`crate::jwt::verify`] and [`crate::jwt::Verifier::verify`] make one.
pub type Claims = ClaimSet<Verified>;

/// Claims read from a token **without verifying anything**: not the
/// signature, not the time window. Only for choosing which key to verify
/// with (by `iss`, say); never for an authorisation decision. Deliberately a
/// different type from [`Claims`], with no conversion into it.
pub type UnverifiedClaims = ClaimSet<Unverified>;

/// The mark of a [`Claims`]: its token's signature was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified;

/// The mark of an [`UnverifiedClaims`]: nothing about its token was checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Unverified;

/// A token's claims, marked by how far they were checked. The two marks
/// make two types with no conversion between them, so unverified claims can
/// never stand where verified ones are required; what both can do is
/// written here once.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimSet<Trust> {
    map: Map<String, Value>,
    trust: PhantomData<Trust>,
}

impl<Trust> ClaimSet<Trust> {
    pub(crate) fn from_map(map: Map<String, Value>) -> Self {
        Self { map, trust: PhantomData }
    }

    /// Any claim (unverified on an [`UnverifiedClaims`]).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// A claim if it is a string (unverified on an [`UnverifiedClaims`]).
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    /// `sub`, if a string.
    pub fn sub(&self) -> Option<&str> {
        self.get_str("sub")
    }

    /// `iss`, if a string.
    pub fn iss(&self) -> Option<&str> {
        self.get_str("iss")
    }
}

impl ClaimSet<Verified> {
    /// A claim that must be present and a string.
    pub fn require_str(&self, name: &'static str) -> Result<&str, JwtError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Err(JwtError::MissingClaim(name)),
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(JwtError::InvalidClaim(name)),
        }
    }

    /// `jti`, if a string.
    pub fn jti(&self) -> Option<&str> {
        self.get_str("jti")
    }

    /// `aud` as a list: a single string becomes one entry, an array keeps
    /// its string entries.
    pub fn aud(&self) -> Vec<&str> {
        match self.map.get("aud") {
            Some(Value::String(audience)) => vec![audience.as_str()],
            Some(Value::Array(audiences)) => audiences.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// `exp` in Unix seconds (a fractional value rounded down), if numeric.
    pub fn exp(&self) -> Option<i64> {
        self.map.get("exp").and_then(|value| numeric_date(value, Rounding::Down))
    }

    /// `nbf` in Unix seconds (a fractional value rounded up), if numeric.
    pub fn nbf(&self) -> Option<i64> {
        self.map.get("nbf").and_then(|value| numeric_date(value, Rounding::Up))
    }

    /// `iat` in Unix seconds (a fractional value rounded up, so that the
    /// future-`iat` check never gains a fraction of a second), if numeric.
    pub fn iat(&self) -> Option<i64> {
        self.map.get("iat").and_then(|value| numeric_date(value, Rounding::Up))
    }

    /// `exp`, `nbf` and `iat`, for keys-core's time policy. [`super::verify`]
    /// has already refused a token where one of them is not a NumericDate.
    pub fn times(&self) -> keys_core::verify::TokenTimes {
        keys_core::verify::TokenTimes { exp: self.exp(), nbf: self.nbf(), iat: self.iat() }
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// All claims, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }

    /// All claims as one JSON object value (for a `claims` response field).
    pub fn into_value(self) -> Value {
        Value::Object(self.map)
    }
}

/// The JOSE header of a token, read **without verification**, to choose a
/// key by `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The `alg` exactly as the token states it (`ES256`, `none`, ...).
    pub alg: String,
    /// The `kid`, if the token names one.
    pub kid: Option<String>,
}

impl Header {
    /// `alg` if it is one this crate verifies.
    pub fn algorithm(&self) -> Option<Algorithm> {
        Algorithm::from_jose_name(&self.alg)
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Rounding {
    /// For `exp`: a fractional expiry counts as the second before.
    Down,
    /// For `nbf` and `iat`: a fractional start counts as the second after.
    Up,
}

/// A NumericDate (RFC 7519 §2) as whole Unix seconds, saturating at the
/// `i64` range. `None` for anything that is not a finite JSON number.
pub(crate) fn numeric_date(value: &Value, rounding: Rounding) -> Option<i64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(seconds) = number.as_i64() {
        return Some(seconds);
    }
    if number.as_u64().is_some() {
        // An unsigned integer that does not fit in i64: the far future.
        return Some(i64::MAX);
    }
    let seconds = number.as_f64().filter(|seconds| seconds.is_finite())?;
    let whole = match rounding {
        Rounding::Down => seconds.floor(),
        Rounding::Up => seconds.ceil(),
    };
    // `as` from f64 to i64 saturates at the bounds, which is what we want.
    Some(whole as i64)
}
