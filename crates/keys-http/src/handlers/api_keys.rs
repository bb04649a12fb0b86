//! API keys (dialect 1): list, create (the secret is in this one response),
//! delete.

use http::StatusCode;
use keys_core::{ApiKeyId, Description};
use keys_service::api_keys::NewApiKey;

use super::{echo, path_id, required_name, Caller, HttpResult, Input};
use crate::dto::{ApiKeyDto, CreateKey, ListDto, ListQuery};
use crate::error::{json, no_content, ApiError};
use crate::server::AppState;

pub(crate) async fn list_api_keys(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let page = state
        .service
        .list_api_keys(caller, workspace, query.pagination, query.include_deleted)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::OK, &ListDto::<ApiKeyDto>::from_page(page))
}

pub(crate) async fn create_api_key(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let body: CreateKey = input.json()?;
    let new = NewApiKey {
        name: required_name(body.name.as_deref())?,
        description: Description::parse(body.description.as_deref())?,
    };
    let issued = state
        .service
        .create_api_key(caller, workspace, new)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    let mut dto = ApiKeyDto::from(&issued.key);
    dto.api_key = Some(issued.secret.expose().to_owned());
    json(StatusCode::CREATED, &dto)
}

pub(crate) async fn delete_api_key(state: &AppState, caller: &Caller, workspace: &str, id: &str) -> HttpResult {
    let target = format!("api key '{}'", echo(id));
    let id = path_id(state, caller, workspace, ApiKeyId::parse(id), &target).await?;
    state
        .service
        .delete_api_key(caller, workspace, &id)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}
