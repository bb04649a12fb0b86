//! Wire types every resource shares: timestamps as the seeds write them,
//! [`Secret`] (secret material on its way into a response), the `*_by`
//! actor, the list envelope of dialect 1, the empty body, the body of a
//! roll ([`roll_body`]), and the JWKS documentation types. Each resource's own wire
//! types live beside its handlers (`handlers/api_keys.rs`, …). Domain types
//! carry no serde; they convert there, explicitly.
//!
//! Request bodies deny unknown fields, so a typo is a 400 instead of a
//! silently ignored setting. Responses that carry secret material (the API
//! key and the service token at creation, private keys at creation and roll)
//! hold it as a [`Secret`], whose `Debug` hides it, so they derive `Debug`
//! and are zeroized on drop.

use std::fmt;

use keys_core::{Actor, CoreError, GracePeriod, Page};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::ApiError;

pub use keys_core::format_timestamp;

pub(crate) fn timestamp_opt(at: Option<OffsetDateTime>) -> Option<String> {
    at.map(format_timestamp)
}

/// A secret or a private key on its way into a response: zeroed when
/// dropped (the DTOs that hold one therefore are too), serialised as the
/// string it is, never shown by `Debug`.
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// A zeroizing copy of `text` (one allocation of its exact size).
    pub fn new(text: &str) -> Self {
        Self(zeroize::Zeroizing::new(text.to_owned()))
    }
}

impl zeroize::ZeroizeOnDrop for Secret {}

/// A secret arriving in a request (the text of an imported API key): held
/// in the same zeroizing string from the moment it is read.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self(zeroize::Zeroizing::new(text)))
    }
}

impl Secret {
    /// The text, to digest it (an imported key's) at once.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// `{name, email}` of a `*_by` field.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Actor)]
pub struct ActorDto {
    pub name: String,
    pub email: String,
}

pub(crate) fn actor(actor: &Option<Actor>) -> Option<ActorDto> {
    actor.as_ref().map(|actor| ActorDto { name: actor.name().to_owned(), email: actor.email().to_owned() })
}

/// `{"meta": {count, limit, offset}, "results": [...]}`.
#[derive(Debug, Serialize)]
pub struct ListDto<T> {
    pub meta: ListMeta,
    pub results: Vec<T>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListMeta {
    pub count: u64,
    pub limit: u32,
    pub offset: u64,
}

impl<T> ListDto<T> {
    pub fn from_page<D>(page: Page<D>) -> Self
    where
        T: for<'a> From<&'a D>,
    {
        Self {
            meta: ListMeta { count: page.total, limit: page.pagination.limit(), offset: page.pagination.offset() },
            results: page.items.iter().map(T::from).collect(),
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`).
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The body of a signing-key create or a public-key rotate: nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Empty)]
pub struct NoFields {}

/// The `grace_period_seconds` of a roll body: absent or null is none; a
/// whole number of seconds (`60.0` is 60) from 0 to the most keys-core
/// allows. Read from any JSON value, so that one of another type, out of
/// range or with a fraction is refused with the field's own message
/// (docs/API.md, Shared HTTP behaviour), not serde's.
pub(crate) fn grace_period(value: &Option<serde_json::Value>) -> Result<Option<GracePeriod>, ApiError> {
    let number = match value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(number)) => Some(number),
        Some(_) => None,
    };
    let whole = |seconds: &f64| seconds.fract() == 0.0 && (0.0..=GracePeriod::MAX_SECONDS as f64).contains(seconds);
    // In range, the float is exact: a whole number below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let seconds = number
        .and_then(|number| number.as_u64().or_else(|| number.as_f64().filter(whole).map(|seconds| seconds as u64)));
    let invalid = CoreError::InvalidGracePeriod { max: GracePeriod::MAX_SECONDS };
    Ok(Some(GracePeriod::from_seconds(seconds.ok_or(invalid)?)?))
}

/// Declares the optional body of a roll, `{grace_period_seconds?}`, under a
/// type name and an OpenAPI schema name of its resource's own
/// (`roll_body!(RollApiKey, ApiKeyRoll, "…")`): the shape is one, the names
/// say what is rolled.
macro_rules! roll_body {
    ($name:ident, $schema:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        #[schema(as = $schema)]
        pub struct $name {
            /// Any JSON value, so that one of another type, out of range or with a
            /// fraction is refused with the field's own message (docs/API.md, Shared HTTP behaviour),
            /// not serde's.
            #[schema(value_type = Option<u64>, minimum = 0, maximum = 2592000)]
            grace_period_seconds: Option<serde_json::Value>,
        }

        impl $name {
            /// The grace asked for (see [`crate::wire::grace_period`]).
            pub fn grace(&self) -> Result<Option<keys_core::GracePeriod>, crate::error::ApiError> {
                crate::wire::grace_period(&self.grace_period_seconds)
            }
        }
    };
}
pub(crate) use roll_body;

// ------------------------------------------------------ documentation types

// The JWKS types only describe JSON that keys-crypto writes; the handler
// tests validate every response against these schemas.

/// One JSON Web Key (RFC 7517) of a JWKS.
#[derive(ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct JwkDoc {
    /// `EC` (workspace keys) or `RSA` (organisation keys).
    kty: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    key_use: Option<String>,
    /// The signing key's uid (workspace) or id (organisation).
    kid: Option<String>,
    /// `ES256` or `RS256`.
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// A JWK Set (RFC 7517): `{"keys": [...]}`.
#[derive(ToSchema)]
#[schema(as = JwkSet)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct JwkSetDoc {
    keys: Vec<JwkDoc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_six_fractional_digits() {
        let at = time::macros::datetime!(2026-04-21 12:35:24.117631 UTC);
        assert_eq!(format_timestamp(at), "2026-04-21T12:35:24.117631Z");
        let whole = time::macros::datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(format_timestamp(whole), "2026-01-02T01:04:05.000000Z");
    }

    /// Compiles only while [`Secret`] is zeroized on drop (each resource
    /// checks its own secret-bearing wire types).
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn a_secret_is_zeroized_on_drop_and_never_shown() {
        zeroized_on_drop::<Secret>();
        let secret = Secret::new("SS.abc");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&secret).expect("json"), r#""SS.abc""#);
    }

    #[test]
    fn a_grace_period_is_whole_seconds_in_range() {
        assert_eq!(grace_period(&None).expect("absent"), None);
        assert_eq!(grace_period(&Some(serde_json::Value::Null)).expect("null"), None);
        assert!(grace_period(&Some(serde_json::json!(60.0))).expect("whole").is_some());
        for bad in
            [serde_json::json!(-1), serde_json::json!(1.5), serde_json::json!("60"), serde_json::json!(2_592_001)]
        {
            assert!(grace_period(&Some(bad.clone())).is_err(), "{bad}");
        }
    }
}
