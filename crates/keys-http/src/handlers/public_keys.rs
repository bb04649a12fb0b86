//! Public keys (dialect 1): list, create, patch, rotate, delete.

use http::StatusCode;
use keys_core::{Description, DomainPattern, Name, PublicKeyId, PublicKeyPatch};

use super::api_keys::new_key;
use super::{in_workspace, key_id, listing, Caller, HttpResult, Input};
use crate::dto::{ListDto, NoFields, PatchPublicKey, PublicKeyDto};
use crate::error::{json, no_content, ApiError};
use crate::state::AppState;

pub(crate) async fn list_public_keys(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let listing = listing(input)?;
    let page = in_workspace(state, caller, workspace).await?.list_public_keys(listing).await;
    let page = page.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::OK, &ListDto::<PublicKeyDto>::from_page(page))
}

pub(crate) async fn create_public_key(state: &AppState, caller: &Caller, workspace: &str, input: &Input) -> HttpResult {
    let key = in_workspace(state, caller, workspace).await?.create_public_key(new_key(input)?).await;
    json(
        StatusCode::CREATED,
        &PublicKeyDto::from(&key.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?),
    )
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

pub(crate) async fn patch_public_key(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    id: &str,
    input: &Input,
) -> HttpResult {
    let patch = parse_patch(input.json()?)?;
    let scope = in_workspace(state, caller, workspace).await?;
    let (id, target) = key_id(PublicKeyId::parse(id), "public key", id)?;
    let key = scope.patch_public_key(&id, patch).await;
    json(
        StatusCode::ACCEPTED,
        &PublicKeyDto::from(&key.map_err(|error| ApiError::from_service(error, workspace, &target))?),
    )
}

pub(crate) async fn rotate_public_key(
    state: &AppState,
    caller: &Caller,
    workspace: &str,
    id: &str,
    input: &Input,
) -> HttpResult {
    let NoFields {} = input.optional_json()?;
    let scope = in_workspace(state, caller, workspace).await?;
    let (id, target) = key_id(PublicKeyId::parse(id), "public key", id)?;
    let key = scope.rotate_public_key(&id).await;
    json(
        StatusCode::ACCEPTED,
        &PublicKeyDto::from(&key.map_err(|error| ApiError::from_service(error, workspace, &target))?),
    )
}

pub(crate) async fn delete_public_key(state: &AppState, caller: &Caller, workspace: &str, id: &str) -> HttpResult {
    let scope = in_workspace(state, caller, workspace).await?;
    let (id, target) = key_id(PublicKeyId::parse(id), "public key", id)?;
    scope.delete_public_key(&id).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}
