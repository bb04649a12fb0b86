//! Workspaces: what a client asks for ([`NewWorkspace`]), what is kept
//! ([`Workspace`]) and what may change afterwards ([`WorkspacePatch`]: its
//! name, description, API-key prefix and leak policy; never its slug, uid
//! or mode, which clients and keys refer to).

use rand_core::RngCore;
use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{
    Actor, ApiKeyPrefix, CoreError, Description, Mode, Name, OnLeak, OrganisationId, WorkspaceSlug, WorkspaceUid,
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
    /// The prefix of its new API keys; `None`: `SS.`.
    pub api_key_prefix: Option<ApiKeyPrefix>,
    pub on_leak: OnLeak,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
}

/// What `PATCH /v1/workspace/{slug}/` may change, already parsed; `None`
/// leaves a field as it is, `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspacePatch {
    pub name: Option<Name>,
    pub description: Option<Option<Description>>,
    pub api_key_prefix: Option<Option<ApiKeyPrefix>>,
    pub on_leak: Option<OnLeak>,
}

impl WorkspacePatch {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
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
            api_key_prefix: None,
            on_leak: OnLeak::default(),
            created_at: timestamp(now),
            created_by: actor.cloned(),
        })
    }

    /// The workspace with `patch` applied. A changed prefix applies to the
    /// keys made afterwards: a key's text never changes, so existing keys
    /// keep verifying whatever the prefix becomes.
    pub fn patched(&self, patch: WorkspacePatch) -> Self {
        let mut next = self.clone();
        if let Some(name) = patch.name {
            next.name = name;
        }
        if let Some(description) = patch.description {
            next.description = description;
        }
        if let Some(prefix) = patch.api_key_prefix {
            next.api_key_prefix = prefix;
        }
        if let Some(on_leak) = patch.on_leak {
            next.on_leak = on_leak;
        }
        next
    }
}
