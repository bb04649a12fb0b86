//! API keys (dialect 1): list, get, create and roll (the secret is in that
//! one response), patch, disable, enable, delete.

use http::StatusCode;
use keys_core::{ApiKeyId, ApiKeyPatch, ApiKeyProfile, Description, ExternalId, KeyMeta, KeyScopes, Name};
use keys_service::api_keys::IssuedApiKey;
use keys_service::workspaces::InWorkspace;
use keys_service::ServiceResult;
use serde_json::Value;

use super::{in_workspace, instant, list_of, required_name, HttpResult};
use crate::dto::{ApiKeyDto, CreateApiKey, NoFields, PatchApiKey, RollSigningKey, Secret};
use crate::error::{json, no_content, secret_json, ApiError, Dialect};
use crate::routing::{authenticated, Authenticated, Body, Operation, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    list_of::<ApiKeyDto, _>(call, async |scope, listing| scope.list_api_keys(listing).await).await
}

fn scopes(items: &[String]) -> Result<KeyScopes, ApiError> {
    Ok(KeyScopes::parse(items.iter().map(String::as_str))?)
}

fn meta(value: Value) -> Result<KeyMeta, ApiError> {
    match value {
        object @ Value::Object(_) => Ok(KeyMeta::parse(&object.to_string())?),
        _ => Err(ApiError::validation("meta must be a JSON object")),
    }
}

fn external_id(text: &str) -> Result<ExternalId, ApiError> {
    Ok(ExternalId::parse(text)?)
}

/// The profile a create request's body asks for.
fn profile(body: CreateApiKey) -> Result<ApiKeyProfile, ApiError> {
    Ok(ApiKeyProfile {
        name: required_name(body.name.as_deref())?,
        description: Description::parse(body.description.as_deref())?,
        scopes: scopes(body.scopes.as_deref().unwrap_or_default())?,
        external_id: body.external_id.as_deref().map(external_id).transpose()?,
        meta: body.meta.filter(|value| !value.is_null()).map(meta).transpose()?,
        expires_at: body.expires_at.as_deref().map(|text| instant("expires_at", text)).transpose()?,
    })
}

/// The patch a PATCH body asks for: `null` clears.
fn patch_of(body: PatchApiKey) -> Result<ApiKeyPatch, ApiError> {
    let name = match body.name {
        None => None,
        Some(None) => return Err(ApiError::validation("name may not be null")),
        Some(Some(text)) => Some(Name::parse(&text)?),
    };
    Ok(ApiKeyPatch {
        name,
        description: body.description.map(|text| Description::parse(text.as_deref())).transpose()?,
        expires_at: body
            .expires_at
            .map(|text| text.map(|text| instant("expires_at", &text)).transpose())
            .transpose()?,
        scopes: body.scopes.map(|items| scopes(items.as_deref().unwrap_or_default())).transpose()?,
        external_id: body.external_id.map(|text| text.as_deref().map(external_id).transpose()).transpose()?,
        meta: body.meta.map(|value| value.filter(|value| !value.is_null()).map(meta).transpose()).transpose()?,
    })
}

/// A key with its secret, as a create or roll answers.
fn issued(issued: IssuedApiKey) -> HttpResult {
    let mut dto = ApiKeyDto::from(&issued.key);
    dto.api_key = Some(Secret::new(issued.secret.expose()));
    secret_json(StatusCode::CREATED, &dto)
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let profile = profile(input.json()?)?;
    let created = in_workspace(state, caller, workspace).await?.create_api_key(profile).await;
    issued(created.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?)
}

