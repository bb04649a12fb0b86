//! Rows back into domain entities, once for both backends.
//!
//! Each backend says how to read one typed column of its row type
//! ([`RowExt`]); the decoders below then rebuild entities through their
//! `parse` constructors and `TryFrom`, so a value that would not pass the
//! domain's validation is reported as a database fault instead of being
//! smuggled into the domain.

use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyPrefix, ApiKeyProfile, Description, DomainPattern, ExternalId, KeyMeta, KeyScopes,
    Mode, Name, OnLeak, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey,
    OrganisationSigningKeyState, PublicKey, PublicKeyId, PublicKeyState, Role, SecretDigest, ServiceTokenId,
    ServiceTokenRecord, ServiceTokenState, SigningKeyId, SigningKeyUid, StoredApiKey, StoredSigningKey, StoredStamp,
    TokenWorkspaces, Workspace, WorkspaceSigningKey, WorkspaceSlug, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::error::{StoreError, StoreResult};

/// How a backend reads one column of its row type.
pub trait RowExt {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn optional_text(&self, column: &str) -> StoreResult<Option<String>>;
    fn time(&self, column: &str) -> StoreResult<OffsetDateTime>;
    fn optional_time(&self, column: &str) -> StoreResult<Option<OffsetDateTime>>;
    fn flag(&self, column: &str) -> StoreResult<bool>;
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
    /// `allowed_domains`: `None` for any origin, else the stored patterns.
    fn domains(&self, column: &str) -> StoreResult<Option<Vec<String>>>;
    fn integer(&self, column: &str) -> StoreResult<i64>;
    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>>;
}

/// A stored value the domain would not accept: the database was written by
/// something else than this crate, or by a buggy version of it.
pub fn corrupt(what: &str, column: &str) -> StoreError {
    StoreError::Inconsistent(format!("stored {what} in column '{column}' is not valid"))
}

/// A stored value through the domain's `parse`: a refusal is corruption.
pub fn parsed<T, E>(result: Result<T, E>, column: &str) -> StoreResult<T> {
    result.map_err(|_| corrupt("value", column))
}

/// An entity keys-core rebuilt from its row, or the inconsistency it found
/// (a row no transition writes is a fault, never a key that verifies).
fn checked<T>(restored: Result<T, keys_core::CoreError>) -> StoreResult<T> {
    restored.map_err(|error| StoreError::Inconsistent(error.to_string()))
}

/// The actor of the `{prefix}_name` and `{prefix}_email` columns.
pub fn actor(row: &impl RowExt, prefix: &str) -> StoreResult<Option<Actor>> {
    let name = row.optional_text(&format!("{prefix}_name"))?;
    let email = row.optional_text(&format!("{prefix}_email"))?;
    Ok(match (name, email) {
        (Some(name), Some(email)) => Some(Actor::new(name, email)),
        _ => None,
    })
}

/// The `{prefix}_at` and `{prefix}_by` columns.
fn stamp(row: &impl RowExt, prefix: &str) -> StoreResult<StoredStamp> {
    Ok((row.optional_time(&format!("{prefix}_at"))?, actor(row, &format!("{prefix}_by"))?))
}

fn name(row: &impl RowExt, column: &str) -> StoreResult<Name> {
    parsed(Name::restore(&row.text(column)?), column)
}

fn description(row: &impl RowExt, column: &str) -> StoreResult<Option<Description>> {
    let text = row.optional_text(column)?;
    parsed(Description::restore(text.as_deref()), column)
}

fn domains(row: &impl RowExt, column: &str) -> StoreResult<Option<Vec<DomainPattern>>> {
    let Some(patterns) = row.domains(column)? else { return Ok(None) };
    let list = patterns.iter().map(|pattern| DomainPattern::restore(pattern)).collect::<Result<Vec<_>, _>>();
    parsed(list, column).map(Some)
}

