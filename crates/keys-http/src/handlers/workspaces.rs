//! Workspaces (dialect 1): list, create, and the public JWKS of a workspace.
//!
//! Workspaces are addressed by slug inside the caller's organisation; a
//! workspace (or key) of another organisation is indistinguishable from one
//! that does not exist (404): keys-service resolves every slug within the
//! caller's scope.

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::ToSchema;

use http::StatusCode;
use keys_core::{
    ApiKeyPrefix, Description, Mode, Name, NewWorkspace, OnLeak, Workspace, WorkspacePatch, WorkspaceSlug, WorkspaceUid,
};

use super::organisation_keys::found_by_id;
use super::{jwks_response, required_name, HttpResult, NOT_MODIFIED};
use crate::error::ApiError;
use crate::error::Dialect;
use crate::query::ListQuery;
use crate::respond::json;
use crate::routing::{
    authenticated, public, Authenticated, Body, Operation, Public, Query, Route, Tag, BAD_REQUEST, NOT_FOUND,
};
use crate::schema::schema;
use crate::schema::{description_schema, name_schema, string_enum};
use crate::wire::{actor, format_timestamp, present, ActorDto, JwkSetDoc, ListDto};

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let query = ListQuery::parse(input.query.as_deref())?;
    let page = state
        .service
        .list_workspaces(caller, query.pagination)
        .await
        .map_err(|error| ApiError::from_service(error, "", "organisation"))?;
    json(StatusCode::OK, &ListDto::<WorkspaceDto>::from_page(page))
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let body: CreateWorkspace = input.json()?;
    let new = NewWorkspace {
        name: required_name(body.name.as_deref())?,
        slug: body.slug.as_deref().map(WorkspaceSlug::parse).transpose()?,
        description: Description::parse(body.description.as_deref())?,
        mode: body.mode.as_deref().map(Mode::parse).transpose()?,
    };
    let workspace = state
        .service
        .create_workspace(caller, new)
        .await
        .map_err(|error| ApiError::from_service(error, "", "organisation"))?;
    json(StatusCode::CREATED, &WorkspaceDto::from(&workspace))
}

/// `PATCH /v1/workspace/{slug}/`: name, description, API-key prefix, leak
/// policy (docs/API.md, Workspaces).
pub(crate) async fn patch(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, slug, input) = (call.state, call.caller, call.param(0), call.input);
    let body: PatchWorkspaceBody = input.json()?;
    let name = match body.name {
        None => None,
        Some(None) => return Err(ApiError::validation("name may not be null")),
        Some(Some(text)) => Some(Name::parse(&text)?),
    };
    let on_leak = match body.on_leak {
        None => None,
        Some(None) => return Err(ApiError::validation("on_leak may not be null")),
        Some(Some(text)) => Some(OnLeak::parse(&text)?),
    };
    let patch = WorkspacePatch {
        name,
        description: body.description.map(|text| Description::parse(text.as_deref())).transpose()?,
        api_key_prefix: body
            .api_key_prefix
            .map(|text| text.as_deref().map(ApiKeyPrefix::parse).transpose())
            .transpose()?,
        on_leak,
    };
    let workspace = state
        .service
        .patch_workspace(caller, slug, patch)
        .await
        .map_err(|error| ApiError::from_service(error, slug, "workspace"))?;
    json(StatusCode::OK, &WorkspaceDto::from(&workspace))
}

/// `GET /v1/workspace/{workspace_uid}/jwks.json`: public, the keys that
/// verify now (active, and rolled before their `expiry_at`).
pub(crate) async fn jwks(call: Public<'_>) -> HttpResult {
    let (state, uid, headers) = (call.state, call.param(0), &call.head.headers);
    let published = found_by_id(uid, "workspace", WorkspaceUid::parse, async |uid| {
        state.service.workspace_jwks_document(&uid).await.map_err(|error| ApiError::from_store(error, "workspace"))
    })
    .await?;
    jwks_response(&published, headers)
}

