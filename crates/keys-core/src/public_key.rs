//! Publishable client keys and the ring of one workspace's live keys, which
//! owns the default-key rules.

use std::ops::Deref;

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, CoreError, Description, DomainPattern, Name, PublicKeyId, WorkspaceUid};

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

/// Rebuilds a key from storage, refusing a rotator or a deleter recorded
/// without its time.
impl TryFrom<PublicKeyState> for PublicKey {
    type Error = CoreError;

    fn try_from(state: PublicKeyState) -> Result<Self, CoreError> {
        crate::signing_key::stamped("public key", state.rotated_at, state.rotated_by.as_ref(), "rotated_by alone")?;
        crate::signing_key::stamped("public key", state.deleted_at, state.deleted_by.as_ref(), "deleted_by alone")?;
        Ok(Self(state))
    }
}

impl PublicKey {
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

/// What a new public key is made of: its id and workspace, its `SS.PUBK.`
/// value, and what the client named it.
#[derive(Debug, Clone)]
pub struct NewPublicKey {
    pub id: PublicKeyId,
    pub workspace: WorkspaceUid,
    pub value: String,
    pub name: Name,
    pub description: Option<Description>,
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
    pub fn create(&mut self, new: NewPublicKey, actor: &Actor, now: OffsetDateTime) -> &PublicKey {
        let NewPublicKey { id, workspace, value, name, description } = new;
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
