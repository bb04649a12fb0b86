//! The handlers, one module per resource, and what they share: the
//! request parts a handler reads ([`Input`], [`Public`], [`Authenticated`]),
//! and the parse and render helpers every resource uses, and [`ROUTES`],
//! the one route table, gathered from the resource modules' groups. What a
//! route is, and how a path finds one, is [`crate::routing`]'s; how a
//! handler is reached is [`crate::dispatch`]'s.

pub(crate) mod api_key_imports;
pub(crate) mod api_keys;
pub(crate) mod audit_events;
pub(crate) mod console;
pub(crate) mod forward_auth;
pub(crate) mod leaks;
pub(crate) mod metering;
pub(crate) mod ops;
pub(crate) mod organisation_keys;
pub(crate) mod public_keys;
pub(crate) mod service_tokens;
pub(crate) mod signing_keys;
pub(crate) mod usage;
pub(crate) mod verification;
pub(crate) mod webhooks;
pub(crate) mod workspaces;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::Full;
use keys_core::{CoreError, Name};

use crate::error::ApiError;
use crate::routing::Routes;
use crate::state::AppState;

pub(crate) use crate::routing::{Authenticated, Caller, HttpResult, Input};

/// Every route of the server, resource by resource. The router prefers
/// literal segments over parameters whatever the order here.
pub static ROUTES: &Routes = &TABLE;

static TABLE: Routes = Routes::new(&[
    ops::ROUTES,
    workspaces::ROUTES,
    service_tokens::ROUTES,
    api_keys::ROUTES,
    api_key_imports::ROUTES,
    leaks::ROUTES,
    public_keys::ROUTES,
    signing_keys::ROUTES,
    forward_auth::ROUTES,
    verification::ROUTES,
    organisation_keys::ROUTES,
    audit_events::ROUTES,
    usage::ROUTES,
    metering::ROUTES,
    webhooks::ROUTES,
    console::ROUTES,
]);

/// Shortens client-supplied text echoed in a message.
pub(crate) fn echo(text: &str) -> String {
    text.chars().take(100).collect()
}

/// An RFC 3339 instant of the request (`field` names it in the 400).
pub(crate) fn instant(field: &str, text: &str) -> Result<time::OffsetDateTime, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|_| {
        ApiError::validation(format!("{field} must be an RFC 3339 timestamp such as 2027-01-31T12:00:00Z"))
    })
}

/// [`instant`] for a query parser that tells every problem at once: the
/// instant, or `None` with the problem added to `problems`.
pub(crate) fn instant_or_told(field: &str, text: &str, problems: &mut Vec<String>) -> Option<time::OffsetDateTime> {
    match instant(field, text) {
        Ok(at) => Some(at),
        Err(ApiError::Validation(told)) => {
            problems.extend(told);
            None
        }
        Err(_) => None,
    }
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

/// Runs `action` on the key the path names (its second parameter, read by
/// `parse`) in the workspace it names (its first); a malformed id, or one
/// the workspace does not hold, is a 404 naming `kind` and the id.
pub(crate) async fn on_key<Id, T>(
    call: Authenticated<'_>,
    kind: &str,
    parse: impl FnOnce(&str) -> Result<Id, CoreError>,
    action: impl AsyncFnOnce(&keys_service::workspaces::InWorkspace<'_>, &Id) -> keys_service::ServiceResult<T>,
) -> Result<T, ApiError> {
    let (state, caller, workspace, id) = (call.state, call.caller, call.param(0), call.param(1));
    let scope = in_workspace(state, caller, workspace).await?;
    let (id, target) = key_id(parse(id), kind, id)?;
    action(&scope, &id).await.map_err(|error| ApiError::from_service(error, workspace, &target))
}

/// A list of a workspace's keys (`Dto` of each): the page `list` reads in
/// the workspace the path names, with the request's `limit`, `offset` and
/// `include_deleted`.
pub(crate) async fn list_of<Dto, Item>(
    call: Authenticated<'_>,
    list: impl AsyncFnOnce(
        &keys_service::workspaces::InWorkspace<'_>,
        keys_service::workspaces::Listing,
    ) -> keys_service::ServiceResult<keys_core::Page<Item>>,
) -> HttpResult
where
    Dto: for<'a> From<&'a Item> + serde::Serialize,
{
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let listing = listing(input)?;
    let page = list(&in_workspace(state, caller, workspace).await?, listing).await;
    let page = page.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    crate::respond::json(http::StatusCode::OK, &crate::wire::ListDto::<Dto>::from_page(page))
}

/// The `limit`, `offset` and `include_deleted` of a list request.
pub(crate) fn listing(input: &Input) -> Result<keys_service::workspaces::Listing, ApiError> {
    let query = crate::query::ListQuery::parse(input.query.as_deref())?;
    Ok(keys_service::workspaces::Listing { page: query.pagination, include_deleted: query.include_deleted })
}

/// The answer of a conditional `GET` whose validator is current (a JWKS).
pub(crate) const NOT_MODIFIED: (u16, crate::routing::Payload) = (304, crate::routing::Payload::Empty);

/// A JWKS response: public, readable by browsers of any origin, cacheable
/// for as long as keys-core allows, with a strong `ETag` (from the SHA-256
/// of the document, the same on every replica) that `If-None-Match` turns
/// into a bodiless 304. The body is the service's shared document: each
/// response clones the `Bytes` (a reference count), never the JSON.
pub(crate) fn jwks_response(
    published: &keys_service::jwks::PublishedDocument,
    request_headers: &HeaderMap,
) -> HttpResult {
    let document = &published.document;
    let etag = format!("\"{}\"", document.fingerprint);
    // `If-None-Match` compares weakly (RFC 9110 section 13.1.2): `W/"x"`
    // matches `"x"`.
    let matches = request_headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/") == etag
        });
    let (status, body) = if matches {
        (http::StatusCode::NOT_MODIFIED, Bytes::new())
    } else {
        (http::StatusCode::OK, document.json.clone())
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if status == http::StatusCode::OK {
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
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

#[cfg(test)]
mod tests {
    /// Compiles only while `T` is zeroized on drop.
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    /// Every answer that carries a secret (an API key, a service token, a
    /// private key) holds it as a [`crate::wire::Secret`], so it is zeroized
    /// on drop; adding one here keeps it so.
    #[test]
    fn the_answers_that_carry_secrets_are_zeroized_on_drop() {
        zeroized_on_drop::<super::api_keys::ApiKeyDto>();
        zeroized_on_drop::<super::service_tokens::ServiceTokenDto>();
        zeroized_on_drop::<super::signing_keys::SigningKeyDto>();
        zeroized_on_drop::<super::organisation_keys::OrganisationKeyDto>();
    }
}
