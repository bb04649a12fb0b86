//! Organisation signing keys (the Versori dialect): the public key only.

use std::ops::Deref;

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, CoreError, Name, OrganisationId, OrganisationKeyId};

/// The stored half of an organisation signing key: the public key only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationSigningKeyState {
    pub id: OrganisationKeyId,
    pub organisation_id: OrganisationId,
    pub name: Name,
    /// SPKI PEM of the RSA-2048 public key.
    pub public_key_pem: String,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub deleted_at: Option<OffsetDateTime>,
    pub deleted_by: Option<Actor>,
}

/// Rebuilds a key from storage, refusing a deleter recorded without its
/// time.
impl TryFrom<OrganisationSigningKeyState> for OrganisationSigningKey {
    type Error = CoreError;

    fn try_from(state: OrganisationSigningKeyState) -> Result<Self, CoreError> {
        let kind = "organisation signing key";
        crate::signing_key::stamped(kind, state.deleted_at, state.deleted_by.as_ref(), "deleted_by alone")?;
        Ok(Self(state))
    }
}

/// An organisation signing key (RS256). Any number per organisation; delete
/// is terminal and invalidates every JWT the key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationSigningKey(OrganisationSigningKeyState);

impl OrganisationSigningKey {
    pub fn create(
        id: OrganisationKeyId,
        organisation_id: OrganisationId,
        name: Name,
        public_key_pem: String,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Self {
        Self(OrganisationSigningKeyState {
            id,
            organisation_id,
            name,
            public_key_pem,
            created_at: timestamp(now),
            created_by: Some(actor.clone()),
            deleted_at: None,
            deleted_by: None,
        })
    }

    /// Whether the key may verify tokens (and so be listed in the JWKS):
    /// until it is deleted. The one rule both the JWKS and
    /// [`crate::verify::decide_organisation_key`] follow.
    pub fn verifies(&self) -> bool {
        !self.is_deleted()
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deleted_at.is_some()
    }

    /// Deletes the key; deleting a deleted key is refused.
    pub fn delete(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        if self.is_deleted() {
            return Err(CoreError::AlreadyDeleted { kind: "organisation signing key" });
        }
        self.0.deleted_at = Some(timestamp(now));
        self.0.deleted_by = Some(actor.clone());
        Ok(())
    }
}

impl Deref for OrganisationSigningKey {
    type Target = OrganisationSigningKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
