//! The import of API keys made elsewhere (dialect 1):
//! `POST /v1/{workspace}/ws_api_key/import/` `{keys: [...]}`, 1 to 1,000
//! entries, each the plaintext `key` or its `sha256` plus the fields of a
//! create; 201 `{results: [key, …]}` (never a secret), all or nothing. This
//! route alone takes bodies up to 1 MiB.
//!
//! [`import_entry`] reads one entry in the same format for `keysd import`,
//! which reads NDJSON, one entry a line.

use http::StatusCode;
use keys_core::SecretDigest;
use keys_crypto::ImportedKeyText;
use keys_service::api_keys::{ImportEntry, ImportedSecret};
use keys_store::StoredDigests;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::api_keys::{profile, with_create_fields, ApiKeyDto, CreateApiKey};
use super::{in_workspace, HttpResult};
use crate::error::{ApiError, Dialect};
use crate::respond::json;
use crate::routing::{authenticated, Authenticated, Body, Operation, Route, Tag, BAD_REQUEST, CONFLICT, NOT_FOUND};
use crate::schema::schema;
use crate::schema::{description_schema, external_id_schema, name_schema, scopes_schema};
use crate::wire::Secret;

/// The most bytes of body the import takes: 1,000 entries of a 256-byte
/// key with a name, scopes and some meta each.
pub const IMPORT_BODY_LIMIT: usize = 1 << 20;

pub(crate) async fn import(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let body: ImportApiKeys = input.json()?;
    // How many entries a call takes is the use case's rule (it refuses an
    // empty or oversized batch); the body limit bounds what is parsed here.
    let entries = body
        .keys
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            entry.into_entry().map_err(|problem| ApiError::validation(format!("keys[{index}]{problem}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scope = in_workspace(state, caller, workspace).await?;
    let imported = scope.import_api_keys(entries, StoredDigests::Refuse).await;
    let imported = imported.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    // An imported key is unmetered: answered as a create answers one.
    let results = imported
        .imported
        .iter()
        .map(|key| {
            let mut dto = ApiKeyDto::from(key);
            dto.metered(None);
            dto
        })
        .collect();
    json(StatusCode::CREATED, &ImportedApiKeysDto { results })
}

/// One entry of an import, as `keysd import` reads it from a line of
/// NDJSON: the same format as an entry of the API's `keys`. The error says
/// what is wrong (`.key: …`, `: name is required`), never the key.
pub fn import_entry(line: &[u8]) -> Result<ImportEntry, String> {
    let entry: ImportEntryDto = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(line))
        .map_err(|error| {
            let path = error.path().to_string();
            let at = if path == "." { String::new() } else { format!(".{path}") };
            // serde's own words name the field and the expected type; a
            // string's value is never among them (`key` takes any string).
            format!("{at}: {}", error.inner())
        })?;
    entry.into_entry()
}

/// `/v1/{workspace}/ws_api_key/import/`.
const IMPORT: &[Operation] = &[Operation::post(
    "import-api-keys",
    "Import API keys",
    authenticated!(ManageKeys, import),
    schema::<ImportedApiKeysDto>(),
)
.describe(
    "Stores 1 to 1,000 keys made by another system, all or nothing; each verifies by its original text, \
             whatever its format. An entry gives the plaintext `key` (16-256 printable ASCII characters, hashed at \
             once and never stored or returned) or its `sha256` (64 hex digits), exactly one of them, and any field \
             of a create. A bad entry is a 400 naming it (`keys[3].key: …`); a key already stored, in any workspace, \
             is a 409 naming it. Bodies up to 1 MiB.",
)
.body(Body::Required(schema::<ImportApiKeys>()))
.refuses(&[BAD_REQUEST, NOT_FOUND, CONFLICT])
.takes_bodies_up_to(IMPORT_BODY_LIMIT)];

/// The import's route.
pub(crate) static ROUTES: &[Route] =
    &[Route::new("/v1/{workspace}/ws_api_key/import/", Dialect::SuprSend, Tag::ApiKeys, IMPORT)];

// ---------------------------------------------------------------- wire types

/// `POST …/ws_api_key/import/`: `{keys: [...]}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyImport)]
pub struct ImportApiKeys {
    #[schema(min_items = 1, max_items = 1000)]
    pub keys: Vec<ImportEntryDto>,
}

with_create_fields! {
    /// One key to import: exactly one of `key` and `sha256`, and the fields
    /// of a create.
    ImportEntryDto as ApiKeyImportEntry {
        /// The key's text: 16-256 printable ASCII characters. Hashed at once;
        /// never stored, logged or returned.
        #[schema(value_type = Option<String>, min_length = 16, max_length = 256, pattern = "^[!-~]+$")]
        key: Option<Secret>,
        /// The SHA-256 of the key's text, as 64 hex digits.
        #[schema(pattern = "^[0-9a-fA-F]{64}$")]
        sha256: Option<String>,
    }
}

impl ImportEntryDto {
    /// The entry the use case takes; an error is the problem, starting with
    /// the field's path within the entry (`.key: …`) or `: `.
    fn into_entry(self) -> Result<ImportEntry, String> {
        let Self { key, sha256, name, description, expires_at, scopes, external_id, meta } = self;
        let secret = match (key, sha256) {
            (Some(key), None) => ImportedSecret::Text(
                ImportedKeyText::parse(key.expose()).map_err(|rejection| format!(".key: {rejection}"))?,
            ),
            (None, Some(hex)) => ImportedSecret::Sha256(
                SecretDigest::from_hex(&hex).ok_or_else(|| ".sha256: must be 64 hex digits".to_owned())?,
            ),
            _ => return Err(": exactly one of key and sha256 is required".to_owned()),
        };
        let create =
            CreateApiKey { name, description, expires_at, scopes, external_id, meta, ratelimits: None, credits: None };
        let profile = profile(create).map_err(|error| format!(": {}", error.messages().join("; ")))?;
        Ok(ImportEntry { secret, profile })
    }
}

/// The answer of an import: the keys made, in the order of the entries.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKeyImportResult)]
pub struct ImportedApiKeysDto {
    pub results: Vec<ApiKeyDto>,
}
