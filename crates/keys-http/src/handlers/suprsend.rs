//! Dialect 1: the SuprSend-compatible management API under `/v1/`.
//!
//! Workspaces are addressed by slug inside the caller's organisation; a
//! workspace (or key) of another organisation is indistinguishable from one
//! that does not exist (404).

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use keys_core::{
    ApiKey, ApiKeyId, Description, DomainPattern, GracePeriod, Mode, Name, NewSigningKey, NewWorkspace, PublicKeyId,
    PublicKeyPatch, SigningKeyId, SigningKeyRing, SigningKeyUid, Workspace, WorkspaceSlug, WorkspaceUid,
};
use keys_crypto::jwt::Algorithm;
use keys_crypto::keypair::public_jwk_from_pem;
use keys_crypto::{ApiKeySecret, EcKeyPair, JwkSet, PublicKeyValue};
use keys_store::PublicKeyChange;
use rand_core::OsRng;
use time::OffsetDateTime;

use super::{echo, Caller, Input};
use crate::dto::{
    ApiKeyDto, CreateKey, CreateWorkspace, ListDto, ListQuery, NoFields, PatchPublicKey, PublicKeyDto, RollSigningKey,
    SigningKeyDto, WorkspaceDto,
};
use crate::error::{json, no_content, ApiError};
use crate::server::AppState;

type HttpResult = Result<Response<Full<Bytes>>, ApiError>;

/// The caller's workspace with this slug, or the seed's 404.
async fn workspace(state: &AppState, caller: &Caller, slug: &str) -> Result<Workspace, ApiError> {
    let not_found = || ApiError::NotFound(format!("workspace '{}' not found", echo(slug)));
    if WorkspaceSlug::parse(slug).is_err() {
        return Err(not_found());
    }
    state
        .store
        .workspace_by_slug(&caller.organisation_id, slug)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?
        .ok_or_else(not_found)
}

