//! `POST /v1/verify/{api_key,public_key,jwt}/`: 200 with `valid` for any
//! well-formed JSON object that has the required field; 400 only for a body
//! that is not a JSON object or lacks that field.
//!
//! A required field of the wrong type, or an optional one of the wrong type,
//! is a credential that does not verify (`valid:false`, `malformed`), not a
//! client error: verifiers forward whatever they were handed.

use utoipa::ToSchema;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use keys_core::verify::Denial;
use keys_service::{PublicKeyRequest, Refusal};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Input;
use crate::error::ApiError;
use crate::respond::json;
use crate::state::AppState;
use http::Method;

use crate::error::Dialect;
use crate::routing::{authenticated, Authenticated, Body, Handler, Operation, Payload, Route, Tag};
use crate::schema::schema;
use crate::schema::SchemaOf;

type HttpResult = Result<Response<Full<Bytes>>, ApiError>;

/// The body as a JSON object.
fn object(input: &Input) -> Result<Map<String, Value>, ApiError> {
    match input.json::<Value>()? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::validation("request body must be a JSON object")),
    }
}

/// A required field: absent is a 400; present but not a string is `None`
/// (it will not verify).
fn required<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None => Err(ApiError::validation(format!("{field} is required"))),
        Some(value) => Ok(value.as_str()),
    }
}

/// An optional string field: absent or null is `Ok(None)`, a string is
/// `Ok(Some)`, anything else is `Err` (the request does not verify).
fn optional<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, ()> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(()),
    }
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyApiKeyResponse)]
pub(crate) struct ApiKeyVerdict<'a> {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// The key's owner in the customer's system (null when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    meta: Option<Option<Map<String, Value>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime, value_type = Option<String>)]
    expires_at: Option<Option<String>>,
    /// `{remaining}` after this verification: the key's balance when the
    /// key spends credits, else its identity's; null when neither does.
    /// In a valid answer and in a `rate_limited` or `usage_exceeded` one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::metering::RemainingDto>)]
    credits: Option<Option<super::metering::RemainingDto>>,
    /// Each limit applied, the key's then its identity's.
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimits: Option<Vec<super::metering::AppliedLimitDto>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::reason_schema)]
    reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyPublicKeyResponse)]
pub(crate) struct PublicKeyVerdict {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::reason_schema)]
    reason: Option<&'static str>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
#[schema(as = VerifyJwtResponse)]
pub(crate) struct JwtVerdict {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    organisation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    /// Shared with the warm path's entry, not copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    claims: Option<std::sync::Arc<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::schema::reason_schema)]
    reason: Option<&'static str>,
}

fn malformed() -> Refusal {
    Refusal::Denied(Denial::Malformed)
}

