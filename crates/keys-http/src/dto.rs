//! Wire types: the JSON that clients send and receive, with the seeds' field
//! names. Domain types carry no serde; they convert here, explicitly.
//!
//! Request bodies deny unknown fields, so a typo is a 400 instead of a
//! silently ignored setting. Responses that carry secret material (the API
//! key at creation, private keys at creation and roll) implement `Debug` by
//! hand without it.

use std::fmt;

use keys_core::{
    Actor, ApiKey, ApiKeyLifecycle, ApiKeyStatus, CoreError, GracePeriod, KeyPage, KeyPosition, KeySlice, Mode,
    OrganisationKeyId, OrganisationSigningKey, Page, Pagination, PublicKey, Role, ServiceTokenRecord, SigningKeyStatus,
    Workspace, WorkspaceSigningKey,
};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, RefOr, Schema, Type};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::schema::{
    description_schema, domain_pattern_schema, external_id_schema, name_schema, scopes_schema, string_enum,
};

/// RFC 3339 in UTC with exactly six fractional digits:
/// `2026-04-21T12:35:24.117631Z`.
pub fn format_timestamp(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.microsecond()
    )
}

fn timestamp_opt(at: Option<OffsetDateTime>) -> Option<String> {
    at.map(format_timestamp)
}

/// A secret or a private key on its way into a response: zeroed when
/// dropped (the DTOs that hold one therefore are too), serialised as the
/// string it is, never shown by `Debug`.
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    /// A zeroizing copy of `text` (one allocation of its exact size).
    pub fn new(text: &str) -> Self {
        Self(zeroize::Zeroizing::new(text.to_owned()))
    }
}

impl zeroize::ZeroizeOnDrop for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// `{name, email}` of a `*_by` field.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Actor)]
pub struct ActorDto {
    pub name: String,
    pub email: String,
}

fn actor(actor: &Option<Actor>) -> Option<ActorDto> {
    actor.as_ref().map(|actor| ActorDto { name: actor.name().to_owned(), email: actor.email().to_owned() })
}

/// `{"meta": {count, limit, offset}, "results": [...]}`.
#[derive(Debug, Serialize)]
pub struct ListDto<T> {
    pub meta: ListMeta,
    pub results: Vec<T>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListMeta {
    pub count: u64,
    pub limit: u32,
    pub offset: u64,
}

impl<T> ListDto<T> {
    pub fn from_page<D>(page: Page<D>) -> Self
    where
        T: for<'a> From<&'a D>,
    {
        Self {
            meta: ListMeta { count: page.total, limit: page.pagination.limit(), offset: page.pagination.offset() },
            results: page.items.iter().map(T::from).collect(),
        }
    }
}

// --------------------------------------------------------------------- audit

/// Who caused an audit event: the actor of its `*_by` fields and the
/// service token that acted (all null for the operator's CLI).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditActor)]
pub struct AuditActorDto {
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(pattern = "^st_")]
    pub token_id: Option<String>,
}

/// What an audit event happened to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditTarget)]
pub struct AuditTargetDto {
    /// `workspace`, `api_key`, `public_api_key`, `signing_api_key`,
    /// `organisation_key`, `service_token` or `organisation`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
}

/// One event of the audit trail (docs/API.md, Audit events); never a secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditEventDto {
    #[schema(pattern = "^evt_[0-9]+$")]
    pub id: String,
    pub at: String,
    #[schema(pattern = r"^[a-z_]+\.[a-z_]+$")]
    pub action: &'static str,
    pub actor: AuditActorDto,
    /// The workspace's slug, for what happened inside one.
    pub workspace: Option<String>,
    pub target: AuditTargetDto,
    pub request_id: Option<String>,
}

impl From<&keys_store::RecordedAuditEvent> for AuditEventDto {
    fn from(recorded: &keys_store::RecordedAuditEvent) -> Self {
        let event = &recorded.event;
        Self {
            id: format!("evt_{}", recorded.id),
            at: format_timestamp(event.at),
            action: event.action.as_str(),
            actor: AuditActorDto {
                name: event.actor.as_ref().map(|actor| actor.name().to_owned()),
                email: event.actor.as_ref().map(|actor| actor.email().to_owned()),
                token_id: event.token_id.as_ref().map(ToString::to_string),
            },
            workspace: recorded.workspace_slug.as_ref().map(|slug| slug.as_str().to_owned()),
            target: AuditTargetDto { kind: event.action.target_type(), id: event.target_id.clone() },
            request_id: event.request_id.as_ref().map(ToString::to_string),
        }
    }
}

