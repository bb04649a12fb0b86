//! `/v1/auth/forward`: the sub-request of a reverse proxy (nginx
//! `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` over HTTP), so
//! keysd can guard any service without code in it (docs/API.md, Forward authentication).
//!
//! The gateway authenticates itself with `X-Keysd-Service-Token`; the
//! client's own headers say what to verify, in the shapes real clients send:
//! - API key: `Authorization: Bearer SS.…`, `Authorization: SS.…` or
//!   `X-Api-Key: SS.…` (and the gateway's `X-Keysd-Required-Scopes: a,b`);
//! - public key as SuprSend's web SDK sends it: `Authorization: SS.PUBK.…`,
//!   `x-ss-signature: <user token>`, `Origin`, `X-Keysd-Tenant-Id`;
//! - Versori-style JWT: `Authorization: JWT <token>` or `Bearer <token>`.
//!
//! Which header holds which credential is parsed here; whether it verifies
//! is the same keys-service call (and cache) as the JSON verify endpoints.
//! Gateways only understand 2xx, 401 and 403 from an auth service (nginx
//! turns anything else into a 500 for the client), so every refusal a
//! client can cause is a 401 with `X-Keysd-Reason` and `WWW-Authenticate`,
//! or a 403 for `insufficient_scope`; never a 4xx of another kind or a 5xx.
//! The reason is the gateway's to log; the `WWW-Authenticate` a gateway
//! hands on to the client is generic (`error="invalid_token"`), so a client
//! does not learn a key's state from it. Every reason is one of keys-core's
//! [`Denial`]s (or a refusal of keys-service), so `/openapi.json`'s
//! `Reason` list covers them.

