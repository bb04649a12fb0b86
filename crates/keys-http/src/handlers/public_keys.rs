//! Public keys (dialect 1): list, create, patch, rotate, delete.

use http::StatusCode;
use keys_core::{Description, DomainPattern, Name, PublicKeyId, PublicKeyPatch};
use keys_service::workspaces::NewKey;

use super::{in_workspace, list_of, on_key, required_name, HttpResult, Input};
use crate::dto::{CreateKey, NoFields, PatchPublicKey, PublicKeyDto};
use crate::error::{json, no_content, ApiError};

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
