//! The handlers, one module per resource, and what they share: the
//! request parts a handler reads ([`Input`], [`Public`], [`Authenticated`]),
//! and the parse and render helpers every resource uses. Which handler runs
//! is the route table's ([`crate::routes`]); how it is reached is
//! [`crate::dispatch`]'s.

pub(crate) mod api_keys;
pub(crate) mod forward_auth;
pub(crate) mod ops;
pub(crate) mod organisation_keys;
pub(crate) mod public_keys;
pub(crate) mod signing_keys;
pub(crate) mod verification;
pub(crate) mod workspaces;

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Full;
use keys_core::{CoreError, Name};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// The most parameters a route template has.
pub const MAX_PARAMS: usize = 2;

pub(crate) use keys_service::Caller;

/// What every handler returns.
pub(crate) type HttpResult = Result<Response<Full<Bytes>>, ApiError>;

/// The parts of a request a handler reads besides its path parameters.
#[derive(Default)]
pub(crate) struct Input {
    pub query: Option<String>,
    /// Shares the request's header bytes.
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl std::fmt::Debug for Input {
    // The body may hold a secret (a key to verify), so only its size shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("query", &self.query)
            .field("content_type", &self.content_type)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Input {
    pub fn new(query: Option<String>, content_type: Option<HeaderValue>, body: Bytes) -> Self {
        Self { query, content_type, body }
    }

    /// Whether the declared media type is JSON (`application/json`, any
    /// parameters, or a `+json` suffix type).
    fn is_json(&self) -> bool {
        let Some(content_type) = self.content_type.as_ref().and_then(|value| value.to_str().ok()) else {
            return false;
        };
        let media_type = content_type.split(';').next().unwrap_or_default().trim().as_bytes();
        let starts_with = |prefix: &str| {
            media_type.get(..prefix.len()).is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        let ends_with = |suffix: &str| {
            media_type.len() >= suffix.len()
                && media_type[media_type.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        };
        media_type.eq_ignore_ascii_case(b"application/json") || (starts_with("application/") && ends_with("+json"))
    }

    fn body_is_empty(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// A required JSON body.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if !self.is_json() {
            return Err(ApiError::UnsupportedMediaType);
        }
        if self.body_is_empty() {
            return Err(ApiError::validation("request body must be a JSON object"));
        }
        // The fast path for the bodies clients send; only a body that does
        // not fit takes the slow one, which also accepts `60.0` for `60`.
        serde_json::from_slice(&self.body).or_else(|_| body_from_value(&self.body))
    }

    /// An optional JSON body: empty (with or without a content type) means
    /// the default.
    pub fn optional_json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body_is_empty() {
            return Ok(T::default());
        }
        self.json()
    }
}

/// Decodes a body that did not decode directly: as a JSON document first
/// (so a syntax error is told as such, without parser positions), then with
/// every number that has a zero fraction made that integer (SPEC section
/// 10), then into `T`, telling which field did not fit and what it must be.
fn body_from_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ApiError::validation("request body is not valid JSON"))?;
    // Every request body is an object (serde would also take an array for
    // a struct, field by field).
    if !document.is_object() {
        return Err(ApiError::validation("request body must be a JSON object"));
    }
    serde_path_to_error::deserialize(whole_numbers(document))
        .map_err(|error| ApiError::validation(body_error_message(&error)))
}

/// `document` with each float that is a whole number (`60.0`, `1e3`)
/// replaced by that integer.
fn whole_numbers(document: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match document {
        Value::Number(number) => {
            let whole = number.as_f64().filter(|float| number.is_f64() && float.fract() == 0.0).and_then(|float| {
                // Exact conversions only: floats beyond the integer types stay floats.
                if (0.0..18_446_744_073_709_551_616.0).contains(&float) {
                    Some(serde_json::Number::from(float as u64))
                } else if (-9_223_372_036_854_775_808.0..0.0).contains(&float) {
                    Some(serde_json::Number::from(float as i64))
                } else {
                    None
                }
            });
            Value::Number(whole.unwrap_or(number))
        }
        Value::Array(items) => Value::Array(items.into_iter().map(whole_numbers).collect()),
        Value::Object(fields) => {
            Value::Object(fields.into_iter().map(|(name, value)| (name, whole_numbers(value))).collect())
        }
        other => other,
    }
}

/// What was wrong with a JSON body, in the words of the request: the field
/// (`grace_period_seconds`, `allowed_domains[2]`) and what it must be,
/// never serde's type names (`u64`, `struct RollSigningKey`).
fn body_error_message(error: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = error.path().to_string();
    let field = if path == "." { "request body".to_owned() } else { path };
    let serde = error.inner().to_string();
    let quoted = |text: &str| text.split('`').skip(1).step_by(2).map(str::to_owned).collect::<Vec<_>>();
    if let Some(rest) = serde.strip_prefix("missing field ") {
        let missing = quoted(rest).join("");
        return if field == "request body" {
            format!("{missing} is required")
        } else {
            format!("{field}.{missing} is required")
        };
    }
    if let Some(rest) = serde.strip_prefix("unknown field ") {
        let mut names = quoted(rest).into_iter();
        let unknown = names.next().unwrap_or_default();
        let accepted: Vec<String> = names.collect();
        return if accepted.is_empty() {
            format!("unknown field {}: this request takes no fields", echo(&unknown))
        } else {
            format!("unknown field {}; the fields are {}", echo(&unknown), accepted.join(", "))
        };
    }
    if let Some(rest) = serde.strip_prefix("unknown variant ") {
        let allowed: Vec<String> = quoted(rest).into_iter().skip(1).collect();
        return format!("{field} must be one of {}", allowed.join(", "));
    }
    if serde.starts_with("duplicate field ") {
        return format!("{} appears twice", quoted(&serde).join(""));
    }
    let expected = serde.rsplit_once(", expected ").map(|(_, expected)| expected).unwrap_or_default();
    format!("{field} must be {}", plain_expectation(expected))
}

