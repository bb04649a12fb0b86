//! Organisation signing keys (dialect 2, Versori-compatible, under
//! `/api/organisations/v1`): list, create, delete, the public key lookup and
//! the organisation's JWKS.
//!
//! The `{organisation_id}` of a path must be the caller's own organisation;
//! any other is a 404, exactly like one that does not exist (decided in
//! keys-service by the caller's scope).

use http::StatusCode;
use keys_core::{Name, OrganisationId, OrganisationKeyId};

use super::{echo, jwks_response, HttpResult, NOT_MODIFIED};
use crate::dto::{key_page, CreateOrganisationKey, OrganisationKeyDto, OrganisationKeyList, Secret};
use crate::error::{json, no_content, secret_json, ApiError};

use crate::dto::JwkSetDoc;
use crate::error::Dialect;
use crate::routing::{authenticated, public, Authenticated, Body, Operation, Public, Query, Route, Tag, NOT_FOUND};
use crate::schema::schema;

fn organisation_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("organisation '{}' not found", echo(id)))
}

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, organisation) = (call.state, call.caller, call.param(0));
    let page = key_page(call.input.query.as_deref())?;
    let slice = state
        .service
        .organisation_keys_page(caller, organisation, &page)
        .await
        .map_err(|error| ApiError::from_service(error, organisation, "organisation"))?;
    json(StatusCode::OK, &OrganisationKeyList::from_slice(&slice))
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, organisation, input) = (call.state, call.caller, call.param(0), call.input);
    state.service.own_organisation(caller, organisation).map_err(|_| organisation_not_found(organisation))?;
    let body: CreateOrganisationKey = input.json()?;
    let name = body.name.as_deref().ok_or_else(|| ApiError::validation("name is required"))?;
    let name = Name::parse(name)?;
    let issued = state
        .service
        .create_organisation_key(caller, organisation, name)
        .await
        .map_err(|error| ApiError::from_service(error, organisation, "organisation"))?;
    let mut dto = OrganisationKeyDto::from(&issued.key);
    dto.private_key = Some(Secret::new(issued.pair.private_key_pem().as_str()));
    secret_json(StatusCode::CREATED, &dto)
}

pub(crate) async fn delete(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, organisation, key_id) = (call.state, call.caller, call.param(0), call.param(1));
    state.service.own_organisation(caller, organisation).map_err(|_| organisation_not_found(organisation))?;
    let target = format!("key '{}'", echo(key_id));
    let id = OrganisationKeyId::parse(key_id).map_err(|_| ApiError::NotFound(format!("{target} not found")))?;
    state
        .service
        .delete_organisation_key(caller, organisation, &id)
        .await
        .map_err(|error| ApiError::from_service(error, organisation, &target))?;
    Ok(no_content())
}

/// What a public lookup by an id from the path finds: an id that does not
/// parse and an id that finds nothing are both a 404 naming `kind` and the
/// id as given.
pub(crate) async fn found_by_id<Id, Invalid, Found>(
    text: &str,
    kind: &str,
    parse: impl FnOnce(&str) -> Result<Id, Invalid>,
    lookup: impl AsyncFnOnce(Id) -> Result<Option<Found>, ApiError>,
) -> Result<Found, ApiError> {
    let not_found = || ApiError::NotFound(format!("{kind} '{}' not found", echo(text)));
    let id = parse(text).map_err(|_| not_found())?;
    lookup(id).await?.ok_or_else(not_found)
}

/// `GET /keys/{key_id}`: public, for verifiers; deleted keys are gone.
pub(crate) async fn public_key(call: Public<'_>) -> HttpResult {
    let (state, key_id) = (call.state, call.param(0));
    let key = found_by_id(key_id, "key", OrganisationKeyId::parse, async |id| {
        state.service.public_organisation_key(&id).await.map_err(|error| ApiError::from_service(error, "", "key"))
    })
    .await?;
    json(StatusCode::OK, &OrganisationKeyDto::from(&key))
}

/// `GET /organisations/{organisation_id}/jwks.json`: public, the live keys
/// as RS256 JWKs with `kid` = key id.
pub(crate) async fn jwks(call: Public<'_>) -> HttpResult {
    let (state, organisation, headers) = (call.state, call.param(0), &call.head.headers);
    let id = OrganisationId::parse(organisation).map_err(|_| organisation_not_found(organisation))?;
    let published = state
        .service
        .organisation_jwks_document(&id)
        .await
        .map_err(|error| ApiError::from_store(error, "organisation"))?
        .ok_or_else(|| organisation_not_found(organisation))?;
    jwks_response(&published, headers)
}

/// `…/organisations/{organisation_id}/keys`.
const KEYS: &[Operation] = &[
    Operation::get(
        "ListSigningKeys",
        "List signing keys",
        authenticated!(ManageKeys, list),
        schema::<OrganisationKeyList>(),
    )
    .query(Query::Cursor)
    .describe(
        "Newest first, at most `limit` keys (default 100); `nextCursor` names the next page, null on the \
             last one. Clients that do not page get the newest 100.",
    ),
    Operation::post(
        "CreateSigningKey",
        "Create signing key",
        authenticated!(ManageKeys, create),
        schema::<OrganisationKeyDto>(),
    )
    .describe(
        "Answers 201 with the key and its `privateKey` (shown this once). Documented deviation: Versori's \
             document says 204, which cannot carry the body.",
    )
    .body(Body::Required(schema::<CreateOrganisationKey>()))
    .hands_out_secret(),
];
/// `…/organisations/{organisation_id}/keys/{key_id}`.
const KEY: &[Operation] =
    &[Operation::delete("DeleteSigningKey", "Delete signing key", authenticated!(ManageKeys, delete))
        .describe("Every JWT the key signed stops verifying.")];
/// `…/organisations/{organisation_id}/jwks.json`.
const JWKS: &[Operation] =
    &[Operation::get("OrganisationJwks", "Organisation JWKS (public)", public!(jwks), schema::<JwkSetDoc>())
        .describe(
            "The organisation's live keys as RS256 JWKs, `kid` = key id. A strong `ETag`; `If-None-Match` \
             with it is a 304 without a body while the keys are unchanged.",
        )
        .refuses(&[NOT_MODIFIED, NOT_FOUND])];
/// `/api/organisations/v1/keys/{key_id}`.
const PUBLIC_KEY: &[Operation] = &[Operation::get(
    "GetPublicKey",
    "Get a public key (public, for verifiers)",
    public!(public_key),
    schema::<OrganisationKeyDto>(),
)];

/// Dialect 2's organisation keys, their JWKS and the public key lookup.
pub(crate) static ROUTES: &[Route] = &[
    Route::new(
        "/api/organisations/v1/organisations/{organisation_id}/keys",
        Dialect::Versori,
        Tag::SigningKeysVersori,
        KEYS,
    ),
    Route::new(
        "/api/organisations/v1/organisations/{organisation_id}/keys/{key_id}",
        Dialect::Versori,
        Tag::SigningKeysVersori,
        KEY,
    ),
    Route::new(
        "/api/organisations/v1/organisations/{organisation_id}/jwks.json",
        Dialect::Versori,
        Tag::SigningKeysVersori,
        JWKS,
    ),
    Route::new("/api/organisations/v1/keys/{key_id}", Dialect::Versori, Tag::SigningKeysVersori, PUBLIC_KEY),
];
