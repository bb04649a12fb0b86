//! Workspace signing keys (dialect 1): list, create and roll (the private
//! key is in that one response), delete.

use http::StatusCode;
use keys_core::{GracePeriod, SigningKeyUid};
use keys_service::signing_keys::IssuedSigningKey;

use super::{in_workspace, key_id, listing, HttpResult};
use crate::dto::{ListDto, NoFields, RollSigningKey, SigningKeyDto};
use crate::error::{json, no_content, ApiError};

use crate::error::Dialect;
use crate::route::{authenticated, Authenticated, Body, Operation, Route, Tag, POST};
use crate::schema::schema;

pub(crate) async fn list_signing_keys(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let listing = listing(input)?;
    let page = in_workspace(state, caller, workspace).await?.list_signing_keys(listing).await;
    let page = page.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::OK, &ListDto::<SigningKeyDto>::from_page(page))
}

/// The create/roll response: the stored key plus, once, its private key.
fn with_private_key(issued: &IssuedSigningKey) -> SigningKeyDto {
    let mut dto = SigningKeyDto::from(&issued.key);
    dto.private_key_pem = Some(issued.pair.private_key_pem().as_str().to_owned());
    dto.private_key_base64 = Some(issued.pair.private_key_base64().as_str().to_owned());
    dto
}

pub(crate) async fn create_signing_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let NoFields {} = input.optional_json()?;
    let issued = in_workspace(state, caller, workspace).await?.create_signing_key().await;
    json(
        StatusCode::CREATED,
        &with_private_key(&issued.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?),
    )
}

pub(crate) async fn roll_signing_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, uid, input) = (call.state, call.caller, call.param(0), call.param(1), call.input);
    let body: RollSigningKey = input.optional_json()?;
    let grace = body.grace_period_seconds.map(GracePeriod::from_seconds).transpose()?;
    let scope = in_workspace(state, caller, workspace).await?;
    let (uid, target) = key_id(SigningKeyUid::parse(uid), "signing key", uid)?;
    let issued = scope.roll_signing_key(&uid, grace).await;
    json(
        StatusCode::CREATED,
        &with_private_key(&issued.map_err(|error| ApiError::from_service(error, workspace, &target))?),
    )
}

pub(crate) async fn delete_signing_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, uid) = (call.state, call.caller, call.param(0), call.param(1));
    let scope = in_workspace(state, caller, workspace).await?;
    let (uid, target) = key_id(SigningKeyUid::parse(uid), "signing key", uid)?;
    scope.delete_signing_key(&uid).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}

/// Dialect 1's workspace signing keys (their JWKS is the workspaces').
pub(crate) static ROUTES: &[Route] = &[
    Route {
        operations: &[
            Operation::list(
                "list-signing-keys",
                "List signing keys",
                authenticated!(list_signing_keys),
                schema::<SigningKeyDto>(),
            ),
            Operation::create(
                "create-workspace-signing-key",
                "Create workspace signing key",
                authenticated!(create_signing_key),
                Body::Optional(schema::<NoFields>()),
                schema::<SigningKeyDto>(),
            )
            .describe(
                "Only one active signing key is allowed per workspace (400 \"only 1 active signing key is \
                     allowed\"); use roll to replace it. The private key is in the response, this once.",
            )
            .hands_out_secret(),
        ],
        ..Route::new("/v1/{workspace}/ws_signing_key/", Dialect::SuprSend, Tag::SigningKeys)
    },
    Route {
        operations: &[Operation::delete(
            "delete-workspace-signing-key",
            "Delete workspace signing key",
            authenticated!(delete_signing_key),
        )],
        ..Route::new("/v1/{workspace}/ws_signing_key/{signing_key_uid}/", Dialect::SuprSend, Tag::SigningKeys)
    },
    Route {
        operations: &[Operation::on(
            POST,
            "roll-workspace-signing-key",
            "Roll workspace signing key",
            authenticated!(roll_signing_key),
            201,
            schema::<SigningKeyDto>(),
        )
        .describe(
            "The active key becomes `rolled` and keeps verifying for `grace_period_seconds`; the new active key \
                 is returned with its private key, this once.",
        )
        .body(Body::Optional(schema::<RollSigningKey>()))
        .hands_out_secret()],
        ..Route::new("/v1/{workspace}/ws_signing_key/{signing_key_uid}/roll/", Dialect::SuprSend, Tag::SigningKeys)
    },
];