/// `{limit, next_cursor}`: `next_cursor` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEventListMeta)]
pub struct AuditEventListMeta {
    pub limit: u32,
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/audit_event/`: `{"meta": {limit, next_cursor}, "results": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEventList)]
pub struct AuditEventListDto {
    pub meta: AuditEventListMeta,
    pub results: Vec<AuditEventDto>,
}

// ---------------------------------------------------------------- workspaces

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

// ------------------------------------------------------------ service tokens

/// A service token as lists show it (docs/API.md, Service tokens); `token` only in the
/// create response.
#[derive(Serialize, ToSchema)]
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
    #[schema(pattern = "^kst_")]
    pub token: Option<String>,
}

impl fmt::Debug for ServiceTokenDto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceTokenDto")
            .field("id", &self.id)
            .field("masked_token", &self.masked_token)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

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

// ------------------------------------------------------------------ api keys

#[derive(Serialize, ToSchema)]
#[schema(as = ApiKey)]
pub struct ApiKeyDto {
    #[schema(pattern = "^ws_apik_")]
    pub id: String,
    /// The first 10 characters of the secret and `*****`.
    #[schema(pattern = r"^SS\.")]
    pub masked_api_key: String,
    pub is_deleted: bool,
    pub name: String,
    pub description: Option<String>,
    pub allowed_domains: Vec<String>,
    #[schema(schema_with = api_key_status_schema)]
    pub status: &'static str,
    /// Authenticates strictly before this instant; null never expires.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    pub scopes: Vec<String>,
    /// The key's owner in the customer's system.
    pub external_id: Option<String>,
    /// Free-form JSON object (at most 4 KiB serialised).
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// May lag real use by up to a minute; never moves back.
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub updated_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub disabled_at: Option<String>,
    pub disabled_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub rolled_at: Option<String>,
    pub rolled_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub deleted_by: Option<ActorDto>,
    /// The secret: only in the create and roll responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = r"^SS\.")]
    pub api_key: Option<Secret>,
}

/// Its one secret field is a [`Secret`].
impl zeroize::ZeroizeOnDrop for ApiKeyDto {}

impl fmt::Debug for ApiKeyDto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyDto")
            .field("id", &self.id)
            .field("masked_api_key", &self.masked_api_key)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl From<&ApiKey> for ApiKeyDto {
    fn from(key: &ApiKey) -> Self {
        let (disabled, rolled) = match &key.lifecycle {
            ApiKeyLifecycle::Active => ((None, None), (None, None)),
            ApiKeyLifecycle::Disabled { at, by } => ((Some(*at), by.clone()), (None, None)),
            ApiKeyLifecycle::Rolled { at, by } => ((None, None), (Some(*at), by.clone())),
        };
        let deletion = key.deletion.as_ref();
        Self {
            id: key.id.to_string(),
            masked_api_key: key.masked_api_key.clone(),
            is_deleted: key.is_deleted(),
            name: key.name.as_str().to_owned(),
            description: key.description.as_ref().map(|description| description.as_str().to_owned()),
            allowed_domains: Vec::new(),
            status: key.status().as_str(),
            expires_at: timestamp_opt(key.expires_at),
            scopes: key.scopes.as_slice().iter().map(|scope| scope.as_str().to_owned()).collect(),
            external_id: key.external_id.as_ref().map(|id| id.as_str().to_owned()),
            meta: key.meta.as_ref().and_then(meta_object),
            last_used_at: timestamp_opt(key.last_used_at),
            created_at: format_timestamp(key.created_at),
            created_by: actor(&key.created_by),
            updated_at: format_timestamp(key.updated_at),
            updated_by: actor(&key.updated_by),
            disabled_at: timestamp_opt(disabled.0),
            disabled_by: actor(&disabled.1),
            rolled_at: timestamp_opt(rolled.0),
            rolled_by: actor(&rolled.1),
            deleted_at: timestamp_opt(deletion.map(|deletion| deletion.at)),
            deleted_by: actor(&deletion.and_then(|deletion| deletion.by.clone())),
            api_key: None,
        }
    }
}

