//! Organisation signing keys (dialect 2, Versori-compatible, under
//! `/api/organisations/v1`): list, create, delete, the public key lookup and
//! the organisation's JWKS.
//!
//! The `{organisation_id}` of a path must be the caller's own organisation;
//! any other is a 404, exactly like one that does not exist (decided in
//! keys-service by the caller's scope).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub(crate) mod cursor;

use http::StatusCode;
use keys_core::{CoreError, KeyPage, KeySlice, Name, OrganisationId, OrganisationKeyId, OrganisationSigningKey};

use self::cursor::{decode_cursor, encode_cursor};

use super::{echo, jwks_response, HttpResult, NOT_MODIFIED};
use crate::error::ApiError;
use crate::respond::{json, no_content, secret_json};
use crate::schema::name_schema;
use crate::wire::{format_timestamp, JwkSetDoc, Secret};

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

// ---------------------------------------------------------------- wire types

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganisationKey {
    #[schema(required = true, schema_with = name_schema)]
    pub name: Option<String>,
}

/// `{id, name, publicKey, createdAt}`, plus `privateKey` at creation only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = OrganisationKey)]
pub struct OrganisationKeyDto {
    pub id: String,
    pub name: String,
    #[schema(pattern = "^-----BEGIN PUBLIC KEY-----")]
    pub public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^-----BEGIN PRIVATE KEY-----")]
    pub private_key: Option<Secret>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// Its secret field is a [`Secret`].
impl zeroize::ZeroizeOnDrop for OrganisationKeyDto {}

impl From<&OrganisationSigningKey> for OrganisationKeyDto {
    fn from(key: &OrganisationSigningKey) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.as_str().to_owned(),
            public_key: key.public_key_pem.clone(),
            private_key: None,
            created_at: format_timestamp(key.created_at),
        }
    }
}

/// `{keys: [...], nextCursor}`: Versori's `{keys}` with one more field,
/// which clients that do not page ignore.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganisationKeyList {
    pub keys: Vec<OrganisationKeyDto>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl OrganisationKeyList {
    pub fn from_slice(slice: &KeySlice) -> Self {
        Self {
            keys: slice.keys.iter().map(OrganisationKeyDto::from).collect(),
            next_cursor: slice.next.as_ref().map(encode_cursor),
        }
    }
}

/// The query of the organisation-key list: `limit` (1–1000, default 100)
/// and `cursor` (from the previous page's `nextCursor`). Bad values are
/// refused, never clamped; other parameters are ignored.
pub fn key_page(query: Option<&str>) -> Result<KeyPage, ApiError> {
    let mut limit = KeyPage::DEFAULT_LIMIT;
    let mut after = None;
    let mut problems = Vec::new();
    for (key, value) in crate::query::pairs(query)? {
        match key.as_str() {
            "limit" => match value.parse::<u32>() {
                Ok(parsed) => limit = parsed,
                Err(_) => problems.push(CoreError::InvalidKeyPageLimit { max: KeyPage::MAX_LIMIT }.to_string()),
            },
            "cursor" => match decode_cursor(&value) {
                Some(position) => after = Some(position),
                None => problems.push("cursor must be a nextCursor this server returned".to_owned()),
            },
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    Ok(KeyPage::new(limit, after)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys_core::{KeyPosition, OrganisationKeyId};

    #[test]
    fn key_page_query_round_trips_cursors_and_refuses_bad_values() {
        assert_eq!(key_page(None).expect("default"), KeyPage::default());
        let position = KeyPosition {
            created_at: time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
            id: OrganisationKeyId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").expect("id"),
        };
        let cursor = cursor::encode_cursor(&position);
        let page = key_page(Some(&format!("limit=1000&cursor={cursor}"))).expect("valid");
        assert_eq!((page.limit(), page.after()), (1000, Some(&position)));
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "cursor=",
            "cursor=abc",
            "cursor=12-nope",
            "cursor=-01ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(key_page(Some(bad)).is_err(), "{bad}");
        }
    }
}
