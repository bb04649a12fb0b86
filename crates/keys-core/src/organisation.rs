//! Organisations: the accounts that own workspaces, service tokens and
//! organisation signing keys.

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, Name, OrganisationId};

/// An account: owns workspaces, service tokens and organisation signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub id: OrganisationId,
    pub name: Name,
    pub created_at: OffsetDateTime,
}

impl Organisation {
    pub fn create(id: OrganisationId, name: Name, now: OffsetDateTime) -> Self {
        Self { id, name, created_at: timestamp(now) }
    }

    /// The actor every service token of this organisation acts as.
    pub fn system_actor(&self) -> Actor {
        Actor::system_user(&self.id)
    }
}