/// A key's meta as the JSON object it is (keys-core keeps its text).
pub(crate) fn meta_object(meta: &keys_core::KeyMeta) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(meta.as_str()).ok()
}

/// `POST …/ws_api_key/`: `{name, description?, expires_at?, scopes?,
/// external_id?, meta?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyCreate)]
pub struct CreateApiKey {
    #[schema(required = true, schema_with = name_schema)]
    pub name: Option<String>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
    /// RFC 3339; must lie in the future.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// At most 64; each 1–64 characters of `a-z 0-9 : . _ -`, optionally
    /// ending in `:*`.
    #[schema(schema_with = scopes_schema)]
    pub scopes: Option<Vec<String>>,
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<String>,
    /// A JSON object of at most 4 KiB serialised.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<serde_json::Value>,
}

/// `PATCH …/ws_api_key/{id}/`: any of the fields; `null` clears the
/// nullable ones (and empties `scopes`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApiKeyPatch)]
pub struct PatchApiKey {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = name_schema)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = description_schema)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(format = DateTime)]
    pub expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = scopes_schema)]
    pub scopes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = external_id_schema)]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Option<serde_json::Value>>,
}

/// `{name, description?}` of API keys and public keys.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyCreate)]
pub struct CreateKey {
    #[schema(required = true, schema_with = name_schema)]
    pub name: Option<String>,
    #[schema(schema_with = description_schema)]
    pub description: Option<String>,
}

// --------------------------------------------------------------- public keys

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PublicKey)]
pub struct PublicKeyDto {
    #[schema(pattern = "^ws_pubk_")]
    pub id: String,
    #[schema(pattern = r"^SS\.PUBK\.")]
    pub api_key: String,
    pub name: String,
    pub description: Option<String>,
    pub allowed_domains: Option<Vec<String>>,
    pub is_secure_mode_enabled: bool,
    pub is_deleted: bool,
    pub is_default: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub rotated_at: Option<String>,
    pub rotated_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub updated_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub deleted_by: Option<ActorDto>,
}

impl From<&PublicKey> for PublicKeyDto {
    fn from(key: &PublicKey) -> Self {
        Self {
            id: key.id.to_string(),
            api_key: key.api_key.clone(),
            name: key.name.as_str().to_owned(),
            description: key.description.as_ref().map(|description| description.as_str().to_owned()),
            allowed_domains: key
                .allowed_domains
                .as_ref()
                .map(|domains| domains.iter().map(|domain| domain.as_str().to_owned()).collect()),
            is_secure_mode_enabled: key.is_secure_mode_enabled,
            is_deleted: key.is_deleted(),
            is_default: key.is_default,
            created_at: format_timestamp(key.created_at),
            created_by: actor(&key.created_by),
            rotated_at: timestamp_opt(key.rotated_at),
            rotated_by: actor(&key.rotated_by),
            updated_at: format_timestamp(key.updated_at),
            updated_by: actor(&key.updated_by),
            deleted_at: timestamp_opt(key.deleted_at),
            deleted_by: actor(&key.deleted_by),
        }
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A partial update of a public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PublicKeyPatch)]
pub struct PatchPublicKey {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = bool)]
    pub is_secure_mode_enabled: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = name_schema)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = description_schema)]
    pub description: Option<Option<String>>,
    /// Origins allowed to use the key (`null`: any). Each entry is a host
    /// (`app.example.com`), a wildcard over the subdomains of a registrable
    /// domain (`*.example.com`, not the apex; `*.com` or `*.co.uk` is
    /// refused), or either with a scheme and optional port
    /// (`https://app.example.com:8443`), which pins both.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = allowed_domains_schema)]
    pub allowed_domains: Option<Option<Vec<String>>>,
}

// -------------------------------------------------------------- signing keys

