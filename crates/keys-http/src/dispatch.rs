//! Request handling after routing: method check, size limits, service-token
//! authentication, body reading, then the handler of the route's operation
//! (see [`crate::handlers::ROUTES`], where each route is declared once).
//!
//! The order of checks is fixed: unknown path (404), wrong method (405 with
//! `Allow`), declared body too large (413), authentication (401), the
//! token's role against the operation's permission (403), body read
//! with the limit enforced while reading (413), content type (415), JSON
//! shape (400), then the handler. `HEAD` runs the `GET` operation and sends
//! its headers without the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use keys_core::RequestId;

use crate::error::{ApiError, Dialect};
use crate::routing::{Authenticated, Caller, Handler, Input, Matched, Public, Signed};
use crate::state::AppState;

/// The boxed error of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Routes one request. `matched` is the router's answer for its path.
pub(crate) async fn dispatch<B>(
    state: &Arc<AppState>,
    matched: Option<Matched<'_>>,
    request: Request<B>,
    request_id: &RequestId,
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
    let limit = operation.body_limit(state.config.body_limit);
    // Public handlers never read a body, so its declared length is no
    // reason to refuse them (a gateway may forward the client's).
    if matches!(operation.handler, Handler::ServiceToken(..) | Handler::Signed(_)) {
        check_declared_length(request.headers(), limit)?;
    }
    let head_only = request.method() == Method::HEAD;
    let (parts, body) = request.into_parts();
    let params = matched.params();

    let response = match operation.handler {
        // Public routes: no token, no body.
        Handler::Public(handler) => {
            drop(body);
            handler(Public::new(state, &parts, params)).await?
        }
        Handler::ServiceToken(permission, handler) => {
            let caller = authenticate(state, &parts.headers, route.dialect == Dialect::Versori).await?;
            if !caller.may(permission) {
                return Err(ApiError::forbidden_role(caller.role(), permission));
            }
            // The request's id goes with the caller into every audit event.
            let caller = caller.with_request_id(request_id.clone());
            let body = if matches!(parts.method, Method::POST | Method::PATCH | Method::PUT) {
                read_body(body, limit, state.config.body_read_timeout).await?
            } else {
                Bytes::new()
            };
            let input =
                Input::new(parts.uri.query().map(str::to_owned), parts.headers.get(CONTENT_TYPE).cloned(), body);
            handler(Authenticated::new(Public::new(state, &parts, params), &caller, &input)).await?
        }
        Handler::Signed(handler) => {
            let body = read_body(body, limit, state.config.body_read_timeout).await?;
            let input =
                Input::new(parts.uri.query().map(str::to_owned), parts.headers.get(CONTENT_TYPE).cloned(), body);
            handler(Signed { state, head: &parts, input: &input }).await?
        }
    };
    let mut response = response;
    if operation.hands_out_secret && response.status().is_success() {
        // A secret exists in plaintext only in this one response: no cache
        // between keysd and the client may keep it.
        response.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(if head_only { without_body(response) } else { response })
}

/// The answer to `HEAD`: `GET`'s status and headers, its length, no body.
fn without_body(response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    // A 304 keeps no length of its own (RFC 9110 §8.6): only the 200's.
    if parts.status != http::StatusCode::NOT_MODIFIED {
        let length = Body::size_hint(&body).exact().unwrap_or_default();
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
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
