//! Dialect 2: Versori-compatible organisation signing keys under
//! `/api/organisations/v1`.
//!
//! The `{organisation_id}` of a path must be the caller's own organisation;
//! any other is a 404, exactly like one that does not exist.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use keys_core::{Name, OrganisationId, OrganisationKeyId, OrganisationSigningKey};
use keys_crypto::jwt::Algorithm;
use keys_crypto::keypair::public_jwk_from_pem;
use keys_crypto::JwkSet;
use rand_core::OsRng;
use time::OffsetDateTime;

use super::{echo, Caller, Input};
use crate::dto::{CreateOrganisationKey, OrganisationKeyDto, OrganisationKeyList};
use crate::error::{json, no_content, ApiError};
use crate::server::AppState;

type HttpResult = Result<Response<Full<Bytes>>, ApiError>;

fn organisation_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("organisation '{}' not found", echo(id)))
}

/// The path's organisation, which must be the caller's.
fn own_organisation(caller: &Caller, id: &str) -> Result<(), ApiError> {
    if caller.organisation_id.as_str() == id {
        Ok(())
    } else {
        Err(organisation_not_found(id))
    }
}

pub(crate) async fn list_keys(state: &AppState, caller: &Caller, organisation: &str) -> HttpResult {
    own_organisation(caller, organisation)?;
    let keys = state
        .store
        .list_organisation_keys(&caller.organisation_id)
        .await
        .map_err(|error| ApiError::from_store(error, "organisation"))?;
    json(StatusCode::OK, &OrganisationKeyList { keys: keys.iter().map(OrganisationKeyDto::from).collect() })
}

pub(crate) async fn create_key(
    state: &Arc<AppState>,
    caller: &Caller,
    organisation: &str,
    input: &Input,
) -> HttpResult {
    own_organisation(caller, organisation)?;
    let body: CreateOrganisationKey = input.json()?;
    let name = body.name.as_deref().ok_or_else(|| ApiError::validation("name is required"))?;
    let name = Name::parse(name)?;
    // RSA generation is slow: the pool has keys ready, and when it runs dry
    // `take` generates on this blocking thread instead of a runtime worker.
    let pool_state = Arc::clone(state);
    let pair = tokio::task::spawn_blocking(move || pool_state.rsa_pool.take())
        .await
        .map_err(|error| ApiError::internal("rsa key generation", &error))?;
    let now = OffsetDateTime::now_utc();
    let key = OrganisationSigningKey::create(
        OrganisationKeyId::generate(now, &mut OsRng),
        caller.organisation_id.clone(),
        name,
        pair.public_key_pem(),
        &caller.actor,
        now,
    );
    state.store.create_organisation_key(&key).await.map_err(|error| ApiError::from_store(error, "organisation"))?;
    let mut dto = OrganisationKeyDto::from(&key);
    dto.private_key = Some(pair.private_key_pem().as_str().to_owned());
    json(StatusCode::CREATED, &dto)
}

pub(crate) async fn delete_key(state: &AppState, caller: &Caller, organisation: &str, key_id: &str) -> HttpResult {
    own_organisation(caller, organisation)?;
    let target = format!("key '{}'", echo(key_id));
    let id = OrganisationKeyId::parse(key_id).map_err(|_| ApiError::NotFound(format!("{target} not found")))?;
    state
        .store
        .delete_organisation_key(&caller.organisation_id, &id, &caller.actor, OffsetDateTime::now_utc())
        .await
        .map_err(|error| ApiError::from_store(error, &target))?;
    Ok(no_content())
}

/// `GET /keys/{key_id}`: public, for verifiers; deleted keys are gone.
pub(crate) async fn public_key(state: &Arc<AppState>, key_id: &str) -> HttpResult {
    let not_found = || ApiError::NotFound(format!("key '{}' not found", echo(key_id)));
    let id = OrganisationKeyId::parse(key_id).map_err(|_| not_found())?;
    let key = state
        .store
        .organisation_key(&id)
        .await
        .map_err(|error| ApiError::from_store(error, "key"))?
        .filter(|key| !key.is_deleted())
        .ok_or_else(not_found)?;
    json(StatusCode::OK, &OrganisationKeyDto::from(&key))
}

/// `GET /organisations/{organisation_id}/jwks.json`: public, the live keys
/// as RS256 JWKs with `kid` = key id.
pub(crate) async fn organisation_jwks(state: &Arc<AppState>, organisation: &str) -> HttpResult {
    let id = OrganisationId::parse(organisation).map_err(|_| organisation_not_found(organisation))?;
    state
        .store
        .organisation(&id)
        .await
        .map_err(|error| ApiError::from_store(error, "organisation"))?
        .ok_or_else(|| organisation_not_found(organisation))?;
    let keys =
        state.store.list_organisation_keys(&id).await.map_err(|error| ApiError::from_store(error, "organisation"))?;
    let mut set = JwkSet::default();
    // `list_organisation_keys` returns live keys only.
    for key in &keys {
        match public_jwk_from_pem(Algorithm::Rs256, &key.public_key_pem, key.id.as_str()) {
            Ok(jwk) => set.keys.push(jwk),
            Err(error) => tracing::error!(key_id = %key.id, error = %error, "stored organisation key does not parse"),
        }
    }
    let mut response = json(StatusCode::OK, &set)?;
    response.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("public, max-age=60"));
    Ok(response)
}