/// `/v1/workspace/`.
const WORKSPACES: &[Operation] = &[
    Operation::list(
        "list-workspaces",
        "List workspaces",
        authenticated!(ReadWorkspaces, list),
        schema::<WorkspaceDto>(),
    )
    .query(Query::Page)
    .refuses(&[]),
    Operation::post(
        "create-workspace",
        "Create workspace",
        authenticated!(ManageWorkspaces, create),
        schema::<WorkspaceDto>(),
    )
    .body(Body::Required(schema::<CreateWorkspace>()))
    .describe("A slug the organisation already has (given, or made from the name) is a 400.")
    .refuses(&[BAD_REQUEST]),
];
/// `/v1/workspace/{workspace}/`.
const WORKSPACE: &[Operation] = &[Operation::patch_answering(
    "update-workspace",
    "Update workspace",
    authenticated!(ManageWorkspaces, patch),
    schema::<WorkspaceDto>(),
)
.describe(
    "Any of `name`, `description`, `api_key_prefix` and `on_leak`; `null` clears the description and the prefix \
     (keys are then `SS.`…). A prefix applies to the API keys made afterwards: existing keys keep verifying. \
     Slug, uid and mode never change.",
)
.body(Body::Required(schema::<PatchWorkspaceBody>()))
.refuses(&[BAD_REQUEST, NOT_FOUND])];
/// `/v1/workspace/{workspace_uid}/jwks.json`.
const JWKS: &[Operation] =
    &[Operation::get("workspace-jwks", "Workspace JWKS (public)", public!(jwks), schema::<JwkSetDoc>())
        .describe(
            "The active signing key and the rolled ones still inside their grace, `kid` = uid. A strong `ETag`; \
             `If-None-Match` with it is a 304 without a body while the keys are unchanged.",
        )
        .refuses(&[NOT_MODIFIED, NOT_FOUND])];

/// Dialect 1's workspaces, and the public JWKS of each.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/workspace/", Dialect::SuprSend, Tag::Workspaces, WORKSPACES),
    Route::new("/v1/workspace/{workspace}/", Dialect::SuprSend, Tag::Workspaces, WORKSPACE),
    Route::new("/v1/workspace/{workspace_uid}/jwks.json", Dialect::SuprSend, Tag::SigningKeys, JWKS),
];

// ---------------------------------------------------------------- wire types

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Workspace)]
pub struct WorkspaceDto {
    #[schema(pattern = "^wksp_")]
    pub uid: String,
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    #[schema(schema_with = mode_schema)]
    pub mode: &'static str,
    /// The prefix of the workspace's new API keys (`<prefix>_…`); null:
    /// `SS.`.
    #[schema(pattern = r"^[a-z][a-z0-9]{1,15}_(live|test)$")]
    pub api_key_prefix: Option<String>,
    #[schema(schema_with = on_leak_schema)]
    pub on_leak: &'static str,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
}

impl From<&Workspace> for WorkspaceDto {
    fn from(workspace: &Workspace) -> Self {
        Self {
            uid: workspace.uid.to_string(),
            slug: workspace.slug.to_string(),
            name: workspace.name.as_str().to_owned(),
            description: workspace.description.as_ref().map(|description| description.as_str().to_owned()),
            mode: workspace.mode.as_str(),
            api_key_prefix: workspace.api_key_prefix.as_ref().map(|prefix| prefix.as_str().to_owned()),
            on_leak: workspace.on_leak.as_str(),
            created_at: format_timestamp(workspace.created_at),
            created_by: actor(&workspace.created_by),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkspaceCreate)]
pub struct CreateWorkspace {
    #[schema(required = true, schema_with = name_schema)]
    pub name: Option<String>,
    #[schema(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub slug: Option<String>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    /// `null` or absent is `sandbox` (SuprSend's clients may send `null`).
    #[schema(schema_with = optional_mode_schema)]
    pub mode: Option<String>,
}

/// `PATCH /v1/workspace/{slug}/`: any of the fields; `null` clears the
/// description and the prefix.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkspacePatch)]
pub struct PatchWorkspaceBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = name_schema)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = description_schema)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(pattern = r"^[a-z][a-z0-9]{1,15}_(live|test)$")]
    pub api_key_prefix: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = on_leak_schema)]
    pub on_leak: Option<Option<String>>,
}

/// `on_leak` of a workspace.
pub(crate) fn on_leak_schema() -> impl Into<RefOr<Schema>> {
    string_enum(
        [OnLeak::Disable.as_str(), OnLeak::Notify.as_str()],
        "What a leak report does to the workspace's key: `disable` it (the default) or only `notify`.",
    )
}

/// `mode` of a workspace.
pub(crate) fn mode_schema() -> impl Into<RefOr<Schema>> {
    string_enum([Mode::Sandbox.as_str(), Mode::Production.as_str()], "The workspace's mode.")
}

/// `mode` of a workspace create, optional: `null` is the default too.
pub(crate) fn optional_mode_schema() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([Some(Mode::Sandbox.as_str()), Some(Mode::Production.as_str()), None]))
        .description(Some("The workspace's mode; absent or null is `sandbox`."))
}
