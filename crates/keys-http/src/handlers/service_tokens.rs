//! Service tokens (dialect 1; docs/API.md, Service tokens): list (masked), create (the
//! token is in that one response) and revoke. Only an `admin` token reaches
//! these routes (the table below says so); keys-core decides what a token
//! may hand on and that the last unexpired admin token stays.

use http::StatusCode;
use keys_core::{NewServiceToken, Role, TokenWorkspaces, WorkspaceSlug};

use super::{instant, required_name, HttpResult};
use crate::dto::{CreateServiceToken, ListDto, ListQuery, ServiceTokenDto};
use crate::error::{json, no_content, ApiError, Dialect};
use crate::routing::{authenticated, Authenticated, Body, Operation, Query, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;

/// What a create request's body asks for.
fn new_token(body: CreateServiceToken) -> Result<NewServiceToken, ApiError> {
    let workspaces = match body.workspaces {
        None => TokenWorkspaces::all(),
        Some(slugs) => {
            let slugs = slugs
                .iter()
                .map(|slug| {
                    WorkspaceSlug::parse(slug).map_err(|error| ApiError::validation(format!("workspaces: {error}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            TokenWorkspaces::only(slugs)?
        }
    };
    Ok(NewServiceToken {
        name: required_name(body.name.as_deref())?,
        role: body.role.as_deref().map(Role::parse).transpose()?.unwrap_or(Role::Admin),
        workspaces,
        expires_at: body.expires_at.as_deref().map(|text| instant("expires_at", text)).transpose()?,
    })
}

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let query = ListQuery::parse(input.query.as_deref())?;
    let listing = keys_service::workspaces::Listing::new(query.pagination, query.include_deleted);
    let page = state
        .service
        .list_service_tokens(caller, listing)
        .await
        .map_err(|error| ApiError::from_service(error, "", "organisation"))?;
    json(StatusCode::OK, &ListDto::<ServiceTokenDto>::from_page(page))
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let new = new_token(input.json()?)?;
    let issued = state
        .service
        .issue_service_token(caller, new)
        .await
        .map_err(|error| ApiError::from_service(error, "", "organisation"))?;
    let mut dto = ServiceTokenDto::from(&issued.record);
    dto.token = Some(issued.token.expose().to_owned());
    json(StatusCode::CREATED, &dto)
}

pub(crate) async fn revoke(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, id) = (call.state, call.caller, call.param(0));
    let target = format!("service token '{}'", super::echo(id));
    state.service.revoke_service_token(caller, id).await.map_err(|error| ApiError::from_service(error, "", &target))?;
    Ok(no_content())
}

/// `/v1/service_token/`.
const TOKENS: &[Operation] = &[
    Operation::list(
        "list-service-tokens",
        "List service tokens",
        authenticated!(ManageServiceTokens, list),
        schema::<ServiceTokenDto>(),
    )
    .describe("Masked (`masked_token`), newest first; revoked tokens only with `include_deleted=true`.")
    .query(Query::List)
    .refuses(&[]),
    Operation::post(
        "create-service-token",
        "Create service token",
        authenticated!(ManageServiceTokens, create),
        schema::<ServiceTokenDto>(),
    )
    .describe(
        "The response carries the `token`, shown this once. A token cannot be given a higher role or more \
         workspaces than the token creating it; an `admin` token reaches every workspace.",
    )
    .body(Body::Required(schema::<CreateServiceToken>()))
    .refuses(&[BAD_REQUEST])
    .hands_out_secret(),
];
/// `/v1/service_token/{service_token_id}/`.
const TOKEN: &[Operation] =
    &[Operation::delete("revoke-service-token", "Revoke service token", authenticated!(ManageServiceTokens, revoke))
        .describe(
            "Every replica refuses the token within a second. The organisation's last unexpired admin token cannot be \
     revoked (400): `keysd token create` on the database makes another.",
        )
        .refuses(&[BAD_REQUEST, NOT_FOUND])];

/// Dialect 1's service tokens.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/service_token/", Dialect::SuprSend, Tag::ServiceTokens, TOKENS),
    Route::new("/v1/service_token/{service_token_id}/", Dialect::SuprSend, Tag::ServiceTokens, TOKEN),
];
