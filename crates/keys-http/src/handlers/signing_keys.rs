//! Workspace signing keys (dialect 1): list, create and roll (the private
//! key is in that one response), delete.

use http::StatusCode;
use keys_core::SigningKeyUid;
use keys_service::signing_keys::IssuedSigningKey;

use super::{in_workspace, list_of, on_key, HttpResult};
use crate::dto::{NoFields, RollSigningKey, Secret, SigningKeyDto};
use crate::error::{no_content, secret_json, ApiError};

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
