//! Public keys (dialect 1): list, create, patch, rotate, delete.

use http::StatusCode;
use keys_core::{Description, DomainPattern, Name, PublicKeyId, PublicKeyPatch};
use keys_service::public_keys::NewPublicKey;

use super::{echo, path_id, required_name, Caller, HttpResult, Input};
use crate::dto::{CreateKey, ListDto, ListQuery, NoFields, PatchPublicKey, PublicKeyDto};
use crate::error::{json, no_content, ApiError};
use crate::server::AppState;

pub(crate) async fn list_public_keys(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let page = state
        .service
        .list_public_keys(caller, workspace, query.pagination, query.include_deleted)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::OK, &ListDto::<PublicKeyDto>::from_page(page))
}

pub(crate) async fn create_public_key(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let body: CreateKey = input.json()?;
    let new = NewPublicKey {
        name: required_name(body.name.as_deref())?,
        description: Description::parse(body.description.as_deref())?,
    };
    let key = state
        .service
        .create_public_key(caller, workspace, new)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::CREATED, &PublicKeyDto::from(&key))
}

/// Turns the wire patch into the domain patch, collecting every problem.
fn parse_patch(body: PatchPublicKey) -> Result<PublicKeyPatch, ApiError> {
    let mut problems = Vec::new();
    let mut patch = PublicKeyPatch::default();
    match body.name {
        None => {}
        Some(None) => problems.push("name may not be null".to_owned()),
        Some(Some(name)) => match Name::parse(&name) {
            Ok(name) => patch.name = Some(name),
            Err(error) => problems.push(error.to_string()),
        },
    }
    match body.is_secure_mode_enabled {
        None => {}
        Some(None) => problems.push("is_secure_mode_enabled may not be null".to_owned()),
        Some(Some(enabled)) => patch.is_secure_mode_enabled = Some(enabled),
    }
    if let Some(description) = body.description {
        match Description::parse(description.as_deref()) {
            Ok(description) => patch.description = Some(description),
            Err(error) => problems.push(error.to_string()),
        }
    }
    if let Some(domains) = body.allowed_domains {
        match domains {
            None => patch.allowed_domains = Some(None),
            Some(domains) => match DomainPattern::parse_list(domains.iter().map(String::as_str)) {
                Ok(domains) => patch.allowed_domains = Some(Some(domains)),
                Err(error) => problems.push(error.to_string()),
            },
        }
    }
    if problems.is_empty() {
        Ok(patch)
    } else {
        Err(ApiError::Validation(problems))
    }
}

fn target(id: &str) -> String {
    format!("public key '{}'", echo(id))
}

pub(crate) async fn patch_public_key(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    id: &str,
    input: &Input,
) -> HttpResult {
    let patch = parse_patch(input.json()?)?;
    let target = target(id);
    let id = path_id(state, caller, workspace, PublicKeyId::parse(id), &target).await?;
    let key = state
        .service
        .patch_public_key(caller, workspace, &id, patch)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, &target))?;
    json(StatusCode::ACCEPTED, &PublicKeyDto::from(&key))
}

pub(crate) async fn rotate_public_key(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    id: &str,
    input: &Input,
) -> HttpResult {
    let NoFields {} = input.optional_json()?;
    let target = target(id);
    let id = path_id(state, caller, workspace, PublicKeyId::parse(id), &target).await?;
    let key = state
        .service
        .rotate_public_key(caller, workspace, &id)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, &target))?;
    json(StatusCode::ACCEPTED, &PublicKeyDto::from(&key))
}

pub(crate) async fn delete_public_key(state: &AppState, caller: &Caller, workspace: &str, id: &str) -> HttpResult {
    let target = target(id);
    let id = path_id(state, caller, workspace, PublicKeyId::parse(id), &target).await?;
    state
        .service
        .delete_public_key(caller, workspace, &id)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}
