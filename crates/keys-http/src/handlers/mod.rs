//! Request handling after routing: method check, size limits, service-token
//! authentication, body reading, then the handler of the route's operation
//! (see [`crate::routes`], where each route is declared once).
//!
//! The order of checks is fixed: unknown path (404), wrong method (405 with
//! `Allow`), declared body too large (413), authentication (401), body read
//! with the limit enforced while reading (413), content type (415), JSON
//! shape (400), then the handler. `HEAD` runs the `GET` operation and sends
//! its headers without the body.

pub(crate) mod api_keys;
pub(crate) mod forward_auth;
pub(crate) mod ops;
pub(crate) mod organisation_keys;
pub(crate) mod public_keys;
pub(crate) mod signing_keys;
pub(crate) mod verification;
pub(crate) mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use keys_core::{CoreError, Name};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Dialect};
use crate::router::{Matched, MAX_PARAMS};
use crate::routes::Handler;
use crate::server::AppState;

/// The boxed error of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        serde_json::from_slice(&self.body).map_err(|error| ApiError::validation(json_error_message(&error)))
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

/// A client-facing description of a JSON error: what serde says, which is
/// about the shape of the document (field names, expected types, position).
fn json_error_message(error: &serde_json::Error) -> String {
    match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("request body is not valid JSON: {error}")
        }
        _ => format!("invalid request body: {error}"),
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
    #[allow(dead_code)] // For handlers that read headers (forward authentication).
    pub head: &'a Parts,
    pub caller: &'a Caller,
    pub input: &'a Input,
    params: [&'a str; MAX_PARAMS],
}

impl<'a> Authenticated<'a> {
    /// The `index`-th path parameter of the template.
    pub fn param(&self, index: usize) -> &'a str {
        self.params.get(index).copied().unwrap_or_default()
    }
}

/// Routes one request. `matched` is the router's answer for its path.
pub(crate) async fn dispatch<B>(
    state: &Arc<AppState>,
    matched: Option<Matched<'_>>,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let Some(matched) = matched else {
        return Err(ApiError::NotFound("path not found".to_owned()));
    };
    let route = matched.route;
    let Some(operation) = route.operation(request.method()) else {
        return Err(ApiError::MethodNotAllowed { allow: route.methods().cloned().collect() });
    };
    let limit = state.config.body_limit;
    check_declared_length(request.headers(), limit)?;
    let head_only = request.method() == Method::HEAD;
    let (parts, body) = request.into_parts();
    let params = matched.params();

    let response = match operation.handler {
        // Public routes: no token, no body.
        Handler::Public(handler) => {
            drop(body);
            handler(Public { state, head: &parts, params }).await?
        }
        Handler::ServiceToken(handler) => {
            let caller = authenticate(state, &parts.headers, route.dialect == Dialect::Versori).await?;
            let body = if matches!(parts.method, Method::POST | Method::PATCH | Method::PUT) {
                read_body(body, limit, state.config.body_read_timeout).await?
            } else {
                Bytes::new()
            };
            let input = Input {
                query: parts.uri.query().map(str::to_owned),
                content_type: parts.headers.get(CONTENT_TYPE).cloned(),
                body,
            };
            handler(Authenticated { state, head: &parts, caller: &caller, input: &input, params }).await?
        }
    };
    Ok(if head_only { without_body(response) } else { response })
}

/// The answer to `HEAD`: `GET`'s status and headers, its length, no body.
fn without_body(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    let length = Body::size_hint(&body).exact().unwrap_or_default();
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// 413 before reading anything when `Content-Length` is over the limit.
fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(ApiError::PayloadTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads the whole body, at most `limit` bytes, within `timeout`.
async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(ApiError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(error)) => {
            tracing::debug!(error = %error, "request body could not be read");
            Err(ApiError::validation("request body could not be read"))
        }
    }
}

/// `Authorization: ServiceToken <token>` (and `Bearer <token>` where the
/// dialect allows it): format and checksum first, then one digest lookup.
async fn authenticate(state: &AppState, headers: &HeaderMap, accepts_bearer: bool) -> Result<Caller, ApiError> {
    let header = headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()).ok_or(ApiError::Unauthenticated)?;
    let (scheme, credentials) = header.trim().split_once(' ').ok_or(ApiError::Unauthenticated)?;
    let scheme_accepted =
        scheme.eq_ignore_ascii_case("ServiceToken") || (accepts_bearer && scheme.eq_ignore_ascii_case("Bearer"));
    if !scheme_accepted {
        return Err(ApiError::Unauthenticated);
    }
    state
        .service
        .authenticate(credentials.trim())
        .await
        .map_err(|error| ApiError::internal("service token lookup", &error))?
        .ok_or(ApiError::Unauthenticated)
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
