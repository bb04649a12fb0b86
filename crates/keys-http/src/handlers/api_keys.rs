//! API keys (dialect 1): list, create (the secret is in this one response),
//! delete.

use http::StatusCode;
use keys_core::{ApiKeyId, Description};
use keys_service::workspaces::NewKey;

use super::{in_workspace, key_id, listing, required_name, Caller, HttpResult, Input};
use crate::dto::{ApiKeyDto, CreateKey, ListDto};
use crate::error::{json, no_content, ApiError};
use crate::state::AppState;

pub(crate) async fn list_api_keys(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let listing = listing(input)?;
    let page = in_workspace(state, caller, workspace).await?.list_api_keys(listing).await;
    json(
        StatusCode::OK,
        &ListDto::<ApiKeyDto>::from_page(page.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?),
    )
}

/// The new API key or public key a create request's body asks for.
pub(crate) fn new_key(input: &Input) -> Result<NewKey, ApiError> {
    let body: CreateKey = input.json()?;
    Ok(NewKey {
        name: required_name(body.name.as_deref())?,
        description: Description::parse(body.description.as_deref())?,
    })
}

pub(crate) async fn create_api_key(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let issued = in_workspace(state, caller, workspace).await?.create_api_key(new_key(input)?).await;
    let issued = issued.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    let mut dto = ApiKeyDto::from(&issued.key);
    dto.api_key = Some(issued.secret.expose().to_owned());
    json(StatusCode::CREATED, &dto)
}

pub(crate) async fn delete_api_key(state: &AppState, caller: &Caller, workspace: &str, id: &str) -> HttpResult {
    let scope = in_workspace(state, caller, workspace).await?;
    let (id, target) = key_id(ApiKeyId::parse(id), "api key", id)?;
    scope.delete_api_key(&id).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}
