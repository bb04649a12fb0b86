//! Workspaces and their API keys and public keys.

use std::ops::Deref;

use rand_core::RngCore;
use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{
    Actor, ApiKeyId, CoreError, Description, DomainPattern, Mode, Name, OrganisationId, PublicKeyId, SecretDigest,
    WorkspaceSlug, WorkspaceUid,
};

/// A workspace of an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub uid: WorkspaceUid,
    pub organisation_id: OrganisationId,
    pub slug: WorkspaceSlug,
    pub name: Name,
    pub description: Option<Description>,
    pub mode: Mode,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
}

/// What a client asks for when it creates a workspace, already parsed.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    pub name: Name,
    /// Absent: derived from the name.
    pub slug: Option<WorkspaceSlug>,
    pub description: Option<Description>,
    /// Absent: `sandbox`.
    pub mode: Option<Mode>,
}

impl Workspace {
    /// Creates a workspace. Slug uniqueness inside the organisation is the
    /// store's to enforce (a unique index), as it needs every other slug.
    pub fn create(
        organisation_id: OrganisationId,
        new: NewWorkspace,
        actor: Option<&Actor>,
        now: OffsetDateTime,
        rng: &mut impl RngCore,
    ) -> Result<Self, CoreError> {
        let slug = match new.slug {
            Some(slug) => slug,
            None => WorkspaceSlug::derive_from_name(&new.name)?,
        };
        Ok(Self {
            uid: WorkspaceUid::generate(now, rng),
            organisation_id,
            slug,
            name: new.name,
            description: new.description,
            mode: new.mode.unwrap_or(Mode::Sandbox),
            created_at: timestamp(now),
            created_by: actor.cloned(),
        })
    }
}

/// The stored fields of an API key: a digest and a masked prefix, never the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyState {
    pub id: ApiKeyId,
    pub workspace: WorkspaceUid,
    pub name: Name,
    pub description: Option<Description>,
    pub digest: SecretDigest,
    /// The first 10 characters of the secret and `*****`.
    pub masked_api_key: String,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub deleted_at: Option<OffsetDateTime>,
    pub deleted_by: Option<Actor>,
}

/// A server-side API key. Active until deleted; deleted is terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey(ApiKeyState);

impl ApiKey {
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        id: ApiKeyId,
        workspace: WorkspaceUid,
        name: Name,
        description: Option<Description>,
        digest: SecretDigest,
        masked_api_key: String,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Self {
        Self(ApiKeyState {
            id,
            workspace,
            name,
            description,
            digest,
            masked_api_key,
            created_at: timestamp(now),
            created_by: Some(actor.clone()),
            deleted_at: None,
            deleted_by: None,
        })
    }

    pub fn restore(state: ApiKeyState) -> Self {
        Self(state)
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deleted_at.is_some()
    }

    pub fn delete(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        if self.is_deleted() {
            return Err(CoreError::AlreadyDeleted { kind: "api key" });
        }
        self.0.deleted_at = Some(timestamp(now));
        self.0.deleted_by = Some(actor.clone());
        Ok(())
    }
}

impl Deref for ApiKey {
    type Target = ApiKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The fields of a publishable client key. Its value is not a secret: it is
/// shown in every response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyState {
    pub id: PublicKeyId,
    pub workspace: WorkspaceUid,
    /// `SS.PUBK.` + 43 characters.
    pub api_key: String,
    pub name: Name,
    pub description: Option<Description>,
    /// `None`: any origin.
    pub allowed_domains: Option<Vec<DomainPattern>>,
    pub is_secure_mode_enabled: bool,
    pub is_default: bool,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub rotated_at: Option<OffsetDateTime>,
    pub rotated_by: Option<Actor>,
    pub updated_at: OffsetDateTime,
    pub updated_by: Option<Actor>,
    pub deleted_at: Option<OffsetDateTime>,
    pub deleted_by: Option<Actor>,
}

/// A publishable client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(PublicKeyState);

