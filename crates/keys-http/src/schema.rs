//! Schema helpers the wire types share, and the verification `reason`
//! enum: the bottom of keys-http's OpenAPI generation, importing nothing of
//! this crate, so `error`, `dto`, the handlers, the route table and
//! `openapi` can all use it without importing each other.

use std::borrow::Cow;

use keys_core::verify::Denial;
use keys_crypto::jwt::JwtError;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{ObjectBuilder, Ref, RefOr, Type};
use utoipa::ToSchema;

/// A `ToSchema` type, as function pointers, so that a `static` table can
/// name it.
#[derive(Clone, Copy)]
pub(crate) struct SchemaOf {
    pub name: fn() -> Cow<'static, str>,
    pub schema: fn() -> RefOr<Schema>,
    pub dependencies: fn(&mut Vec<(String, RefOr<Schema>)>),
}

/// The schema of `T`.
pub(crate) const fn schema<T: ToSchema>() -> SchemaOf {
    SchemaOf { name: <T as ToSchema>::name, schema: <T as utoipa::PartialSchema>::schema, dependencies: T::schemas }
}

/// A string schema with these values.
pub(crate) fn string_enum(values: impl IntoIterator<Item = &'static str>, description: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).description(Some(description))
}

/// The name of the verification reason enum among the components.
pub(crate) const REASON: &str = "Reason";

/// `reason` of a verification answer: a reference to the enum.
pub(crate) fn reason_schema() -> impl Into<RefOr<Schema>> {
    Ref::from_schema_name(REASON)
}

/// Every keys-crypto JWT error; the exhaustive match below fails to compile
/// when keys-crypto adds one, so it cannot be forgotten here.
const JWT_ERRORS: [JwtError; 11] = [
    JwtError::Malformed,
    JwtError::TooLarge,
    JwtError::UnsupportedAlgorithm,
    JwtError::AlgorithmMismatch,
    JwtError::UnsupportedCriticalHeader,
    JwtError::BadSignature,
    JwtError::Expired,
    JwtError::NotYetValid,
    JwtError::UnknownKey,
    JwtError::MissingClaim(""),
    JwtError::InvalidClaim(""),
];

#[allow(dead_code)] // Compiled only for its exhaustiveness.
fn every_jwt_error_is_listed(error: JwtError) {
    match error {
        JwtError::Malformed
        | JwtError::TooLarge
        | JwtError::UnsupportedAlgorithm
        | JwtError::AlgorithmMismatch
        | JwtError::UnsupportedCriticalHeader
        | JwtError::BadSignature
        | JwtError::Expired
        | JwtError::NotYetValid
        | JwtError::UnknownKey
        | JwtError::MissingClaim(_)
        | JwtError::InvalidClaim(_) => {}
    }
}

/// Every `reason` a verification answer can carry: each denial of
/// keys-core, then each keys-crypto error as the verification code reports
/// it, without repeats.
pub fn reasons() -> Vec<&'static str> {
    let denials = Denial::ALL.iter().map(|denial| denial.reason());
    let token_errors = JWT_ERRORS.iter().map(|error| keys_service::verification::refusal_of_jwt_error(*error).reason());
    let mut reasons: Vec<&'static str> = Vec::new();
    for reason in denials.chain(token_errors) {
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    reasons
}
