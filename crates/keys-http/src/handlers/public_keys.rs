//! Public keys (dialect 1): list, create, patch, rotate, delete.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{ArrayBuilder, RefOr, Schema, Type};
use utoipa::ToSchema;

use http::StatusCode;
use keys_core::{Description, DomainPattern, Name, PublicKey, PublicKeyId, PublicKeyPatch};
use keys_service::workspaces::NewKey;

use super::{in_workspace, list_of, on_key, required_name, HttpResult, Input};
use crate::error::ApiError;
use crate::respond::{json, no_content};
use crate::schema::{description_schema, domain_pattern_schema, name_schema};
use crate::wire::{actor, format_timestamp, present, timestamp_opt, ActorDto, NoFields};

use crate::error::Dialect;
use crate::routing::{authenticated, Authenticated, Body, Operation, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    list_of::<PublicKeyDto, _>(call, async |scope, listing| scope.list_public_keys(listing).await).await
}

/// The new public key a create request's body asks for.
fn new_key(input: &Input) -> Result<NewKey, ApiError> {
    let body: CreateKey = input.json()?;
    Ok(NewKey {
        name: required_name(body.name.as_deref())?,
        description: Description::parse(body.description.as_deref())?,
    })
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let key = in_workspace(state, caller, workspace).await?.create_public_key(new_key(input)?).await;
    json(
        StatusCode::CREATED,
        &PublicKeyDto::from(&key.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?),
    )
}

/// Turns the wire patch into the domain patch, collecting every problem.
fn parse_patch(body: PatchPublicKey) -> Result<PublicKeyPatch, ApiError> {
    let mut problems = Vec::new();
    let mut patch = PublicKeyPatch::default();
    match body.name {
        None => {}
        Some(None) => problems.push("name may not be null".to_owned()),
        Some(Some(name)) => match Name::parse(&name) {
            Ok(name) => patch.name = Some(name),
            Err(error) => problems.push(error.to_string()),
        },
    }
    match body.is_secure_mode_enabled {
        None => {}
        Some(None) => problems.push("is_secure_mode_enabled may not be null".to_owned()),
        Some(Some(enabled)) => patch.is_secure_mode_enabled = Some(enabled),
    }
    if let Some(description) = body.description {
        match Description::parse(description.as_deref()) {
            Ok(description) => patch.description = Some(description),
            Err(error) => problems.push(error.to_string()),
        }
    }
    if let Some(domains) = body.allowed_domains {
        match domains {
            None => patch.allowed_domains = Some(None),
            Some(domains) => match DomainPattern::parse_list(domains.iter().map(String::as_str)) {
                Ok(domains) => patch.allowed_domains = Some(Some(domains)),
                Err(error) => problems.push(error.to_string()),
            },
        }
    }
    if problems.is_empty() {
        Ok(patch)
    } else {
        Err(ApiError::Validation(problems))
    }
}

pub(crate) async fn patch(call: Authenticated<'_>) -> HttpResult {
    let patch = parse_patch(call.input.json()?)?;
    let key = on_key(call, "public key", PublicKeyId::parse, async |scope, id| scope.patch_public_key(id, patch).await);
    json(StatusCode::ACCEPTED, &PublicKeyDto::from(&key.await?))
}

pub(crate) async fn rotate(call: Authenticated<'_>) -> HttpResult {
    let NoFields {} = call.input.optional_json()?;
    let key = on_key(call, "public key", PublicKeyId::parse, async |scope, id| scope.rotate_public_key(id).await);
    json(StatusCode::ACCEPTED, &PublicKeyDto::from(&key.await?))
}

pub(crate) async fn delete(call: Authenticated<'_>) -> HttpResult {
    on_key(call, "public key", PublicKeyId::parse, async |scope, id| scope.delete_public_key(id).await).await?;
    Ok(no_content())
}

