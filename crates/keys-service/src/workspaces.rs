//! Workspaces: list, create, and resolve a slug within the caller's scope
//! into an [`InWorkspace`], on which the key use cases of that workspace
//! are methods.

use keys_core::verify::WorkspaceAccess;
use keys_core::{
    Description, Name, NewWorkspace, Page, Pagination, Permission, Workspace, WorkspacePatch, WorkspaceSlug,
};
use keys_store::{Acting, PatchWorkspace};
use keys_store::{Mutations as _, Run as _};
use time::OffsetDateTime;

use crate::{Caller, Service, ServiceError, ServiceResult};

/// A workspace the caller may reach, resolved once: the key use cases of
/// `api_keys`, `public_keys` and `signing_keys` are its methods, so none
/// of them resolves a slug or checks a scope again. Made only by
/// [`Service::in_workspace`], after the caller's [`Permission::ManageKeys`]
/// was checked: every one of those use cases needs it.
#[derive(Debug)]
pub struct InWorkspace<'s> {
    pub(crate) service: &'s Service,
    pub(crate) caller: &'s Caller,
    pub(crate) workspace: Workspace,
}

impl InWorkspace<'_> {
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.service.now()
    }
}

/// Which page of a list, and whether deleted records are in it.
pub use keys_store::Listing;

/// What a new API key or public key is made of: a client names and
/// describes both alike, the secret or value is made here.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: Name,
    pub description: Option<Description>,
}

impl Service {
    /// Resolves `slug` within the caller's scope (see [`Service::workspace`])
    /// for the key use cases, which need [`Permission::ManageKeys`].
    pub async fn in_workspace<'s>(&'s self, caller: &'s Caller, slug: &str) -> ServiceResult<InWorkspace<'s>> {
        caller.require(Permission::ManageKeys)?;
        let workspace = self.resolve_workspace(caller, slug).await?;
        Ok(InWorkspace { service: self, caller, workspace })
    }

    /// The caller's workspace with this slug. A slug that is malformed, or
    /// names a workspace of another organisation, is
    /// [`ServiceError::WorkspaceNotFound`] exactly like one that does not
    /// exist: the caller cannot tell them apart. One of the caller's
    /// organisation outside its token's workspaces is
    /// [`ServiceError::PermissionDenied`] (keys-core's
    /// [`keys_core::verify::Scope::access`] decides). Needs
    /// [`Permission::ReadWorkspaces`].
    pub async fn workspace(&self, caller: &Caller, slug: &str) -> ServiceResult<Workspace> {
        caller.require(Permission::ReadWorkspaces)?;
        self.resolve_workspace(caller, slug).await
    }

    /// [`Service::workspace`] for a use case that checked its own
    /// permission: the one place a slug is resolved within a scope.
    pub(crate) async fn resolve_workspace(&self, caller: &Caller, slug: &str) -> ServiceResult<Workspace> {
        if WorkspaceSlug::parse(slug).is_err() {
            return Err(ServiceError::WorkspaceNotFound);
        }
        let scope = caller.scope();
        let found = self.store.workspace_by_slug(scope.organisation_id(), slug).await?;
        let found = found.ok_or(ServiceError::WorkspaceNotFound)?;
        match scope.access(&found) {
            WorkspaceAccess::Reachable => Ok(found),
            WorkspaceAccess::Forbidden => Err(ServiceError::PermissionDenied(format!(
                "this service token is not allowed to access workspace '{slug}'"
            ))),
            WorkspaceAccess::Hidden => Err(ServiceError::WorkspaceNotFound),
        }
    }

    /// The workspaces the caller reaches, newest first: every workspace of
    /// its organisation, or only those its token is limited to. Needs
    /// [`Permission::ReadWorkspaces`].
    pub async fn list_workspaces(&self, caller: &Caller, page: Pagination) -> ServiceResult<Page<Workspace>> {
        caller.require(Permission::ReadWorkspaces)?;
        let scope = caller.scope();
        let Some(limit) = scope.workspace_limit() else {
            return Ok(self.store.list_workspaces(scope.organisation_id(), page).await?);
        };
        // At most `TokenWorkspaces::MAX` lookups, made once per list.
        let mut reached = Vec::with_capacity(limit.len());
        for slug in limit {
            if let Some(workspace) = self.store.workspace_by_slug(scope.organisation_id(), slug.as_str()).await? {
                reached.push(workspace);
            }
        }
        reached.sort_by(|left, right| (right.created_at, &right.uid).cmp(&(left.created_at, &left.uid)));
        let total = reached.len() as u64;
        let start = usize::try_from(page.offset()).unwrap_or(usize::MAX).min(reached.len());
        let items = reached.into_iter().skip(start).take(usize::try_from(page.limit()).unwrap_or(usize::MAX)).collect();
        Ok(Page { items, total, pagination: page })
    }

    /// Creates a workspace in the caller's organisation. Needs
    /// [`Permission::ManageWorkspaces`].
    pub async fn create_workspace(&self, caller: &Caller, new: NewWorkspace) -> ServiceResult<Workspace> {
        caller.require(Permission::ManageWorkspaces)?;
        let organisation = caller.scope().organisation_id().clone();
        let workspace = Workspace::create(organisation, new, Some(caller.actor()), self.now(), &mut self.rng())
            .map_err(keys_store::StoreError::Refused)?;
        self.mutations(caller).create_workspace(&workspace).await?;
        Ok(workspace)
    }

    /// Changes a workspace of the caller's organisation: its name,
    /// description, API-key prefix (for the keys made afterwards) and leak
    /// policy. Needs [`Permission::ManageWorkspaces`] (`admin`). An empty
    /// patch changes nothing and writes no event.
    pub async fn patch_workspace(
        &self,
        caller: &Caller,
        slug: &str,
        patch: WorkspacePatch,
    ) -> ServiceResult<Workspace> {
        caller.require(Permission::ManageWorkspaces)?;
        let workspace = self.resolve_workspace(caller, slug).await?;
        if patch.is_empty() {
            return Ok(workspace);
        }
        let acting = Acting::new(workspace.uid, caller.actor().clone(), self.now());
        Ok(self.mutations(caller).run(PatchWorkspace { acting, patch }).await?.output)
    }
}
