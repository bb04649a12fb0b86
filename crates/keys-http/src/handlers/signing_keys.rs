//! Workspace signing keys (dialect 1): list, create and roll (the private
//! key is in that one response), delete.

use http::StatusCode;
use keys_core::{GracePeriod, SigningKeyUid};
use keys_service::signing_keys::IssuedSigningKey;

use super::{in_workspace, key_id, listing, Caller, HttpResult, Input};
use crate::dto::{ListDto, NoFields, RollSigningKey, SigningKeyDto};
use crate::error::{json, no_content, ApiError};
use crate::state::AppState;

pub(crate) async fn list_signing_keys(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
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

pub(crate) async fn create_signing_key(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    input: &Input,
) -> HttpResult {
    let NoFields {} = input.optional_json()?;
    let issued = in_workspace(state, caller, workspace).await?.create_signing_key().await;
    json(
        StatusCode::CREATED,
        &with_private_key(&issued.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?),
    )
}

pub(crate) async fn roll_signing_key(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    uid: &str,
    input: &Input,
) -> HttpResult {
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

pub(crate) async fn delete_signing_key(state: &AppState, caller: &Caller, workspace: &str, uid: &str) -> HttpResult {
    let scope = in_workspace(state, caller, workspace).await?;
    let (uid, target) = key_id(SigningKeyUid::parse(uid), "signing key", uid)?;
    scope.delete_signing_key(&uid).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}
