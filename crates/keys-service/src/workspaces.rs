//! Workspaces: list, create, and resolve a slug within the caller's scope
//! into an [`InWorkspace`], on which the key use cases of that workspace
//! are methods.

use keys_core::{Description, Name, NewWorkspace, Page, Pagination, Workspace, WorkspaceSlug};
use keys_store::Mutations as _;
use time::OffsetDateTime;

use crate::{Caller, Service, ServiceError, ServiceResult};

/// A workspace the caller may reach, resolved once: the key use cases of
/// `api_keys`, `public_keys` and `signing_keys` are its methods, so none
/// of them resolves a slug or checks a scope again.
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
    /// Resolves `slug` within the caller's scope (see [`Service::workspace`]).
    pub async fn in_workspace<'s>(&'s self, caller: &'s Caller, slug: &str) -> ServiceResult<InWorkspace<'s>> {
        let workspace = self.workspace(caller, slug).await?;
        Ok(InWorkspace { service: self, caller, workspace })
    }

    /// The caller's workspace with this slug. A slug that is malformed, or
    /// names a workspace of another organisation, is
    /// [`ServiceError::WorkspaceNotFound`] exactly like one that does not
    /// exist: the caller cannot tell them apart.
    pub async fn workspace(&self, caller: &Caller, slug: &str) -> ServiceResult<Workspace> {
        if WorkspaceSlug::parse(slug).is_err() {
            return Err(ServiceError::WorkspaceNotFound);
        }
        let scope = caller.scope();
        let found = self.store.workspace_by_slug(scope.organisation_id(), slug).await?;
        scope.filter_workspace(found).ok_or(ServiceError::WorkspaceNotFound)
    }

    pub async fn list_workspaces(&self, caller: &Caller, page: Pagination) -> ServiceResult<Page<Workspace>> {
        Ok(self.store.list_workspaces(caller.scope().organisation_id(), page).await?)
    }

    /// Creates a workspace in the caller's organisation.
    pub async fn create_workspace(&self, caller: &Caller, new: NewWorkspace) -> ServiceResult<Workspace> {
        let organisation = caller.scope().organisation_id().clone();
        let workspace = Workspace::create(organisation, new, Some(caller.actor()), self.now(), &mut self.rng())
            .map_err(keys_store::StoreError::Refused)?;
        self.mutations(caller).create_workspace(&workspace).await?;
        Ok(workspace)
    }
}
