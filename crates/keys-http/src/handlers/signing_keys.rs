//! Workspace signing keys (dialect 1): list, create and roll (the private
//! key is in that one response), delete.

use serde::Serialize;
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use http::StatusCode;
use keys_core::{SigningKeyStatus, SigningKeyUid, WorkspaceSigningKey};
use keys_service::signing_keys::IssuedSigningKey;

use super::{in_workspace, list_of, on_key, HttpResult};
use crate::error::ApiError;
use crate::respond::{no_content, secret_json};
use crate::schema::string_enum;
use crate::wire::{actor, format_timestamp, roll_body, timestamp_opt, ActorDto, NoFields, Secret};

use crate::error::Dialect;
use crate::routing::{authenticated, Authenticated, Body, Operation, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    list_of::<SigningKeyDto, _>(call, async |scope, listing| scope.list_signing_keys(listing).await).await
}

/// The create/roll response: the stored key plus, once, its private key.
fn with_private_key(issued: &IssuedSigningKey) -> SigningKeyDto {
    let mut dto = SigningKeyDto::from(&issued.key);
    dto.private_key_pem = Some(Secret::new(issued.pair.private_key_pem().as_str()));
    dto.private_key_base64 = Some(Secret::new(issued.pair.private_key_base64().as_str()));
    dto
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let NoFields {} = input.optional_json()?;
    let issued = in_workspace(state, caller, workspace).await?.create_signing_key().await;
    secret_json(
        StatusCode::CREATED,
        &with_private_key(&issued.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?),
    )
}

pub(crate) async fn roll(call: Authenticated<'_>) -> HttpResult {
    let body: RollSigningKey = call.input.optional_json()?;
    let grace = body.grace()?;
    let issued =
        on_key(call, "signing key", SigningKeyUid::parse, async |scope, uid| scope.roll_signing_key(uid, grace).await);
    secret_json(StatusCode::CREATED, &with_private_key(&issued.await?))
}

pub(crate) async fn delete(call: Authenticated<'_>) -> HttpResult {
    on_key(call, "signing key", SigningKeyUid::parse, async |scope, uid| scope.delete_signing_key(uid).await).await?;
    Ok(no_content())
}

/// `/v1/{workspace}/ws_signing_key/`.
const KEYS: &[Operation] = &[
    Operation::list(
        "list-signing-keys",
        "List signing keys",
        authenticated!(ManageKeys, list),
        schema::<SigningKeyDto>(),
    ),
    Operation::post(
        "create-workspace-signing-key",
        "Create workspace signing key",
        authenticated!(ManageKeys, create),
        schema::<SigningKeyDto>(),
    )
    .hands_out_secret()
    .describe(
        "Only one active signing key is allowed per workspace (400 \"only 1 active signing key is allowed\"); use \
         roll to replace it. The private key is in the response, this once.",
    )
    .body(Body::Optional(schema::<NoFields>()))
    .refuses(&[BAD_REQUEST, NOT_FOUND]),
];
/// `/v1/{workspace}/ws_signing_key/{signing_key_uid}/`.
const KEY: &[Operation] = &[Operation::delete(
    "delete-workspace-signing-key",
    "Delete workspace signing key",
    authenticated!(ManageKeys, delete),
)];
/// `…/roll/`.
const ROLL: &[Operation] = &[Operation::post(
    "roll-workspace-signing-key",
    "Roll workspace signing key",
    authenticated!(ManageKeys, roll),
    schema::<SigningKeyDto>(),
)
.describe(
    "The active key becomes `rolled` and keeps verifying for `grace_period_seconds`; the new active key is returned \
     with its private key, this once. Only the active key can be rolled (400).",
)
.body(Body::Optional(schema::<RollSigningKey>()))
.refuses(&[BAD_REQUEST, NOT_FOUND])
.hands_out_secret()];

/// Dialect 1's workspace signing keys (their JWKS is the workspaces').
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/{workspace}/ws_signing_key/", Dialect::SuprSend, Tag::SigningKeys, KEYS),
    Route::new("/v1/{workspace}/ws_signing_key/{signing_key_uid}/", Dialect::SuprSend, Tag::SigningKeys, KEY),
    Route::new("/v1/{workspace}/ws_signing_key/{signing_key_uid}/roll/", Dialect::SuprSend, Tag::SigningKeys, ROLL),
];

// ---------------------------------------------------------------- wire types

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SigningKey)]
pub struct SigningKeyDto {
    #[schema(pattern = "^ws_signk_")]
    pub id: String,
    #[schema(pattern = "^signing_key_")]
    pub uid: String,
    #[schema(schema_with = signing_key_status_schema)]
    pub status: &'static str,
    pub allowed_domains: Option<Vec<String>>,
    #[schema(format = DateTime)]
    pub expiry_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^-----BEGIN PRIVATE KEY-----")]
    pub private_key_pem: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub private_key_base64: Option<Secret>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub rolled_at: Option<String>,
    pub rolled_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub deleted_by: Option<ActorDto>,
}

/// Its secret fields are [`Secret`]s.
impl zeroize::ZeroizeOnDrop for SigningKeyDto {}

impl From<&WorkspaceSigningKey> for SigningKeyDto {
    fn from(key: &WorkspaceSigningKey) -> Self {
        Self {
            id: key.id.to_string(),
            uid: key.uid.to_string(),
            status: key.status().as_str(),
            allowed_domains: key
                .allowed_domains
                .as_ref()
                .map(|domains| domains.iter().map(|domain| domain.as_str().to_owned()).collect()),
            expiry_at: timestamp_opt(key.expiry_at()),
            private_key_pem: None,
            private_key_base64: None,
            created_at: format_timestamp(key.created_at),
            created_by: actor(&key.created_by),
            rolled_at: timestamp_opt(key.rolled_at()),
            rolled_by: actor(&key.rolled_by().cloned()),
            deleted_at: timestamp_opt(key.deleted_at()),
            deleted_by: actor(&key.deleted_by().cloned()),
        }
    }
}

roll_body!(RollSigningKey, SigningKeyRoll, "The optional body of a signing-key roll.");

pub(crate) fn signing_key_status_schema() -> impl Into<RefOr<Schema>> {
    string_enum([SigningKeyStatus::Active.as_str(), SigningKeyStatus::Rolled.as_str()], "The key's state.")
}