/// A partial update of a public key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PublicKeyPatch {
    pub name: Option<Name>,
    pub description: Option<Option<Description>>,
    pub allowed_domains: Option<Option<Vec<DomainPattern>>>,
    pub is_secure_mode_enabled: Option<bool>,
}

impl PublicKey {
    pub fn restore(state: PublicKeyState) -> Self {
        Self(state)
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deleted_at.is_some()
    }

    fn ensure_live(&self) -> Result<(), CoreError> {
        if self.is_deleted() {
            return Err(CoreError::AlreadyDeleted { kind: "public key" });
        }
        Ok(())
    }

    /// Applies a patch. An empty patch still counts as an update.
    pub fn patch(&mut self, patch: PublicKeyPatch, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        self.ensure_live()?;
        if let Some(name) = patch.name {
            self.0.name = name;
        }
        if let Some(description) = patch.description {
            self.0.description = description;
        }
        if let Some(allowed_domains) = patch.allowed_domains {
            self.0.allowed_domains = allowed_domains;
        }
        if let Some(secure) = patch.is_secure_mode_enabled {
            self.0.is_secure_mode_enabled = secure;
        }
        self.0.updated_at = timestamp(now);
        self.0.updated_by = Some(actor.clone());
        Ok(())
    }

    /// Issues new material for the same record; the old value stops working
    /// at once because nothing keeps it.
    pub fn rotate(&mut self, new_value: String, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        self.ensure_live()?;
        let now = timestamp(now);
        self.0.api_key = new_value;
        self.0.rotated_at = Some(now);
        self.0.rotated_by = Some(actor.clone());
        self.0.updated_at = now;
        self.0.updated_by = Some(actor.clone());
        Ok(())
    }
}

impl Deref for PublicKey {
    type Target = PublicKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The live (not deleted) public keys of one workspace: the aggregate that
/// owns the default-key rules. The first public key of a workspace is its
/// default; the default cannot be deleted while other keys are live.
#[derive(Debug, Clone, Default)]
pub struct PublicKeyRing {
    keys: Vec<PublicKey>,
}

impl PublicKeyRing {
    /// Rebuilds the ring from the workspace's live keys; deleted keys passed
    /// in are ignored.
    pub fn restore(keys: Vec<PublicKey>) -> Self {
        Self { keys: keys.into_iter().filter(|key| !key.is_deleted()).collect() }
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn get(&self, id: &PublicKeyId) -> Option<&PublicKey> {
        self.keys.iter().find(|key| &key.id == id)
    }

    /// Adds a key; it is the default if the workspace has no live key.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &mut self,
        id: PublicKeyId,
        workspace: WorkspaceUid,
        value: String,
        name: Name,
        description: Option<Description>,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> &PublicKey {
        let now = timestamp(now);
        let is_default = !self.keys.iter().any(|key| key.is_default);
        self.keys.push(PublicKey(PublicKeyState {
            id,
            workspace,
            api_key: value,
            name,
            description,
            allowed_domains: None,
            is_secure_mode_enabled: false,
            is_default,
            created_at: now,
            created_by: Some(actor.clone()),
            rotated_at: None,
            rotated_by: None,
            updated_at: now,
            updated_by: None,
            deleted_at: None,
            deleted_by: None,
        }));
        let last = self.keys.len() - 1;
        &self.keys[last]
    }

    /// Deletes a live key and returns it. Deleting the default while it is
    /// not the last live key is refused.
    pub fn delete(&mut self, id: &PublicKeyId, actor: &Actor, now: OffsetDateTime) -> Result<PublicKey, CoreError> {
        let index = self.keys.iter().position(|key| &key.id == id).ok_or(CoreError::NotFound { kind: "public key" })?;
        if self.keys[index].is_default && self.keys.len() > 1 {
            return Err(CoreError::DefaultPublicKeyInUse);
        }
        let mut key = self.keys.remove(index);
        let now = timestamp(now);
        key.0.deleted_at = Some(now);
        key.0.deleted_by = Some(actor.clone());
        key.0.updated_at = now;
        key.0.updated_by = Some(actor.clone());
        Ok(key)
    }
}