/// serde's "expected …" in plain words.
fn plain_expectation(expected: &str) -> &'static str {
    let expected = expected.trim();
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a string" | "a borrowed string" | "a character" => "a string",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        _ if expected.starts_with("struct ") || expected.starts_with("a map") || expected == "map" => "a JSON object",
        _ if expected.starts_with("a sequence") || expected.starts_with("tuple") => "an array",
        _ => "of another type or value",
    }
}

/// What a public handler gets: the state, the request head and the path
/// parameters. Copied into the handler's closure, borrowed for `'a`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Public<'a> {
    pub state: &'a Arc<AppState>,
    pub head: &'a Parts,
    params: [&'a str; MAX_PARAMS],
}

impl<'a> Public<'a> {
    pub fn new(state: &'a Arc<AppState>, head: &'a Parts, params: [&'a str; MAX_PARAMS]) -> Self {
        Self { state, head, params }
    }

    /// The `index`-th path parameter of the template.
    pub fn param(&self, index: usize) -> &'a str {
        self.params.get(index).copied().unwrap_or_default()
    }
}

/// What an authenticated handler gets: besides [`Public`]'s, the caller and
/// the query and body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated<'a> {
    pub state: &'a Arc<AppState>,
    pub caller: &'a Caller,
    pub input: &'a Input,
    params: [&'a str; MAX_PARAMS],
}

impl<'a> Authenticated<'a> {
    pub fn new(call: Public<'a>, caller: &'a Caller, input: &'a Input) -> Self {
        Self { state: call.state, caller, input, params: call.params }
    }

    /// The `index`-th path parameter of the template.
    pub fn param(&self, index: usize) -> &'a str {
        self.params.get(index).copied().unwrap_or_default()
    }
}

/// Shortens client-supplied text echoed in a message.
pub(crate) fn echo(text: &str) -> String {
    text.chars().take(100).collect()
}

/// A required name: absent, blank or too long is a 400.
pub(crate) fn required_name(name: Option<&str>) -> Result<Name, ApiError> {
    let name = name.ok_or_else(|| ApiError::validation("name is required"))?;
    Ok(Name::parse(name)?)
}

/// The caller's workspace named by the path, resolved once for the key use
/// cases (404 `workspace '…' not found` otherwise).
pub(crate) async fn in_workspace<'s>(
    state: &'s AppState,
    caller: &'s Caller,
    workspace: &str,
) -> Result<keys_service::workspaces::InWorkspace<'s>, ApiError> {
    state
        .service
        .in_workspace(caller, workspace)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))
}

/// A key id from the path, with the name of what it targets for 404s
/// (`api key 'ws_apik_…'`); a malformed id names nothing.
pub(crate) fn key_id<T>(parsed: Result<T, CoreError>, kind: &str, text: &str) -> Result<(T, String), ApiError> {
    let target = format!("{kind} '{}'", echo(text));
    match parsed {
        Ok(id) => Ok((id, target)),
        Err(_) => Err(ApiError::NotFound(format!("{target} not found"))),
    }
}

/// The `limit`, `offset` and `include_deleted` of a list request.
pub(crate) fn listing(input: &Input) -> Result<keys_service::workspaces::Listing, ApiError> {
    let query = crate::dto::ListQuery::parse(input.query.as_deref())?;
    Ok(keys_service::workspaces::Listing { page: query.pagination, include_deleted: query.include_deleted })
}

/// A JWKS response: public, readable by browsers of any origin, cacheable
/// for as long as keys-core allows, with a strong `ETag` (the SHA-256 of the
/// document, the same on every replica) that `If-None-Match` turns into a
/// bodiless 304.
pub(crate) fn jwks_response(
    published: &keys_service::verification::PublishedJwks,
    request_headers: &HeaderMap,
) -> HttpResult {
    use sha2::Digest;
    let body = serde_json::to_vec(&published.keys).map_err(|error| ApiError::internal("jwks", &error))?;
    let digest = sha2::Sha256::digest(&body);
    let etag = format!("\"{}\"", digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect::<String>());
    let matches = request_headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == etag
        });
    let mut response = if matches {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = http::StatusCode::NOT_MODIFIED;
        response
    } else {
        crate::error::json_bytes(http::StatusCode::OK, body)
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(http::header::ETAG, value);
    }
    let cache_control = format!("public, max-age={}", published.max_age_seconds);
    if let Ok(value) = HeaderValue::from_str(&cache_control) {
        headers.insert(http::header::CACHE_CONTROL, value);
    }
    headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Ok(response)
}
