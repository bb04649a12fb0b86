//! Service tokens: their metadata, never the token (only its digest).

use std::ops::Deref;

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, CoreError, Name, Organisation, OrganisationId, SecretDigest, ServiceTokenId};

/// What is kept of a service token: its digest, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTokenState {
    pub id: ServiceTokenId,
    pub organisation_id: OrganisationId,
    pub name: Name,
    pub digest: SecretDigest,
    pub actor: Actor,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A service token's metadata. Grants every workspace of its organisation
/// and fills every `*_by` it causes with its actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTokenRecord(ServiceTokenState);

impl ServiceTokenRecord {
    pub fn create(
        id: ServiceTokenId,
        organisation: &Organisation,
        name: Name,
        digest: SecretDigest,
        now: OffsetDateTime,
    ) -> Self {
        Self(ServiceTokenState {
            id,
            organisation_id: organisation.id.clone(),
            name,
            digest,
            actor: organisation.system_actor(),
            created_at: timestamp(now),
            revoked_at: None,
        })
    }

    /// Rebuilds a record read back from storage.
    pub fn restore(state: ServiceTokenState) -> Self {
        Self(state)
    }

    pub fn revoke(&mut self, now: OffsetDateTime) -> Result<(), CoreError> {
        if self.0.revoked_at.is_some() {
            return Err(CoreError::AlreadyDeleted { kind: "service token" });
        }
        self.0.revoked_at = Some(timestamp(now));
        Ok(())
    }
}

impl Deref for ServiceTokenRecord {
    type Target = ServiceTokenState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