use bytes::Bytes;
use http::header::{AUTHORIZATION, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use keys_core::verify::Denial;
use keys_service::{PublicKeyRequest, Refusal};

use crate::error::ApiError;
use crate::state::AppState;
use http::Method;

use crate::error::Dialect;
use crate::routing::{public, Operation, Payload, Public, Route, Tag};

/// The gateway's own service token.
pub const SERVICE_TOKEN_HEADER: &str = "x-keysd-service-token";
/// Scopes the gateway requires of an API key, comma-separated.
pub const REQUIRED_SCOPES_HEADER: &str = "x-keysd-required-scopes";
/// The tenant of a secure-mode user token (absent: `default`).
pub const TENANT_HEADER: &str = "x-keysd-tenant-id";
/// SuprSend's web SDK sends the user token here.
pub const SIGNATURE_HEADER: &str = "x-ss-signature";
/// Why a request was refused, on every 401/403.
pub const REASON_HEADER: &str = "x-keysd-reason";

/// Longest credential header accepted; real ones are far shorter (a JWT is
/// at most 8 KiB for keysd).
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024 + 64;
/// Most required scopes a gateway may ask for at once.
const MAX_REQUIRED_SCOPES: usize = 64;

/// What the client presented.
enum Credential<'a> {
    ApiKey(&'a str),
    PublicKey(&'a str),
    Jwt(&'a str),
}

/// `X-Keysd-Gateway: nginx`: the gateway passes on only 401 and 403.
const GATEWAY_HEADER: &str = "x-keysd-gateway";

/// A refusal as a gateway understands it. The reason is for the gateway,
/// in `X-Keysd-Reason` (nginx can log it with `auth_request_set`); the
/// challenge, which gateways pass on to the client (nginx copies a 401's
/// `WWW-Authenticate`), says only what RFC 6750 says: the token is invalid
/// or lacks a scope. A client that holds a leaked key does not learn from
/// it whether the key is disabled, deleted, expired or unknown.
///
/// It takes a [`Refusal`], not text, so that every reason it can send is one
/// `/openapi.json` lists.
fn refused(refusal: impl Into<Refusal>) -> Response<Full<Bytes>> {
    let reason = refusal.into().reason();
    let status = if reason == Denial::RateLimited.reason() {
        StatusCode::TOO_MANY_REQUESTS
    } else if reason == Denial::InsufficientScope.reason() || reason == Denial::UsageExceeded.reason() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(reason) {
        headers.insert(HeaderName::from_static(REASON_HEADER), value);
    }
    let challenge = if reason == Denial::CredentialMissing.reason() {
        // RFC 6750 §3.1: no error code when the request had no credential.
        "Bearer realm=\"keysd\""
    } else if reason == Denial::InsufficientScope.reason() {
        "Bearer realm=\"keysd\", error=\"insufficient_scope\""
    } else if status != StatusCode::UNAUTHORIZED {
        // Metering's refusals: the credential is good, there is nothing to
        // challenge.
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    } else {
        "Bearer realm=\"keysd\", error=\"invalid_token\""
    };
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The one value of a header: absent is `Ok(None)`; repeated, oversized or
/// not visible ASCII is `Err` (a client error, refused as `malformed`).
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() || first.len() > MAX_CREDENTIAL_BYTES {
        return Err(());
    }
    let text = first.to_str().map_err(|_| ())?.trim();
    Ok(if text.is_empty() { None } else { Some(text) })
}

/// Which credential the client's headers carry.
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>, ()> {
    let authorization = single(headers, AUTHORIZATION.as_str())?;
    let api_key_header = single(headers, "x-api-key")?;
    let from_authorization = match authorization {
        None => None,
        Some(value) => Some(match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Bearer") => {
                let rest = rest.trim();
                if rest.starts_with("SS.") && !rest.starts_with("SS.PUBK.") {
                    Credential::ApiKey(rest)
                } else {
                    Credential::Jwt(rest)
                }
            }
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("JWT") => Credential::Jwt(rest.trim()),
            Some(_) => return Err(()),
            None if value.starts_with("SS.PUBK.") => Credential::PublicKey(value),
            None if value.starts_with("SS.") => Credential::ApiKey(value),
            None => return Err(()),
        }),
    };
    match (from_authorization, api_key_header) {
        (Some(_), Some(_)) => Err(()),
        (Some(credential), None) => Ok(Some(credential)),
        (None, Some(key)) => Ok(Some(Credential::ApiKey(key))),
        (None, None) => Ok(None),
    }
}

fn record(state: &AppState, kind: &'static str, refusal: Option<Refusal>) {
    state.metrics.observe_verification(kind, refusal.map_or("valid", Refusal::reason));
}

/// Answers one forward-authentication sub-request.
pub(crate) async fn forward(call: Public<'_>) -> Result<Response<Full<Bytes>>, ApiError> {
    let (state, headers) = (call.state, &call.head.headers);
    let gateway = match single(headers, SERVICE_TOKEN_HEADER) {
        Ok(Some(token)) => token,
        _ => return Ok(refused(Denial::ServiceTokenInvalid)),
    };
    // A token that authenticates and whose role permits verification
    // (keys-service decides, and warns of a token stronger than `verify`).
    let Some(caller) = state
        .service
        .authenticate_gateway(gateway)
        .await
        .map_err(|error| ApiError::internal("service token lookup", &error))?
    else {
        return Ok(refused(Denial::ServiceTokenInvalid));
    };
    let credential = match credential(headers) {
        Ok(Some(credential)) => credential,
        Ok(None) => return Ok(refused(Denial::CredentialMissing)),
        Err(()) => return Ok(refused(Denial::Malformed)),
    };
    let store_failure = |error| ApiError::internal("forward auth", &error);
    let mut identity =
        Identity { organisation: caller.scope().organisation_id().as_str().to_owned(), ..Identity::default() };
    let mut metering = None;
    match credential {
        Credential::ApiKey(presented) => {
            let Ok(required) = single(headers, REQUIRED_SCOPES_HEADER) else {
                return Ok(refused(Denial::Malformed));
            };
            let required: Vec<&str> =
                required.unwrap_or_default().split(',').map(str::trim).filter(|scope| !scope.is_empty()).collect();
            if required.len() > MAX_REQUIRED_SCOPES {
                return Ok(refused(Denial::Malformed));
            }
            let request = keys_core::meter::MeterRequest::default();
            let metered = state
                .service
                .verify_api_key_metered(&caller, presented, &required, &request)
                .await
                .map_err(store_failure)?;
            record(state, "api_key", metered.verdict.as_ref().err().copied());
            let now = state.service.now();
            let verified = match metered.verdict {
                Ok(verified) => verified,
                Err(refusal) => {
                    let mut response = refused(refusal);
                    // nginx's `auth_request` passes on 401 and 403 only
                    // (anything else becomes a 500): a gateway that says it
                    // is nginx gets a `rate_limited` as a 403, which its
                    // configuration turns into the client's 429 (README).
                    if response.status() == StatusCode::TOO_MANY_REQUESTS
                        && single(headers, GATEWAY_HEADER) == Ok(Some("nginx"))
                    {
                        *response.status_mut() = StatusCode::FORBIDDEN;
                    }
                    if let Some(decision) = &metered.meter {
                        metering_headers(response.headers_mut(), decision, now);
                    }
                    return Ok(response);
                }
            };
            metering = metered.meter;
            let key = verified.key();
            identity.workspace = verified.workspace().slug.as_str().to_owned();
            identity.key_id = key.id.as_str().to_owned();
            identity.external_id = key.external_id.as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default();
            identity.scopes = key.scopes.as_slice().iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(",");
        }
        Credential::PublicKey(api_key) => {
            let (Ok(user_token), Ok(origin), Ok(tenant_id)) =
                (single(headers, SIGNATURE_HEADER), single(headers, ORIGIN.as_str()), single(headers, TENANT_HEADER))
            else {
                return Ok(refused(Denial::Malformed));
            };
            let request = PublicKeyRequest { api_key, origin, user_token, tenant_id };
            let verdict = state.service.verify_public_key(&caller, request).await.map_err(store_failure)?;
            record(state, "public_key", verdict.as_ref().err().copied());
            let verified = match verdict {
                Ok(verified) => verified,
                Err(refusal) => return Ok(refused(refusal)),
            };
            identity.workspace = verified.workspace.slug.as_str().to_owned();
            identity.key_id = verified.key.id.as_str().to_owned();
            identity.entity_id = verified.entity_id.unwrap_or_default();
        }
        Credential::Jwt(token) => {
            let verdict = state.service.verify_jwt(&caller, token).await.map_err(store_failure)?;
            record(state, "jwt", verdict.as_ref().err().copied());
            let verified = match verdict {
                Ok(verified) => verified,
                Err(refusal) => return Ok(refused(refusal)),
            };
            identity.key_id = verified.key_id.as_str().to_owned();
            identity.subject = verified.sub;
        }
    }
    // An identity that cannot travel as header values (a `sub` with a line
    // break, say) is refused rather than granted without it.
    let mut response = identity.into_response().unwrap_or_else(|| refused(Denial::Malformed));
    if let Some(decision) = &metering {
        metering_headers(response.headers_mut(), decision, state.service.now());
    }
    Ok(response)
}

/// Metering's answer to a gateway (docs/API.md, Forward authentication):
/// the tightest applied limit as the IETF httpapi rate-limit fields
/// (`RateLimit-Policy: "name";q=limit;w=seconds` and `RateLimit:
/// "name";r=remaining;t=seconds to reset`), the balance in
/// `X-Keysd-Credits-Remaining`, and `Retry-After` on a `rate_limited`.
fn metering_headers(headers: &mut HeaderMap, decision: &keys_core::meter::Decision, now: time::OffsetDateTime) {
    let report = decision.report();
    let tightest = report.rate_limits.iter().min_by_key(|line| (line.remaining, line.reset_at));
    if let Some(line) = tightest {
        // Whole seconds, rounded up (as `Retry-After`): never earlier.
        let nanos = (line.reset_at - now).whole_nanoseconds().max(0);
        let reset = (nanos + 999_999_999) / 1_000_000_000;
        let policy = format!("\"{}\";q={};w={}", line.name.as_str(), line.limit, line.duration_seconds);
        let current = format!("\"{}\";r={};t={reset}", line.name.as_str(), line.remaining);
        for (name, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
    if let Some(remaining) = report.credits {
        headers.insert(HeaderName::from_static("x-keysd-credits-remaining"), HeaderValue::from(remaining));
    }
    if let Some(seconds) = decision.retry_after_seconds(now) {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
}

/// What a granted request is, as the identity headers say it. Every header
/// is sent on every 200, empty where it does not apply, so that a gateway
/// that copies keysd's headers over the client's (Envoy's
/// `allowed_upstream_headers`, Traefik's `authResponseHeaders`) overwrites
/// every `X-Keysd-*` a client may have forged.
#[derive(Debug, Default)]
struct Identity {
    organisation: String,
    workspace: String,
    key_id: String,
    entity_id: String,
    subject: String,
    external_id: String,
    scopes: String,
}

impl Identity {
    fn into_response(self) -> Option<Response<Full<Bytes>>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let values = [
            ("x-keysd-organisation", self.organisation),
            ("x-keysd-workspace", self.workspace),
            ("x-keysd-key-id", self.key_id),
            ("x-keysd-entity-id", self.entity_id),
            ("x-keysd-subject", self.subject),
            ("x-keysd-external-id", self.external_id),
            ("x-keysd-scopes", self.scopes),
        ];
        for (name, value) in values {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_str(&value).ok()?);
        }
        Some(response)
    }
}

/// Forward authentication answers every method the same way (a gateway's
/// sub-request keeps the client's method); it authenticates the gateway by
/// its own `X-Keysd-Service-Token`, so it is a public handler here.
const fn operation(method: Method, operation_id: &'static str) -> Operation {
    Operation::new(method, operation_id, "Forward authentication for gateways", public!(forward), (200, Payload::Empty))
        .describe(
            "For nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`. The gateway sends \
         `X-Keysd-Service-Token`; the client's `Authorization` (`Bearer SS.…`, `SS.…`, `SS.PUBK.…` with \
         `x-ss-signature`, `JWT …`) or `X-Api-Key` says what to verify. 200 with the identity in `X-Keysd-*` \
         headers; 401 with `X-Keysd-Reason` (one of the `Reason` values, `service_token_invalid` for the \
         gateway's own token) for the gateway, and a generic `WWW-Authenticate` (`error=\"invalid_token\"`, no \
         description) for the client; 403 for `insufficient_scope` and `usage_exceeded`; 429 with `Retry-After` for \
         `rate_limited` (a 403 when the gateway sends `X-Keysd-Gateway: nginx`, whose `auth_request` passes on \
         401 and 403 only). A metered key's answers carry `RateLimit-Policy` and `RateLimit` (its tightest limit) and \
         `X-Keysd-Credits-Remaining`. The body is ignored; any path below this \
         one is accepted too.",
        )
        .refuses(&[(401, Payload::Empty), (403, Payload::Empty), (429, Payload::Empty)])
}

/// Where gateways send their sub-requests.
pub(crate) const PATTERN: &str = "/v1/auth/forward";

/// The forward-authentication route: any method, any path below it.
pub(crate) static ROUTES: &[Route] = &[Route::new(PATTERN, Dialect::SuprSend, Tag::Verification, FORWARD).any_method()];

/// The one operation, under every method a gateway may keep.
const FORWARD: &[Operation] = &[
    operation(Method::GET, "forward-auth-get"),
    operation(Method::POST, "forward-auth-post"),
    operation(Method::PUT, "forward-auth-put"),
    operation(Method::PATCH, "forward-auth-patch"),
    operation(Method::DELETE, "forward-auth-delete"),
    operation(Method::OPTIONS, "forward-auth-options"),
    operation(Method::TRACE, "forward-auth-trace"),
];
