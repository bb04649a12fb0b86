//! API keys (dialect 1): list, get, create and roll (the secret is in that
//! one response), patch, disable, enable, delete.

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use http::StatusCode;
use keys_core::{
    ApiKey, ApiKeyId, ApiKeyLifecycle, ApiKeyPatch, ApiKeyProfile, ApiKeyStatus, Description, ExternalId, KeyMeta,
    KeyScopes, Name,
};
use keys_service::api_keys::IssuedApiKey;
use keys_service::workspaces::InWorkspace;
use keys_service::ServiceResult;
use serde_json::Value;

use super::{in_workspace, instant, list_of, required_name, HttpResult};
use crate::error::{ApiError, Dialect};
use crate::respond::{json, no_content, secret_json};
use crate::routing::{authenticated, Authenticated, Body, Operation, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;
use crate::schema::{description_schema, external_id_schema, name_schema, scopes_schema, string_enum};
use crate::wire::{actor, format_timestamp, present, roll_body, timestamp_opt, ActorDto, NoFields, Secret};

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
pub(crate) fn profile(body: CreateApiKey) -> Result<ApiKeyProfile, ApiError> {
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
fn issued(issued: IssuedApiKey, meter: Option<&keys_service::metering::MeterView>) -> HttpResult {
    let mut dto = ApiKeyDto::from(&issued.key);
    dto.api_key = Some(Secret::new(issued.secret.expose()));
    dto.metered(meter);
    secret_json(StatusCode::CREATED, &dto)
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let mut body: CreateApiKey = input.json()?;
    let (limits, credits) = (body.ratelimits.take(), body.credits.take());
    let setting = super::metering::setting(limits.as_deref().map(Some), credits.as_ref().map(Some))?;
    let profile = profile(body)?;
    let scope = in_workspace(state, caller, workspace).await?;
    let created = async {
        let issued = scope.create_metered_api_key(profile, setting).await?;
        let meter = scope.api_key_meter(&issued.key.id).await?;
        Ok((issued, meter))
    }
    .await;
    let (created, meter) = created.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    issued(created, meter.as_ref())
}

/// Runs `action` on the API key the path names.
async fn on_key<T>(
    call: Authenticated<'_>,
    action: impl AsyncFnOnce(&InWorkspace<'_>, &ApiKeyId) -> ServiceResult<T>,
) -> Result<T, ApiError> {
    super::on_key(call, "api key", ApiKeyId::parse, action).await
}

/// A key with its metering, as an answer about one key carries it.
fn one_key(status: StatusCode, (key, meter): (ApiKey, Option<keys_service::metering::MeterView>)) -> HttpResult {
    let mut dto = ApiKeyDto::from(&key);
    dto.metered(meter.as_ref());
    json(status, &dto)
}

pub(crate) async fn get(call: Authenticated<'_>) -> HttpResult {
    let found =
        on_key(call, async |scope, id| Ok((scope.get_api_key(id).await?, scope.api_key_meter(id).await?))).await?;
    one_key(StatusCode::OK, found)
}

pub(crate) async fn patch(call: Authenticated<'_>) -> HttpResult {
    let mut body: PatchApiKey = call.input.json()?;
    let (limits, credits) = (body.ratelimits.take(), body.credits.take());
    let setting = super::metering::setting(
        limits.as_ref().map(|items| items.as_deref()),
        credits.as_ref().map(|dto| dto.as_ref()),
    )?;
    let patch = patch_of(body)?;
    // With metering, the key and its meter change in one transaction.
    let patched = on_key(call, async |scope, id| match setting {
        Some(setting) => {
            let (key, meter) = scope.set_api_key_meter(id, patch, setting).await?;
            Ok((key, Some(meter)))
        }
        None => Ok((scope.patch_api_key(id, patch).await?, scope.api_key_meter(id).await?)),
    })
    .await?;
    one_key(StatusCode::ACCEPTED, patched)
}

pub(crate) async fn disable(call: Authenticated<'_>) -> HttpResult {
    let _: NoFields = call.input.optional_json()?;
    let found =
        on_key(call, async |scope, id| Ok((scope.disable_api_key(id).await?, scope.api_key_meter(id).await?))).await?;
    one_key(StatusCode::ACCEPTED, found)
}

pub(crate) async fn enable(call: Authenticated<'_>) -> HttpResult {
    let _: NoFields = call.input.optional_json()?;
    let found =
        on_key(call, async |scope, id| Ok((scope.enable_api_key(id).await?, scope.api_key_meter(id).await?))).await?;
    one_key(StatusCode::ACCEPTED, found)
}

pub(crate) async fn roll(call: Authenticated<'_>) -> HttpResult {
    let body: RollApiKey = call.input.optional_json()?;
    let grace = body.grace()?;
    let (rolled, meter) = on_key(call, async |scope, id| {
        let issued = scope.roll_api_key(id, grace).await?;
        let meter = scope.api_key_meter(&issued.key.id).await?;
        Ok((issued, meter))
    })
    .await?;
    issued(rolled, meter.as_ref())
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
        .body(Body::Optional(schema::<RollApiKey>()))
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

// ---------------------------------------------------------------- wire types

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub struct ApiKeyDto {
    #[schema(pattern = "^ws_apik_")]
    pub id: String,
    /// The first 10 characters of the secret and `*****`; for an imported
    /// key, at most a quarter of its text (and at most 10 characters) and
    /// `*****`, or `imported_` and 6 hex digits of its SHA-256 when only
    /// that was imported.
    pub masked_api_key: String,
    pub is_deleted: bool,
    pub name: String,
    pub description: Option<String>,
    pub allowed_domains: Vec<String>,
    #[schema(schema_with = api_key_status_schema)]
    pub status: &'static str,
    /// Authenticates strictly before this instant; null never expires.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub scopes: Vec<String>,
    /// The key's owner in the customer's system.
    pub external_id: Option<String>,
    /// Free-form JSON object (at most 4 KiB serialised).
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// May lag real use by up to a minute; never moves back.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub updated_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub disabled_at: Option<String>,
    pub disabled_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub rolled_at: Option<String>,
    pub rolled_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub deleted_by: Option<ActorDto>,
    /// The secret: only in the create and roll responses. `SS.`, or the
    /// workspace's prefix and `_`, then 43 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^(SS\.|[a-z][a-z0-9]{1,15}_(live|test)_)[A-Za-z0-9_-]{43}$")]
    pub api_key: Option<Secret>,
    /// The key's rate limits (its roll chain's: a roll hands them on).
    /// In every answer about one key; not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<super::metering::RateLimitDto>>)]
    pub ratelimits: Option<Vec<super::metering::RateLimitDto>>,
    /// The key's credits (null: unmetered), `remaining` as the answering
    /// replica sees it. In every answer about one key; not in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::metering::CreditsDto>)]
    pub credits: Option<Option<super::metering::CreditsDto>>,
}

impl ApiKeyDto {
    /// The key's metering, as an answer about one key carries it.
    pub(crate) fn metered(&mut self, view: Option<&keys_service::metering::MeterView>) {
        self.ratelimits = Some(super::metering::limits_of(view));
        self.credits = Some(super::metering::credits_of(view));
    }
}

/// Its one secret field is a [`Secret`].
impl zeroize::ZeroizeOnDrop for ApiKeyDto {}

impl From<&ApiKey> for ApiKeyDto {
    fn from(key: &ApiKey) -> Self {
        let (disabled, rolled) = match &key.lifecycle {
            ApiKeyLifecycle::Active => ((None, None), (None, None)),
            ApiKeyLifecycle::Disabled { at, by } => ((Some(*at), by.clone()), (None, None)),
            ApiKeyLifecycle::Rolled { at, by } => ((None, None), (Some(*at), by.clone())),
        };
        let deletion = key.deletion.as_ref();
        Self {
            id: key.id.to_string(),
            masked_api_key: key.masked_api_key.clone(),
            is_deleted: key.is_deleted(),
            name: key.name.as_str().to_owned(),
            description: key.description.as_ref().map(|description| description.as_str().to_owned()),
            allowed_domains: Vec::new(),
            status: key.status().as_str(),
            expires_at: timestamp_opt(key.expires_at),
            scopes: key.scopes.as_slice().iter().map(|scope| scope.as_str().to_owned()).collect(),
            external_id: key.external_id.as_ref().map(|id| id.as_str().to_owned()),
            meta: key.meta.as_ref().and_then(meta_object),
            last_used_at: timestamp_opt(key.last_used_at),
            created_at: format_timestamp(key.created_at),
            created_by: actor(&key.created_by),
            updated_at: format_timestamp(key.updated_at),
            updated_by: actor(&key.updated_by),
            disabled_at: timestamp_opt(disabled.0),
            disabled_by: actor(&disabled.1),
            rolled_at: timestamp_opt(rolled.0),
            rolled_by: actor(&rolled.1),
            deleted_at: timestamp_opt(deletion.map(|deletion| deletion.at)),
            deleted_by: actor(&deletion.and_then(|deletion| deletion.by.clone())),
            api_key: None,
            ratelimits: None,
            credits: None,
        }
    }
}

/// A key's meta as the JSON object it is (keys-core keeps its text).
pub(crate) fn meta_object(meta: &keys_core::KeyMeta) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(meta.as_str()).ok()
}

/// Declares a request body that takes the fields of an API-key create
/// (`{name, description?, expires_at?, scopes?, external_id?, meta?}`)
/// after its own: the create's body, and an entry of an import.
macro_rules! with_create_fields {
    ($(#[$meta:meta])* $name:ident as $schema:ident { $($(#[$field_meta:meta])* $field:ident: $type:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        #[schema(as = $schema)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            #[schema(required = true, schema_with = name_schema)]
            pub name: Option<String>,
            #[schema(schema_with = description_schema)]
            pub description: Option<String>,
            /// RFC 3339; must lie in the future.
            #[schema(format = DateTime)]
            pub expires_at: Option<String>,
            /// At most 64; each 1–64 characters of `a-z 0-9 : . _ -`, optionally
            /// ending in `:*`.
            #[schema(schema_with = scopes_schema)]
            pub scopes: Option<Vec<String>>,
            #[schema(schema_with = external_id_schema)]
            pub external_id: Option<String>,
            /// A JSON object of at most 4 KiB serialised.
            #[schema(value_type = Option<Object>)]
            pub meta: Option<serde_json::Value>,
        }
    };
}
pub(crate) use with_create_fields;

with_create_fields! {
    /// `POST …/ws_api_key/`: `{name, description?, expires_at?, scopes?,
    /// external_id?, meta?, ratelimits?, credits?}`.
    CreateApiKey as ApiKeyCreate {
        /// At most 16 (docs/METERING.md).
        ratelimits: Option<Vec<super::metering::RateLimitDto>>,
        /// Null: unmetered.
        credits: Option<super::metering::CreditsDto>,
    }
}

/// `PATCH …/ws_api_key/{id}/`: any of the fields; `null` clears the
/// nullable ones (and empties `scopes`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyPatch)]
pub struct PatchApiKey {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = name_schema)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = description_schema)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(format = DateTime)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = scopes_schema)]
    pub scopes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Option<serde_json::Value>>,
    /// Replaces the key's rate limits (`null` or `[]` removes them).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<super::metering::RateLimitDto>>)]
    pub ratelimits: Option<Option<Vec<super::metering::RateLimitDto>>>,
    /// Replaces the key's credits, balance included (`null`: unmetered).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<super::metering::CreditsDto>)]
    pub credits: Option<Option<super::metering::CreditsDto>>,
}

roll_body!(RollApiKey, ApiKeyRoll, "The optional body of an API-key roll.");

/// `status` of a workspace signing key.
pub(crate) fn api_key_status_schema() -> impl Into<RefOr<Schema>> {
    string_enum(ApiKeyStatus::ALL.map(ApiKeyStatus::as_str), "`active`, `disabled` or `rolled`.")
}