fn digest(row: &impl RowExt, column: &str) -> StoreResult<SecretDigest> {
    let bytes: [u8; 32] = row.bytes(column)?.try_into().map_err(|_| corrupt("digest", column))?;
    Ok(SecretDigest::from_bytes(bytes))
}

/// The total of a `COUNT(*)`.
pub fn count(row: &impl RowExt) -> StoreResult<u64> {
    u64::try_from(row.integer("total")?).map_err(|_| corrupt("count", "total"))
}

pub fn organisation(row: &impl RowExt) -> StoreResult<Organisation> {
    Ok(Organisation {
        id: parsed(OrganisationId::parse(&row.text("id")?), "id")?,
        name: name(row, "name")?,
        created_at: row.time("created_at")?,
    })
}

pub fn service_token(row: &impl RowExt) -> StoreResult<ServiceTokenRecord> {
    let workspaces = match row.domains("workspaces")? {
        None => TokenWorkspaces::all(),
        Some(slugs) => {
            let slugs = slugs.iter().map(|slug| WorkspaceSlug::parse(slug)).collect::<Result<Vec<_>, _>>();
            parsed(TokenWorkspaces::only(parsed(slugs, "workspaces")?), "workspaces")?
        }
    };
    Ok(ServiceTokenRecord::restore(ServiceTokenState {
        id: parsed(ServiceTokenId::parse(&row.text("id")?), "id")?,
        organisation_id: parsed(OrganisationId::parse(&row.text("organisation_id")?), "organisation_id")?,
        name: name(row, "name")?,
        digest: digest(row, "digest")?,
        masked_token: row.text("masked_token")?,
        role: parsed(Role::parse(&row.text("role")?), "role")?,
        workspaces,
        expires_at: row.optional_time("expires_at")?,
        actor: actor(row, "actor")?.ok_or_else(|| corrupt("actor", "actor_name"))?,
        created_at: row.time("created_at")?,
        created_by: actor(row, "created_by")?,
        last_used_at: row.optional_time("last_used_at")?,
        revoked_at: row.optional_time("revoked_at")?,
        revoked_by: actor(row, "revoked_by")?,
    }))
}

/// A workspace whose columns carry `prefix` (`""`, or `w_` in joins).
pub fn workspace(row: &impl RowExt, prefix: &str) -> StoreResult<Workspace> {
    let column = |name: &str| format!("{prefix}{name}");
    Ok(Workspace {
        uid: parsed(WorkspaceUid::parse(&row.text(&column("uid"))?), "uid")?,
        organisation_id: parsed(OrganisationId::parse(&row.text(&column("organisation_id"))?), "organisation_id")?,
        slug: parsed(WorkspaceSlug::parse(&row.text(&column("slug"))?), "slug")?,
        name: name(row, &column("name"))?,
        description: description(row, &column("description"))?,
        mode: parsed(Mode::parse(&row.text(&column("mode"))?), "mode")?,
        created_at: row.time(&column("created_at"))?,
        created_by: actor(row, &column("created_by"))?,
        api_key_prefix: parsed(
            row.optional_text(&column("api_key_prefix"))?.as_deref().map(ApiKeyPrefix::parse).transpose(),
            "api_key_prefix",
        )?,
        on_leak: parsed(OnLeak::parse(&row.text(&column("on_leak"))?), "on_leak")?,
    })
}

