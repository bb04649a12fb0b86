//! Workspaces: what a client asks for ([`NewWorkspace`]) and what is kept
//! ([`Workspace`]).

use rand_core::RngCore;
use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, CoreError, Description, Mode, Name, OrganisationId, WorkspaceSlug, WorkspaceUid};

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