fn record(state: &AppState, kind: &'static str, refusal: Option<Refusal>) -> Option<&'static str> {
    let outcome = refusal.map_or("valid", Refusal::reason);
    state.metrics.observe_verification(kind, outcome);
    tracing::debug!(kind, outcome, "verification");
    refusal.map(Refusal::reason)
}

fn store_failure(error: keys_store::StoreError) -> ApiError {
    ApiError::from_store(error, "key")
}

/// Verifies the body's one required string `field` with `verify`: a field
/// that is not a string is malformed and never reaches it.
async fn verify_field<Verified>(
    input: &Input,
    field: &str,
    verify: impl AsyncFnOnce(&str) -> Result<Result<Verified, Refusal>, keys_store::StoreError>,
) -> Result<Result<Verified, Refusal>, ApiError> {
    let body = object(input)?;
    match required(&body, field)? {
        None => Ok(Err(malformed())),
        Some(presented) => verify(presented).await.map_err(store_failure),
    }
}

pub(crate) async fn api_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let body = object(input)?;
    // `required_scopes`: absent or null asks for none; anything but a list
    // of strings does not verify.
    let required_scopes = match body.get("required_scopes") {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect::<Option<Vec<&str>>>(),
        Some(_) => None,
    };
    let presented = required(&body, "api_key")?;
    let request = super::metering::meter_request(&body)?;
    let metered = match (presented, required_scopes) {
        (Some(presented), Some(required_scopes)) => state
            .service
            .verify_api_key_metered(caller, presented, &required_scopes, &request)
            .await
            .map_err(store_failure)?,
        _ => keys_service::MeteredVerdict { verdict: Err(malformed()), meter: None },
    };
    let (credits, ratelimits) = match &metered.meter {
        Some(decision) => {
            let (credits, ratelimits) = super::metering::report_of(Some(decision.report()));
            (Some(credits), Some(ratelimits))
        }
        None if metered.verdict.is_ok() => (Some(None), Some(Vec::new())),
        None => (None, None),
    };
    let verdict = &metered.verdict;
    let response = match verdict {
        Ok(verified) => {
            let key = verified.key();
            ApiKeyVerdict {
                valid: true,
                workspace: Some(verified.workspace().slug.as_str()),
                key_id: Some(key.id.as_str()),
                name: Some(key.name.as_str()),
                external_id: Some(key.external_id.as_ref().map(|id| id.as_str())),
                scopes: Some(key.scopes.as_slice().iter().map(|scope| scope.as_str()).collect()),
                meta: Some(key.meta.as_ref().and_then(super::api_keys::meta_object)),
                expires_at: Some(key.expires_at.map(crate::wire::format_timestamp)),
                credits,
                ratelimits,
                reason: record(state, "api_key", None),
            }
        }
        Err(refusal) => ApiKeyVerdict {
            credits,
            ratelimits,
            reason: record(state, "api_key", Some(*refusal)),
            ..Default::default()
        },
    };
    json(StatusCode::OK, &response)
}

pub(crate) async fn public_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let body = object(input)?;
    let presented = required(&body, "api_key")?;
    let fields = (optional(&body, "origin"), optional(&body, "user_token"), optional(&body, "tenant_id"));
    let verdict = match (presented, fields) {
        (Some(api_key), (Ok(origin), Ok(user_token), Ok(tenant_id))) => {
            let request = PublicKeyRequest { api_key, origin, user_token, tenant_id };
            state.service.verify_public_key(caller, request).await.map_err(store_failure)?
        }
        _ => Err(malformed()),
    };
    let response = match verdict {
        Ok(verified) => PublicKeyVerdict {
            valid: true,
            workspace: Some(verified.workspace.slug.to_string()),
            public_key_id: Some(verified.key.id.to_string()),
            entity_id: verified.entity_id,
            reason: record(state, "public_key", None),
        },
        Err(refusal) => PublicKeyVerdict { reason: record(state, "public_key", Some(refusal)), ..Default::default() },
    };
    json(StatusCode::OK, &response)
}

pub(crate) async fn jwt(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let verdict = verify_field(input, "token", async |token| state.service.verify_jwt(caller, token).await).await?;
    let response = match verdict {
        Ok(verified) => JwtVerdict {
            valid: true,
            organisation_id: Some(verified.organisation_id.to_string()),
            key_id: Some(verified.key_id.to_string()),
            sub: Some(verified.sub),
            claims: Some(verified.claims),
            reason: record(state, "jwt", None),
        },
        Err(refusal) => JwtVerdict { reason: record(state, "jwt", Some(refusal)), ..Default::default() },
    };
    json(StatusCode::OK, &response)
}

/// What a verify request answers besides its verdict: nothing; any
/// Every verify request: 200 for anything well-formed.
const VERIFY_DESCRIPTION: &str =
    "200 for any well-formed request; `valid:false` with a `reason` when it does not verify.";

/// A verify endpoint: `POST` a request, answer 200 with the verdict.
const fn verify(id: &'static str, summary: &'static str, handler: Handler, verdict: SchemaOf) -> Operation {
    Operation::new(Method::POST, id, summary, handler, (200, Payload::Json(verdict))).describe(VERIFY_DESCRIPTION)
}