#[derive(Serialize, ToSchema)]
#[schema(as = SigningKey)]
pub struct SigningKeyDto {
    #[schema(pattern = "^ws_signk_")]
    pub id: String,
    #[schema(pattern = "^signing_key_")]
    pub uid: String,
    #[schema(schema_with = signing_key_status_schema)]
    pub status: &'static str,
    pub allowed_domains: Option<Vec<String>>,
    #[schema(format = DateTime)]
    pub expiry_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^-----BEGIN PRIVATE KEY-----")]
    pub private_key_pem: Option<Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub private_key_base64: Option<Secret>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub rolled_at: Option<String>,
    pub rolled_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    pub deleted_by: Option<ActorDto>,
}

/// Its secret fields are [`Secret`]s.
impl zeroize::ZeroizeOnDrop for SigningKeyDto {}

impl fmt::Debug for SigningKeyDto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyDto")
            .field("id", &self.id)
            .field("uid", &self.uid)
            .field("status", &self.status)
            .field("private_key_pem", &self.private_key_pem.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl From<&WorkspaceSigningKey> for SigningKeyDto {
    fn from(key: &WorkspaceSigningKey) -> Self {
        Self {
            id: key.id.to_string(),
            uid: key.uid.to_string(),
            status: key.status().as_str(),
            allowed_domains: key
                .allowed_domains
                .as_ref()
                .map(|domains| domains.iter().map(|domain| domain.as_str().to_owned()).collect()),
            expiry_at: timestamp_opt(key.expiry_at()),
            private_key_pem: None,
            private_key_base64: None,
            created_at: format_timestamp(key.created_at),
            created_by: actor(&key.created_by),
            rolled_at: timestamp_opt(key.rolled_at()),
            rolled_by: actor(&key.rolled_by().cloned()),
            deleted_at: timestamp_opt(key.deleted_at()),
            deleted_by: actor(&key.deleted_by().cloned()),
        }
    }
}

/// The body of a signing-key create or a public-key rotate: nothing.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Empty)]
pub struct NoFields {}

/// The optional body of a roll (of a signing key or an API key).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SigningKeyRoll)]
pub struct RollSigningKey {
    /// Any JSON value, so that one of another type, out of range or with a
    /// fraction is refused with the field's own message (docs/API.md, Shared HTTP behaviour),
    /// not serde's.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 2592000)]
    grace_period_seconds: Option<serde_json::Value>,
}

impl RollSigningKey {
    /// The grace asked for: absent or null is none; a whole number of
    /// seconds (`60.0` is 60) from 0 to the most keys-core allows.
    pub fn grace(&self) -> Result<Option<GracePeriod>, ApiError> {
        let number = match &self.grace_period_seconds {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::Number(number)) => Some(number),
            Some(_) => None,
        };
        let whole = |seconds: &f64| seconds.fract() == 0.0 && (0.0..=GracePeriod::MAX_SECONDS as f64).contains(seconds);
        // In range, the float is exact: a whole number below 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let seconds = number
            .and_then(|number| number.as_u64().or_else(|| number.as_f64().filter(whole).map(|seconds| seconds as u64)));
        let invalid = CoreError::InvalidGracePeriod { max: GracePeriod::MAX_SECONDS };
        Ok(Some(GracePeriod::from_seconds(seconds.ok_or(invalid)?)?))
    }
}

// ------------------------------------------------- organisation keys (Versori)

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganisationKey {
    #[schema(required = true, schema_with = name_schema)]
    pub name: Option<String>,
}

/// `{id, name, publicKey, createdAt}`, plus `privateKey` at creation only.
#[derive(Serialize, ToSchema)]
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

impl fmt::Debug for OrganisationKeyDto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrganisationKeyDto")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("private_key", &self.private_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

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

/// The pattern of a `cursor`: what [`encode_cursor`] writes, and every
/// text of that form names a position, so the document and the parser agree.
pub const CURSOR_PATTERN: &str = "^[0-9]{1,17}-[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

/// The `cursor` of a position: `<created_at in unix microseconds>-<key
/// id>`. Documented as opaque: clients pass it back as they got it.
pub fn encode_cursor(position: &KeyPosition) -> String {
    let micros = position.created_at.unix_timestamp_nanos() / 1_000;
    format!("{micros}-{}", position.id)
}