pub fn api_key(row: &impl RowExt) -> StoreResult<ApiKey> {
    let scopes = row.domains("scopes")?.unwrap_or_default();
    let external_id = row.optional_text("external_id")?;
    let meta = row.optional_text("meta")?;
    let profile = ApiKeyProfile {
        name: name(row, "name")?,
        description: description(row, "description")?,
        scopes: parsed(KeyScopes::parse(scopes.iter().map(String::as_str)), "scopes")?,
        external_id: parsed(external_id.as_deref().map(ExternalId::parse).transpose(), "external_id")?,
        meta: parsed(meta.as_deref().map(KeyMeta::parse).transpose(), "meta")?,
        expires_at: row.optional_time("expires_at")?,
    };
    let stored = StoredApiKey {
        id: parsed(ApiKeyId::parse(&row.text("id")?), "id")?,
        workspace: parsed(WorkspaceUid::parse(&row.text("workspace_uid")?), "workspace_uid")?,
        digest: digest(row, "digest")?,
        masked_api_key: row.text("masked_api_key")?,
        profile,
        status: row.text("status")?,
        disabled: stamp(row, "disabled")?,
        rolled: stamp(row, "rolled")?,
        deleted: stamp(row, "deleted")?,
        last_used_at: row.optional_time("last_used_at")?,
        created: (row.time("created_at")?, actor(row, "created_by")?),
        updated: (row.time("updated_at")?, actor(row, "updated_by")?),
    };
    checked(ApiKey::try_from(stored))
}

pub fn public_key(row: &impl RowExt) -> StoreResult<PublicKey> {
    checked(PublicKey::try_from(PublicKeyState {
        id: parsed(PublicKeyId::parse(&row.text("id")?), "id")?,
        workspace: parsed(WorkspaceUid::parse(&row.text("workspace_uid")?), "workspace_uid")?,
        api_key: row.text("value")?,
        name: name(row, "name")?,
        description: description(row, "description")?,
        allowed_domains: domains(row, "allowed_domains")?,
        is_secure_mode_enabled: row.flag("is_secure_mode_enabled")?,
        is_default: row.flag("is_default")?,
        created_at: row.time("created_at")?,
        created_by: actor(row, "created_by")?,
        rotated_at: row.optional_time("rotated_at")?,
        rotated_by: actor(row, "rotated_by")?,
        updated_at: row.time("updated_at")?,
        updated_by: actor(row, "updated_by")?,
        deleted_at: row.optional_time("deleted_at")?,
        deleted_by: actor(row, "deleted_by")?,
    }))
}

/// A signing key row, checked by keys-core's `TryFrom` (a rolled key without
/// its expiry, say, is an inconsistency, never a key that verifies).
pub fn signing_key(row: &impl RowExt) -> StoreResult<WorkspaceSigningKey> {
    let stored = StoredSigningKey {
        id: parsed(SigningKeyId::parse(&row.text("id")?), "id")?,
        uid: parsed(SigningKeyUid::parse(&row.text("uid")?), "uid")?,
        workspace: parsed(WorkspaceUid::parse(&row.text("workspace_uid")?), "workspace_uid")?,
        public_key_pem: row.text("public_key_pem")?,
        status: row.text("status")?,
        allowed_domains: domains(row, "allowed_domains")?,
        expiry_at: row.optional_time("expiry_at")?,
        created_at: row.time("created_at")?,
        created_by: actor(row, "created_by")?,
        rolled_at: row.optional_time("rolled_at")?,
        rolled_by: actor(row, "rolled_by")?,
        deleted_at: row.optional_time("deleted_at")?,
        deleted_by: actor(row, "deleted_by")?,
    };
    checked(WorkspaceSigningKey::try_from(stored))
}

pub fn organisation_key(row: &impl RowExt) -> StoreResult<OrganisationSigningKey> {
    checked(OrganisationSigningKey::try_from(OrganisationSigningKeyState {
        id: parsed(OrganisationKeyId::parse(&row.text("id")?), "id")?,
        organisation_id: parsed(OrganisationId::parse(&row.text("organisation_id")?), "organisation_id")?,
        name: name(row, "name")?,
        public_key_pem: row.text("public_key_pem")?,
        created_at: row.time("created_at")?,
        created_by: actor(row, "created_by")?,
        deleted_at: row.optional_time("deleted_at")?,
        deleted_by: actor(row, "deleted_by")?,
    }))
}