/// `/v1/verify/api_key/`.
const API_KEY: &[Operation] = &[verify(
    "verify-api-key",
    "Verify an API key",
    authenticated!(Verify, api_key),
    schema::<ApiKeyVerdict<'static>>(),
)
.body(Body::Required(schema::<VerifyApiKeyRequest>()))];
/// `/v1/verify/public_key/`.
const PUBLIC_KEY: &[Operation] = &[verify(
    "verify-public-key",
    "Verify a public key",
    authenticated!(Verify, public_key),
    schema::<PublicKeyVerdict>(),
)
.body(Body::Required(schema::<VerifyPublicKeyRequest>()))
.describe(
    "The origin, and in secure mode the user token. 200 for any well-formed request; `valid:false` with a \
             `reason` when it does not verify.",
)];
/// `/v1/verify/jwt/`.
const JWT: &[Operation] =
    &[verify("verify-jwt", "Verify a Versori-style RS256 JWT", authenticated!(Verify, jwt), schema::<JwtVerdict>())
        .body(Body::Required(schema::<VerifyJwtRequest>()))];

/// The verification endpoints, the hot path.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/verify/api_key/", Dialect::SuprSend, Tag::Verification, API_KEY),
    Route::new("/v1/verify/public_key/", Dialect::SuprSend, Tag::Verification, PUBLIC_KEY),
    Route::new("/v1/verify/jwt/", Dialect::SuprSend, Tag::Verification, JWT),
];

// ---------------------------------------------------------------- wire types

// These types only describe JSON that the verification handlers read as a
// JSON object; the handler tests validate every request against them.

/// `POST /v1/verify/api_key/`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct VerifyApiKeyRequest {
    /// The `SS.…` secret to verify, a string: any other value is
    /// `valid:false`, `malformed` (garbage is never a 400).
    #[schema(value_type = Value)]
    api_key: String,
    /// Scopes the key must hold (`keys:*` held covers `keys:read`
    /// required); one it lacks is `valid:false`, `insufficient_scope`. An
    /// array of strings: any other value is `valid:false`, `malformed`.
    #[schema(value_type = Option<Value>)]
    required_scopes: Option<Vec<String>>,
    /// What this verification spends from each balance (0 – 1,000,000,
    /// default 1); out of range is a 400.
    #[schema(minimum = 0, maximum = 1000000)]
    cost: Option<u64>,
    /// Named limits to apply besides the auto-applied ones, each with the
    /// tokens it takes (default 1); a name neither the key nor its identity
    /// defines is ignored.
    ratelimits: Option<Vec<NamedLimit>>,
}

/// A limit a verification names: the key's or its identity's (others are
/// ignored), with the tokens it takes.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
#[schema(as = NamedRateLimit)]
pub(crate) struct NamedLimit {
    #[schema(pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$")]
    name: String,
    /// Tokens it takes (default 1).
    #[schema(minimum = 0, maximum = 1000000)]
    cost: Option<u64>,
}

/// `POST /v1/verify/public_key/`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct VerifyPublicKeyRequest {
    /// The `SS.PUBK.…` key to verify, a string (any other value, here or
    /// in the optional fields, is `valid:false`, `malformed`).
    #[schema(value_type = Value)]
    api_key: String,
    /// The browser's origin (`scheme://host[:port]`) or a bare host.
    #[schema(value_type = Option<Value>)]
    origin: Option<String>,
    /// In secure mode: the ES256 user token signed by the workspace's key.
    #[schema(value_type = Option<Value>)]
    user_token: Option<String>,
    /// The tenant the user token must name (absent means `default`).
    #[schema(value_type = Option<Value>)]
    tenant_id: Option<String>,
}

/// `POST /v1/verify/jwt/`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct VerifyJwtRequest {
    /// A Versori-style RS256 JWT (`iss` = `<issuer base>/sk/<KEY_ID>`), a
    /// string: any other value is `valid:false`, `malformed`.
    #[schema(value_type = Value)]
    token: String,
}
