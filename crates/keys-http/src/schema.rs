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

/// Ranges of code points as the inside of a regular-expression class,
/// written as literal characters, so the class means the same to every
/// regex dialect that reads code points (Python's, ECMA-262 with `u`).
fn class_of(ranges: &[(u32, u32)]) -> String {
    let literal = |code: u32| char::from_u32(code).map(String::from).unwrap_or_default();
    ranges
        .iter()
        .map(
            |&(first, last)| {
                if first == last {
                    literal(first)
                } else {
                    format!("{}-{}", literal(first), literal(last))
                }
            },
        )
        .collect()
}

/// The characters a name or a description may not hold anywhere: control
/// characters (`Cc`, what `char::is_control` refuses), keys-core's format
/// characters (`Cf`) and its other invisible characters.
fn refused_characters() -> String {
    let mut ranges: Vec<(u32, u32)> = vec![(0x0000, 0x001F), (0x007F, 0x009F)];
    ranges.extend(keys_core::FORMAT_CHARACTERS);
    ranges.extend(keys_core::INVISIBLE_CHARACTERS);
    class_of(&ranges)
}

/// Whitespace that `str::trim` removes and that is not a control character
/// or a line or paragraph separator (those are refused).
const SPACES: &str = " \u{00A0}\u{1680}\u{2000}-\u{200A}\u{202F}\u{205F}\u{3000}";

/// The text keys-core's `Name` and `Description` accept from clients, as
/// the pieces of a regular expression without look-around: `unit` is a
/// character that is neither refused, a combining mark nor a presentation
/// selector (`base`), or a visible non-ASCII one followed by one selector,
/// then at most `MAX_COMBINING_MARKS` marks; `first` is such a unit that is
/// not whitespace, or marks alone (a name needs one of them after any
/// leading whitespace); `marks` is the run text may start with.
struct TextPattern {
    unit: String,
    first: String,
    marks: String,
}

fn text_pattern() -> TextPattern {
    let refused = refused_characters();
    let marks = class_of(&keys_core::COMBINING_MARKS);
    let selectors = class_of(&keys_core::PRESENTATION_SELECTORS);
    let max = keys_core::MAX_COMBINING_MARKS;
    let base = format!("[^{refused}{marks}{selectors}]");
    let visible = format!("[^{refused}{marks}{selectors}{SPACES}]");
    let selectable = format!("[^{refused}{marks}{selectors}{SPACES} -~][{selectors}]");
    TextPattern {
        unit: format!("(?:{base}|{selectable})[{marks}]{{0,{max}}}"),
        first: format!("(?:[{marks}]{{1,{max}}}|(?:{visible}|{selectable})[{marks}]{{0,{max}}})"),
        marks: format!("[{marks}]{{0,{max}}}"),
    }
}

/// A name (keys-core's `Name`): 1 to 255 characters as sent, at least one
/// of them not whitespace, none a control, format or invisible character,
/// no more than four combining marks in a row, and a presentation selector
/// only after a visible non-ASCII character.
pub(crate) fn name_schema() -> ObjectBuilder {
    let TextPattern { unit, first, .. } = text_pattern();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(keys_core::Name::MAX_CHARS))
        .pattern(Some(format!("^[{SPACES}]*{first}(?:{unit})*$")))
}

/// A description (keys-core's `Description`): null or up to 1024
/// characters, under the same rules as a name; blank means none.
pub(crate) fn description_schema() -> ObjectBuilder {
    let TextPattern { unit, marks, .. } = text_pattern();
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(keys_core::Description::MAX_CHARS))
        .pattern(Some(format!("^{marks}(?:{unit})*$")))
}

/// One entry of `allowed_domains` as keys-core's `DomainPattern::parse`
/// accepts it: a host (DNS labels whose last one starts with a letter, or
/// an IPv4 address), a wildcard `*.` over a name of two labels or more, or
/// either after `http://` or `https://` (any case) with an optional port.
/// A wildcard over a public suffix (`*.co.uk`) is still refused: the Public
/// Suffix List is no pattern.
pub(crate) fn domain_pattern_schema() -> ObjectBuilder {
    const LABEL: &str = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    const LAST: &str = "[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    const PORT: &str = "([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
    const SCHEME: &str = "[Hh][Tt][Tt][Pp][Ss]?://";
    let name = format!("({LABEL}\\.)*{LAST}\\.?");
    let wildcard = format!("\\*\\.({LABEL}\\.)+{LAST}\\.?");
    let ipv4 = format!("{OCTET}(\\.{OCTET}){{3}}");
    let host = format!("({name}|{wildcard}|{ipv4})");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(253))
        .pattern(Some(format!("^({SCHEME}{host}(:{PORT})?|{host})$")))
        .description(Some(
            "`app.example.com`, `*.example.com` (its subdomains, not the apex; a public suffix such as \
             `*.co.uk` is refused), or either with a scheme and optional port (`https://app.example.com:8443`), \
             which pins both.",
        ))
}

/// `scopes` of an API key: null (none) or at most 64 scopes as keys-core's
/// `KeyScope::parse` accepts them.
pub(crate) fn scopes_schema() -> utoipa::openapi::ArrayBuilder {
    let scope = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(keys_core::KeyScope::MAX_LEN))
        .pattern(Some("^[a-z0-9][a-z0-9:._-]*(:\\*)?$"));
    utoipa::openapi::ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::Array, Type::Null]))
        .items(scope)
        .max_items(Some(keys_core::KeyScopes::MAX))
        .description(Some(
            "Each 1–64 characters of `a-z 0-9 : . _ -`, starting with a letter or digit, optionally ending in `:*`.",
        ))
}

/// `external_id` of an API key: null, or 1 to 255 characters without
/// control characters.
pub(crate) fn external_id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .min_length(Some(1))
        .max_length(Some(keys_core::ExternalId::MAX_LEN))
        .pattern(Some("^[^\u{0000}-\u{001F}\u{007F}-\u{009F}]*$"))
        .description(Some("The key's owner in the customer's system."))
}