/// Runs `action` on the API key the path names.
async fn on_key<T>(
    call: Authenticated<'_>,
    action: impl AsyncFnOnce(&InWorkspace<'_>, &ApiKeyId) -> ServiceResult<T>,
) -> Result<T, ApiError> {
    super::on_key(call, "api key", ApiKeyId::parse, action).await
}

pub(crate) async fn get(call: Authenticated<'_>) -> HttpResult {
    let key = on_key(call, async |scope, id| scope.get_api_key(id).await).await?;
    json(StatusCode::OK, &ApiKeyDto::from(&key))
}

pub(crate) async fn patch(call: Authenticated<'_>) -> HttpResult {
    let patch = patch_of(call.input.json()?)?;
    let key = on_key(call, async |scope, id| scope.patch_api_key(id, patch).await).await?;
    json(StatusCode::ACCEPTED, &ApiKeyDto::from(&key))
}

pub(crate) async fn disable(call: Authenticated<'_>) -> HttpResult {
    let _: NoFields = call.input.optional_json()?;
    let key = on_key(call, async |scope, id| scope.disable_api_key(id).await).await?;
    json(StatusCode::ACCEPTED, &ApiKeyDto::from(&key))
}

pub(crate) async fn enable(call: Authenticated<'_>) -> HttpResult {
    let _: NoFields = call.input.optional_json()?;
    let key = on_key(call, async |scope, id| scope.enable_api_key(id).await).await?;
    json(StatusCode::ACCEPTED, &ApiKeyDto::from(&key))
}

pub(crate) async fn roll(call: Authenticated<'_>) -> HttpResult {
    let body: RollSigningKey = call.input.optional_json()?;
    let grace = body.grace()?;
    issued(on_key(call, async |scope, id| scope.roll_api_key(id, grace).await).await?)
}

pub(crate) async fn delete(call: Authenticated<'_>) -> HttpResult {
    on_key(call, async |scope, id| scope.delete_api_key(id).await).await?;
    Ok(no_content())
}

/// `/v1/{workspace}/ws_api_key/`.
const KEYS: &[Operation] = &[
    Operation::list("list-api-keys", "List API keys", authenticated!(ManageKeys, list), schema::<ApiKeyDto>()),
    Operation::post("create-api-key", "Create API key", authenticated!(ManageKeys, create), schema::<ApiKeyDto>())
        .describe("The response carries the secret `api_key`, shown this once. An `expires_at` in the past is a 400.")
        .body(Body::Required(schema::<CreateApiKey>()))
        .refuses(&[BAD_REQUEST, NOT_FOUND])
        .hands_out_secret(),
];
/// `/v1/{workspace}/ws_api_key/{api_key_id}/`.
const KEY: &[Operation] = &[
    Operation::get("get-api-key", "Get API key", authenticated!(ManageKeys, get), schema::<ApiKeyDto>())
        .describe("Deleted keys too (`is_deleted`); never the secret."),
    Operation::patch("update-api-key", "Update API key", authenticated!(ManageKeys, patch), schema::<ApiKeyDto>())
        .describe(
            "Any of the fields; `null` clears the nullable ones and empties `scopes`. An `expires_at` in the past is \
             a 400, and so is one later than a rolled key's.",
        )
        .body(Body::Required(schema::<PatchApiKey>()))
        .refuses(&[BAD_REQUEST, NOT_FOUND]),
    Operation::delete("delete-api-key", "Delete API key", authenticated!(ManageKeys, delete)),
];
/// `…/disable/`.
const DISABLE: &[Operation] = &[Operation::patch(
    "disable-api-key",
    "Disable API key",
    authenticated!(ManageKeys, disable),
    schema::<ApiKeyDto>(),
)
.describe(
    "An active key stops authenticating on every replica within a second; enable undoes it. Only an active \
             key can be disabled (400).",
)
.body(Body::Optional(schema::<NoFields>()))
.refuses(&[BAD_REQUEST, NOT_FOUND])];
/// `…/enable/`.
const ENABLE: &[Operation] =
    &[Operation::patch("enable-api-key", "Enable API key", authenticated!(ManageKeys, enable), schema::<ApiKeyDto>())
        .describe("Only a disabled key can be enabled (400).")
        .body(Body::Optional(schema::<NoFields>()))
        .refuses(&[BAD_REQUEST, NOT_FOUND])];
/// `…/roll/`.
const ROLL: &[Operation] =
    &[Operation::post("roll-api-key", "Roll API key", authenticated!(ManageKeys, roll), schema::<ApiKeyDto>())
        .describe(
            "A new key (new id and secret, shown this once) inherits name, description, scopes, external_id, meta and \
         expires_at; the old key becomes `rolled` and keeps authenticating until min(now + grace_period_seconds, \
         its expires_at). Only an active key can be rolled (400).",
        )
        .body(Body::Optional(schema::<RollSigningKey>()))
        .refuses(&[BAD_REQUEST, NOT_FOUND])
        .hands_out_secret()];

/// Dialect 1's API keys.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/{workspace}/ws_api_key/", Dialect::SuprSend, Tag::ApiKeys, KEYS),
    Route::new("/v1/{workspace}/ws_api_key/{api_key_id}/", Dialect::SuprSend, Tag::ApiKeys, KEY),
    Route::new("/v1/{workspace}/ws_api_key/{api_key_id}/disable/", Dialect::SuprSend, Tag::ApiKeys, DISABLE),
    Route::new("/v1/{workspace}/ws_api_key/{api_key_id}/enable/", Dialect::SuprSend, Tag::ApiKeys, ENABLE),
    Route::new("/v1/{workspace}/ws_api_key/{api_key_id}/roll/", Dialect::SuprSend, Tag::ApiKeys, ROLL),
];
