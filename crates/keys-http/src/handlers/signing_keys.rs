//! Workspace signing keys (dialect 1): list, create and roll (the private
//! key is in that one response), delete.

use http::StatusCode;
use keys_core::{GracePeriod, SigningKeyUid};
use keys_service::signing_keys::IssuedSigningKey;

use super::{echo, path_id, Caller, HttpResult, Input};
use crate::dto::{ListDto, ListQuery, NoFields, RollSigningKey, SigningKeyDto};
use crate::error::{json, no_content, ApiError};
use crate::server::AppState;

pub(crate) async fn list_signing_keys(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let page = state
        .service
        .list_signing_keys(caller, workspace, query.pagination, query.include_deleted)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
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
    let issued = state
        .service
        .create_signing_key(caller, workspace)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::CREATED, &with_private_key(&issued))
}

fn target(uid: &str) -> String {
    format!("signing key '{}'", echo(uid))
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
    let target = target(uid);
    let uid = path_id(state, caller, workspace, SigningKeyUid::parse(uid), &target).await?;
    let issued = state
        .service
        .roll_signing_key(caller, workspace, &uid, grace)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, &target))?;
    json(StatusCode::CREATED, &with_private_key(&issued))
}

pub(crate) async fn delete_signing_key(state: &AppState, caller: &Caller, workspace: &str, uid: &str) -> HttpResult {
    let target = target(uid);
    let uid = path_id(state, caller, workspace, SigningKeyUid::parse(uid), &target).await?;
    state
        .service
        .delete_signing_key(caller, workspace, &uid)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}