/// A required name: absent, blank or too long is a 400.
fn required_name(name: Option<&str>) -> Result<Name, ApiError> {
    let name = name.ok_or_else(|| ApiError::validation("name is required"))?;
    Ok(Name::parse(name)?)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// ---------------------------------------------------------------- workspaces

pub(crate) async fn list_workspaces(state: &AppState, caller: &Caller, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let page = state
        .store
        .list_workspaces(&caller.organisation_id, query.pagination)
        .await
        .map_err(|error| ApiError::from_store(error, "organisation"))?;
    json(StatusCode::OK, &ListDto::<WorkspaceDto>::from_page(page))
}

pub(crate) async fn create_workspace(state: &AppState, caller: &Caller, input: &Input) -> HttpResult {
    let body: CreateWorkspace = input.json()?;
    let name = required_name(body.name.as_deref())?;
    let slug = body.slug.as_deref().map(WorkspaceSlug::parse).transpose()?;
    let description = Description::parse(body.description.as_deref())?;
    let mode = body.mode.as_deref().map(Mode::parse).transpose()?;
    let new = NewWorkspace { name, slug, description, mode };
    let workspace = Workspace::create(caller.organisation_id.clone(), new, Some(&caller.actor), now(), &mut OsRng)?;
    state.store.create_workspace(&workspace).await.map_err(|error| ApiError::from_store(error, "organisation"))?;
    json(StatusCode::CREATED, &WorkspaceDto::from(&workspace))
}

/// `GET /v1/workspace/{workspace_uid}/jwks.json`: public, the keys that
/// verify now (active, and rolled before their `expiry_at`).
pub(crate) async fn workspace_jwks(state: &Arc<AppState>, uid: &str) -> HttpResult {
    let not_found = || ApiError::NotFound(format!("workspace '{}' not found", echo(uid)));
    let uid = WorkspaceUid::parse(uid).map_err(|_| not_found())?;
    let workspace = state
        .store
        .workspace_by_uid(&uid)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?
        .ok_or_else(not_found)?;
    let keys = state
        .store
        .live_signing_keys(&workspace.uid)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?;
    let ring = SigningKeyRing::restore(workspace.uid.clone(), keys);
    let now = now();
    let mut set = JwkSet::default();
    // The ring's rule (`verifies_at`) is the one decide_signing_key applies,
    // so the JWKS and the secure-mode check never disagree.
    for key in ring.verifying_at(now) {
        match public_jwk_from_pem(Algorithm::Es256, &key.public_key_pem, key.uid.as_str()) {
            Ok(jwk) => set.keys.push(jwk),
            Err(error) => tracing::error!(kid = %key.uid, error = %error, "stored signing key does not parse"),
        }
    }
    let mut response = json(StatusCode::OK, &set)?;
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=60"));
    Ok(response)
}

// ------------------------------------------------------------------ api keys

pub(crate) async fn list_api_keys(state: &AppState, caller: &Caller, slug: &str, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let workspace = workspace(state, caller, slug).await?;
    let page = state
        .store
        .list_api_keys(&workspace.uid, query.pagination, query.include_deleted)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?;
    json(StatusCode::OK, &ListDto::<ApiKeyDto>::from_page(page))
}

pub(crate) async fn create_api_key(state: &AppState, caller: &Caller, slug: &str, input: &Input) -> HttpResult {
    let body: CreateKey = input.json()?;
    let name = required_name(body.name.as_deref())?;
    let description = Description::parse(body.description.as_deref())?;
    let workspace = workspace(state, caller, slug).await?;
    let now = now();
    let secret = ApiKeySecret::generate(&mut OsRng);
    let key = ApiKey::create(
        ApiKeyId::generate(now, &mut OsRng),
        workspace.uid.clone(),
        name,
        description,
        secret.digest(),
        secret.masked(),
        &caller.actor,
        now,
    );
    state.store.create_api_key(&key).await.map_err(|error| ApiError::from_store(error, "workspace"))?;
    let mut dto = ApiKeyDto::from(&key);
    dto.api_key = Some(secret.expose().to_owned());
    json(StatusCode::CREATED, &dto)
}

pub(crate) async fn delete_api_key(state: &AppState, caller: &Caller, slug: &str, id: &str) -> HttpResult {
    let workspace = workspace(state, caller, slug).await?;
    let target = format!("api key '{}'", echo(id));
    let id = ApiKeyId::parse(id).map_err(|_| ApiError::NotFound(format!("{target} not found")))?;
    state
        .store
        .delete_api_key(&workspace.uid, &id, &caller.actor, now())
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    Ok(no_content())
}

// --------------------------------------------------------------- public keys

pub(crate) async fn list_public_keys(state: &AppState, caller: &Caller, slug: &str, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let workspace = workspace(state, caller, slug).await?;
    let page = state
        .store
        .list_public_keys(&workspace.uid, query.pagination, query.include_deleted)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?;
    json(StatusCode::OK, &ListDto::<PublicKeyDto>::from_page(page))
}

pub(crate) async fn create_public_key(state: &AppState, caller: &Caller, slug: &str, input: &Input) -> HttpResult {
    let body: CreateKey = input.json()?;
    let name = required_name(body.name.as_deref())?;
    let description = Description::parse(body.description.as_deref())?;
    let workspace = workspace(state, caller, slug).await?;
    let now = now();
    let value = PublicKeyValue::generate(&mut OsRng);
    let key = state
        .store
        .create_public_key(
            &workspace.uid,
            PublicKeyId::generate(now, &mut OsRng),
            value.as_str().to_owned(),
            name,
            description,
            &caller.actor,
            now,
        )
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?;
    json(StatusCode::CREATED, &PublicKeyDto::from(&key))
}

fn public_key_id(id: &str) -> Result<(PublicKeyId, String), ApiError> {
    let target = format!("public key '{}'", echo(id));
    match PublicKeyId::parse(id) {
        Ok(id) => Ok((id, target)),
        Err(_) => Err(ApiError::NotFound(format!("{target} not found"))),
    }
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
    slug: &str,
    id: &str,
    input: &Input,
) -> HttpResult {
    let patch = parse_patch(input.json()?)?;
    let workspace = workspace(state, caller, slug).await?;
    let (id, target) = public_key_id(id)?;
    let key = state
        .store
        .change_public_key(&workspace.uid, &id, PublicKeyChange::Patch(patch), &caller.actor, now())
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    json(StatusCode::ACCEPTED, &PublicKeyDto::from(&key))
}

pub(crate) async fn rotate_public_key(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    id: &str,
    input: &Input,
) -> HttpResult {
    let NoFields {} = input.optional_json()?;
    let workspace = workspace(state, caller, slug).await?;
    let (id, target) = public_key_id(id)?;
    let value = PublicKeyValue::generate(&mut OsRng);
    let key = state
        .store
        .change_public_key(
            &workspace.uid,
            &id,
            PublicKeyChange::Rotate(value.as_str().to_owned()),
            &caller.actor,
            now(),
        )
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    json(StatusCode::ACCEPTED, &PublicKeyDto::from(&key))
}

pub(crate) async fn delete_public_key(state: &AppState, caller: &Caller, slug: &str, id: &str) -> HttpResult {
    let workspace = workspace(state, caller, slug).await?;
    let (id, target) = public_key_id(id)?;
    state
        .store
        .delete_public_key(&workspace.uid, &id, &caller.actor, now())
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    Ok(no_content())
}

// -------------------------------------------------------------- signing keys

pub(crate) async fn list_signing_keys(state: &AppState, caller: &Caller, slug: &str, input: &Input) -> HttpResult {
    let query = ListQuery::parse(input.query.as_deref())?;
    let workspace = workspace(state, caller, slug).await?;
    let page = state
        .store
        .list_signing_keys(&workspace.uid, query.pagination, query.include_deleted)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?;
    json(StatusCode::OK, &ListDto::<SigningKeyDto>::from_page(page))
}

/// A fresh P-256 key pair and the domain's view of it (public half only).
fn new_signing_key(now: OffsetDateTime) -> (EcKeyPair, NewSigningKey) {
    let pair = EcKeyPair::generate(&mut OsRng);
    let new = NewSigningKey {
        id: SigningKeyId::generate(now, &mut OsRng),
        uid: SigningKeyUid::generate(now, &mut OsRng),
        public_key_pem: pair.public_key_pem(),
    };
    (pair, new)
}

/// The create/roll response: the stored key plus, once, its private key.
fn with_private_key(key: &keys_core::WorkspaceSigningKey, pair: &EcKeyPair) -> SigningKeyDto {
    let mut dto = SigningKeyDto::from(key);
    dto.private_key_pem = Some(pair.private_key_pem().as_str().to_owned());
    dto.private_key_base64 = Some(pair.private_key_base64().as_str().to_owned());
    dto
}

pub(crate) async fn create_signing_key(state: &AppState, caller: &Caller, slug: &str, input: &Input) -> HttpResult {
    let NoFields {} = input.optional_json()?;
    let workspace = workspace(state, caller, slug).await?;
    let now = now();
    let (pair, new) = new_signing_key(now);
    let key = state
        .store
        .create_signing_key(&workspace.uid, new, &caller.actor, now)
        .await
        .map_err(|error| ApiError::from_store(error, "workspace"))?;
    json(StatusCode::CREATED, &with_private_key(&key, &pair))
}

fn signing_key_uid(uid: &str) -> Result<(SigningKeyUid, String), ApiError> {
    let target = format!("signing key '{}'", echo(uid));
    match SigningKeyUid::parse(uid) {
        Ok(uid) => Ok((uid, target)),
        Err(_) => Err(ApiError::NotFound(format!("{target} not found"))),
    }
}

pub(crate) async fn roll_signing_key(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    uid: &str,
    input: &Input,
) -> HttpResult {
    let body: RollSigningKey = input.optional_json()?;
    let grace = body.grace_period_seconds.map(GracePeriod::from_seconds).transpose()?;
    let workspace = workspace(state, caller, slug).await?;
    let (uid, target) = signing_key_uid(uid)?;
    let now = now();
    let (pair, new) = new_signing_key(now);
    let (_rolled, fresh) = state
        .store
        .roll_signing_key(&workspace.uid, &uid, grace, new, &caller.actor, now)
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    json(StatusCode::CREATED, &with_private_key(&fresh, &pair))
}

pub(crate) async fn delete_signing_key(state: &AppState, caller: &Caller, slug: &str, uid: &str) -> HttpResult {
    let workspace = workspace(state, caller, slug).await?;
    let (uid, target) = signing_key_uid(uid)?;
    state
        .store
        .delete_signing_key(&workspace.uid, &uid, &caller.actor, now())
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    Ok(no_content())
}
