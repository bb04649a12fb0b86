//! Service tokens (dialect 1; docs/API.md, Service tokens): list (masked), create (the
//! token is in that one response) and revoke. Only an `admin` token reaches
//! these routes (the table below says so); keys-core decides what a token
//! may hand on and that the last unexpired admin token stays.

use serde::{Deserialize, Serialize};
use utoipa::openapi::{RefOr, Schema};
use utoipa::ToSchema;

use http::StatusCode;
use keys_core::{NewServiceToken, Role, ServiceTokenRecord, TokenWorkspaces, WorkspaceSlug};

use super::{instant, required_name, HttpResult};
use crate::error::{ApiError, Dialect};
use crate::query::ListQuery;
use crate::respond::{json, no_content, secret_json};
use crate::routing::{authenticated, Authenticated, Body, Operation, Query, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;
use crate::schema::string_enum;
use crate::wire::{actor, format_timestamp, timestamp_opt, ActorDto, ListDto, Secret};

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
    dto.token = Some(Secret::new(issued.token.expose()));
    secret_json(StatusCode::CREATED, &dto)
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

// ---------------------------------------------------------------- wire types

/// A service token as lists show it (docs/API.md, Service tokens); `token` only in the
/// create response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ServiceToken)]
pub struct ServiceTokenDto {
    #[schema(pattern = "^st_")]
    pub id: String,
    pub name: String,
    #[schema(schema_with = role_schema)]
    pub role: &'static str,
    /// The workspaces (slugs) the token is limited to; null reaches all.
    pub workspaces: Option<Vec<String>>,
    /// The first 10 characters of the token and `*****`.
    #[schema(pattern = "^kst_")]
    pub masked_token: String,
    /// Authenticates strictly before this instant; null never expires.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    /// May lag real use by up to a minute; never moves back.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    pub revoked_by: Option<ActorDto>,
    /// The token: only in the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^kst_")]
    pub token: Option<Secret>,
}

/// Its secret field is a [`Secret`].
impl zeroize::ZeroizeOnDrop for ServiceTokenDto {}

impl From<&ServiceTokenRecord> for ServiceTokenDto {
    fn from(token: &ServiceTokenRecord) -> Self {
        Self {
            id: token.id.to_string(),
            name: token.name.as_str().to_owned(),
            role: token.role.as_str(),
            workspaces: token
                .workspaces
                .slugs()
                .map(|slugs| slugs.iter().map(|slug| slug.as_str().to_owned()).collect()),
            masked_token: token.masked_token.clone(),
            expires_at: timestamp_opt(token.expires_at),
            created_at: format_timestamp(token.created_at),
            created_by: actor(&token.created_by),
            last_used_at: timestamp_opt(token.last_used_at),
            revoked_at: timestamp_opt(token.revoked_at),
            revoked_by: actor(&token.revoked_by),
            token: None,
        }
    }
}

/// `POST /v1/service_token/`: `{name, role?, workspaces?, expires_at?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ServiceTokenCreate)]
pub struct CreateServiceToken {
    #[schema(required = true, value_type = String, min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Default `admin`.
    #[schema(schema_with = optional_role_schema)]
    pub role: Option<String>,
    /// Slugs of existing workspaces (1–100) the token is limited to; null or
    /// absent reaches all. Not for `admin` tokens.
    #[schema(min_items = 1, max_items = 100)]
    pub workspaces: Option<Vec<String>>,
    /// RFC 3339; must lie in the future.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

pub(crate) fn role_schema() -> impl Into<RefOr<Schema>> {
    string_enum(Role::ALL.map(Role::as_str), "`admin`, `manage` or `verify`.")
}

fn optional_role_schema() -> impl Into<RefOr<Schema>> {
    string_enum(Role::ALL.map(Role::as_str), "`admin` (the default), `manage` or `verify`.")
}
