//! API keys (dialect 1): list, create (the secret is in this one response),
//! delete.

use http::StatusCode;
use keys_core::{ApiKeyId, Description};
use keys_service::workspaces::NewKey;

use super::{in_workspace, key_id, listing, required_name, HttpResult, Input};
use crate::dto::{ApiKeyDto, CreateKey, ListDto};
use crate::error::{json, no_content, ApiError};

use crate::error::Dialect;
use crate::route::{authenticated, Authenticated, Body, Operation, Route, Tag};
use crate::schema::schema;

pub(crate) async fn list_api_keys(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
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

pub(crate) async fn create_api_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let issued = in_workspace(state, caller, workspace).await?.create_api_key(new_key(input)?).await;
    let issued = issued.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    let mut dto = ApiKeyDto::from(&issued.key);
    dto.api_key = Some(issued.secret.expose().to_owned());
    json(StatusCode::CREATED, &dto)
}

pub(crate) async fn delete_api_key(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, id) = (call.state, call.caller, call.param(0), call.param(1));
    let scope = in_workspace(state, caller, workspace).await?;
    let (id, target) = key_id(ApiKeyId::parse(id), "api key", id)?;
    scope.delete_api_key(&id).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}

/// Dialect 1's API keys.
pub(crate) static ROUTES: &[Route] = &[
    Route {
        operations: &[
            Operation::list("list-api-keys", "List API keys", authenticated!(list_api_keys), schema::<ApiKeyDto>()),
            Operation::create(
                "create-api-key",
                "Create API key",
                authenticated!(create_api_key),
                Body::Required(schema::<CreateKey>()),
                schema::<ApiKeyDto>(),
            )
            .describe("The response carries the secret `api_key`, shown this once.")
            .hands_out_secret(),
        ],
        ..Route::new("/v1/{workspace}/ws_api_key/", Dialect::SuprSend, Tag::ApiKeys)
    },
    Route {
        operations: &[Operation::delete("delete-api-key", "Delete API key", authenticated!(delete_api_key))],
        ..Route::new("/v1/{workspace}/ws_api_key/{api_key_id}/", Dialect::SuprSend, Tag::ApiKeys)
    },
];