/// The position a cursor names, if it is of [`CURSOR_PATTERN`]'s form.
fn decode_cursor(cursor: &str) -> Option<KeyPosition> {
    let (micros, id) = cursor.split_once('-')?;
    if micros.is_empty() || micros.len() > 17 || !micros.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let micros: i128 = micros.parse().ok()?;
    let created_at = OffsetDateTime::from_unix_timestamp_nanos(micros.checked_mul(1_000)?).ok()?;
    Some(KeyPosition { created_at, id: OrganisationKeyId::parse(id).ok()? })
}

/// The query of the organisation-key list: `limit` (1–1000, default 100)
/// and `cursor` (from the previous page's `nextCursor`). Bad values are
/// refused, never clamped; other parameters are ignored.
pub fn key_page(query: Option<&str>) -> Result<KeyPage, ApiError> {
    let mut limit = KeyPage::DEFAULT_LIMIT;
    let mut after = None;
    let mut problems = Vec::new();
    for (key, value) in query_pairs(query)? {
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

// --------------------------------------------------------------------- query

/// The list query: `limit`, `offset`, `include_deleted`. Out-of-range or
/// non-numeric values are refused, never clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    pub pagination: Pagination,
    pub include_deleted: bool,
}

impl ListQuery {
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut limit = None;
        let mut offset = None;
        let mut include_deleted = false;
        let mut problems = Vec::new();
        for (key, value) in query_pairs(query)? {
            match key.as_str() {
                "limit" => match value.parse::<u32>() {
                    Ok(parsed) => limit = Some(parsed),
                    Err(_) => problems.push(CoreError::InvalidLimit.to_string()),
                },
                "offset" => match value.parse::<u64>() {
                    Ok(parsed) => offset = Some(parsed),
                    Err(_) => problems.push(CoreError::InvalidOffset.to_string()),
                },
                "include_deleted" => match value.as_str() {
                    "true" => include_deleted = true,
                    "false" => include_deleted = false,
                    _ => problems.push("include_deleted must be true or false".to_owned()),
                },
                // Other parameters (cache busters, tracing) are ignored.
                _ => {}
            }
        }
        if !problems.is_empty() {
            return Err(ApiError::Validation(problems));
        }
        let pagination = Pagination::new(limit.unwrap_or(Pagination::DEFAULT_LIMIT), offset.unwrap_or(0))?;
        Ok(Self { pagination, include_deleted })
    }
}