/// `/v1/{workspace}/ws_public_key/`.
const KEYS: &[Operation] = &[
    Operation::list("list-public-keys", "List public keys", authenticated!(ManageKeys, list), schema::<PublicKeyDto>()),
    Operation::post(
        "create-public-key",
        "Create public key",
        authenticated!(ManageKeys, create),
        schema::<PublicKeyDto>(),
    )
    .body(Body::Required(schema::<CreateKey>()))
    .describe("The first public key of a workspace is its default.")
    .hands_out_secret(),
];
/// `/v1/{workspace}/ws_public_key/{public_key_id}/`.
const KEY: &[Operation] = &[
    Operation::patch(
        "update-public-key",
        "Update public key",
        authenticated!(ManageKeys, patch),
        schema::<PublicKeyDto>(),
    )
    .body(Body::Required(schema::<PatchPublicKey>()))
    .describe("Any of the fields; `null` clears `description` and `allowed_domains`."),
    Operation::delete("delete-public-key", "Delete public key", authenticated!(ManageKeys, delete))
        .refuses(&[BAD_REQUEST, NOT_FOUND])
        .describe("Deleting the default key while other live keys exist is a 400."),
];
/// `…/rotate/`.
const ROTATE: &[Operation] = &[Operation::patch(
    "rotate-public-key",
    "Rotate public key",
    authenticated!(ManageKeys, rotate),
    schema::<PublicKeyDto>(),
)
.hands_out_secret()
.body(Body::Optional(schema::<NoFields>()))
.describe("New key material for the same record; the old `api_key` stops working at once.")];

/// Dialect 1's public (publishable) keys.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/{workspace}/ws_public_key/", Dialect::SuprSend, Tag::PublicKeys, KEYS),
    Route::new("/v1/{workspace}/ws_public_key/{public_key_id}/", Dialect::SuprSend, Tag::PublicKeys, KEY),
    Route::new("/v1/{workspace}/ws_public_key/{public_key_id}/rotate/", Dialect::SuprSend, Tag::PublicKeys, ROTATE),
];

// ---------------------------------------------------------------- wire types

/// `{name, description?}` of API keys and public keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyCreate)]
pub struct CreateKey {
    #[schema(required = true, schema_with = name_schema)]
    pub name: Option<String>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
}

// --------------------------------------------------------------- public keys

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PublicKey)]
pub struct PublicKeyDto {
    #[schema(pattern = "^ws_pubk_")]
    pub id: String,
    #[schema(pattern = r"^SS\.PUBK\.")]
    pub api_key: String,
    pub name: String,
    pub description: Option<String>,
    pub allowed_domains: Option<Vec<String>>,
    pub is_secure_mode_enabled: bool,
    pub is_deleted: bool,
    pub is_default: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub rotated_at: Option<String>,
    pub rotated_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub updated_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub deleted_by: Option<ActorDto>,
}

impl From<&PublicKey> for PublicKeyDto {
    fn from(key: &PublicKey) -> Self {
        Self {
            id: key.id.to_string(),
            api_key: key.api_key.clone(),
            name: key.name.as_str().to_owned(),
            description: key.description.as_ref().map(|description| description.as_str().to_owned()),
            allowed_domains: key
                .allowed_domains
                .as_ref()
                .map(|domains| domains.iter().map(|domain| domain.as_str().to_owned()).collect()),
            is_secure_mode_enabled: key.is_secure_mode_enabled,
            is_deleted: key.is_deleted(),
            is_default: key.is_default,
            created_at: format_timestamp(key.created_at),
            created_by: actor(&key.created_by),
            rotated_at: timestamp_opt(key.rotated_at),
            rotated_by: actor(&key.rotated_by),
            updated_at: format_timestamp(key.updated_at),
            updated_by: actor(&key.updated_by),
            deleted_at: timestamp_opt(key.deleted_at),
            deleted_by: actor(&key.deleted_by),
        }
    }
}

/// A partial update of a public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PublicKeyPatch)]
pub struct PatchPublicKey {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    pub is_secure_mode_enabled: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = name_schema)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = description_schema)]
    pub description: Option<Option<String>>,
    /// Origins allowed to use the key (`null`: any). Each entry is a host
    /// (`app.example.com`), a wildcard over the subdomains of a registrable
    /// domain (`*.example.com`, not the apex; `*.com` or `*.co.uk` is
    /// refused), or either with a scheme and optional port
    /// (`https://app.example.com:8443`), which pins both.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = allowed_domains_schema)]
    pub allowed_domains: Option<Option<Vec<String>>>,
}

/// `allowed_domains` of a public-key patch: null (any origin) or at most
/// `DomainPattern::MAX_PER_KEY` patterns.
pub(crate) fn allowed_domains_schema() -> impl Into<RefOr<Schema>> {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(domain_pattern_schema())
        .max_items(Some(keys_core::DomainPattern::MAX_PER_KEY))
}