/// The `name=value` pairs of a query, names and values percent-decoded. A
/// name given twice (`?limit=1&limit=100`, or `?limit=1&l%69mit=100`) is a
/// 400: which one counts would be a guess, and a proxy or a log may have
/// read the other.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if !names.insert(name.clone()) {
            let shown: String = name.chars().take(64).collect();
            return Err(ApiError::validation(format!("query parameter {shown:?} is given more than once")));
        }
        pairs.push((name, percent_decode(value)));
    }
    Ok(pairs)
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).ok();
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        index += 3;
                    }
                    None => {
                        out.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_six_fractional_digits() {
        let at = time::macros::datetime!(2026-04-21 12:35:24.117631 UTC);
        assert_eq!(format_timestamp(at), "2026-04-21T12:35:24.117631Z");
        let whole = time::macros::datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(format_timestamp(whole), "2026-01-02T01:04:05.000000Z");
    }

    #[test]
    fn list_query_validates_without_clamping() {
        let default = ListQuery::parse(None).expect("default");
        assert_eq!(default.pagination, Pagination::default());
        assert!(!default.include_deleted);
        let explicit = ListQuery::parse(Some("limit=100&offset=5&include_deleted=true")).expect("valid");
        assert_eq!((explicit.pagination.limit(), explicit.pagination.offset()), (100, 5));
        assert!(explicit.include_deleted);
        for bad in ["limit=0", "limit=101", "limit=abc", "offset=-1", "offset=x", "include_deleted=yes", "limit="] {
            assert!(ListQuery::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_page_query_round_trips_cursors_and_refuses_bad_values() {
        assert_eq!(key_page(None).expect("default"), KeyPage::default());
        let position = KeyPosition {
            created_at: time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
            id: OrganisationKeyId::parse("01ARZ3NDEKTSV4RRFFQ69G5FAV").expect("id"),
        };
        let cursor = encode_cursor(&position);
        assert_eq!(cursor, "1776774924117631-01ARZ3NDEKTSV4RRFFQ69G5FAV");
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

    /// Compiles only while every secret-bearing DTO (and [`Secret`]) is
    /// zeroized on drop.
    fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}

    #[test]
    fn secret_bearing_dtos_are_zeroized_on_drop() {
        zeroized_on_drop::<Secret>();
        zeroized_on_drop::<ApiKeyDto>();
        zeroized_on_drop::<SigningKeyDto>();
        zeroized_on_drop::<OrganisationKeyDto>();
        let secret = Secret::new("SS.abc");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&secret).expect("json"), r#""SS.abc""#);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

// ------------------------------------------------------ schemas of fields

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

/// `allowed_domains` of a public-key patch: null (any origin) or at most
/// `DomainPattern::MAX_PER_KEY` patterns.
pub(crate) fn allowed_domains_schema() -> impl Into<RefOr<Schema>> {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(domain_pattern_schema())
        .max_items(Some(keys_core::DomainPattern::MAX_PER_KEY))
}

/// `status` of a workspace signing key.
pub(crate) fn api_key_status_schema() -> impl Into<RefOr<Schema>> {
    string_enum(ApiKeyStatus::ALL.map(ApiKeyStatus::as_str), "`active`, `disabled` or `rolled`.")
}

pub(crate) fn signing_key_status_schema() -> impl Into<RefOr<Schema>> {
    string_enum([SigningKeyStatus::Active.as_str(), SigningKeyStatus::Rolled.as_str()], "The key's state.")
}

// ------------------------------------------------------ documentation types

// The types below only describe JSON that is written elsewhere: the
// verification handlers read their body as a JSON object, keys-crypto
// writes the JWKS, and the operational endpoints answer with `json!`. The
// handler tests validate every response against these schemas.

/// `{"status": "ok"}` (or `"ready"`).
#[derive(ToSchema)]
#[schema(as = Status)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct StatusDoc {
    status: String,
}

/// One JSON Web Key (RFC 7517) of a JWKS.
#[derive(ToSchema)]
#[schema(as = Jwk)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct JwkDoc {
    /// `EC` (workspace keys) or `RSA` (organisation keys).
    kty: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    key_use: Option<String>,
    /// The signing key's uid (workspace) or id (organisation).
    kid: Option<String>,
    /// `ES256` or `RS256`.
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// A JWK Set (RFC 7517): `{"keys": [...]}`.
#[derive(ToSchema)]
#[schema(as = JwkSet)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct JwkSetDoc {
    keys: Vec<JwkDoc>,
}

/// `POST /v1/verify/api_key/`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct VerifyApiKeyRequest {
    /// The `SS.…` secret to verify, a string: any other value is
    /// `valid:false`, `malformed` (garbage is never a 400).
    #[schema(value_type = Value)]
    api_key: String,
    /// Scopes the key must hold (`keys:*` held covers `keys:read`
    /// required); one it lacks is `valid:false`, `insufficient_scope`. An
    /// array of strings: any other value is `valid:false`, `malformed`.
    #[schema(value_type = Option<Value>)]
    required_scopes: Option<Vec<String>>,
}

/// `POST /v1/verify/public_key/`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct VerifyPublicKeyRequest {
    /// The `SS.PUBK.…` key to verify, a string (any other value, here or
    /// in the optional fields, is `valid:false`, `malformed`).
    #[schema(value_type = Value)]
    api_key: String,
    /// The browser's origin (`scheme://host[:port]`) or a bare host.
    #[schema(value_type = Option<Value>)]
    origin: Option<String>,
    /// In secure mode: the ES256 user token signed by the workspace's key.
    #[schema(value_type = Option<Value>)]
    user_token: Option<String>,
    /// The tenant the user token must name (absent means `default`).
    #[schema(value_type = Option<Value>)]
    tenant_id: Option<String>,
}

/// `POST /v1/verify/jwt/`.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct VerifyJwtRequest {
    /// A Versori-style RS256 JWT (`iss` = `<issuer base>/sk/<KEY_ID>`), a
    /// string: any other value is `valid:false`, `malformed`.
    #[schema(value_type = Value)]
    token: String,
}
