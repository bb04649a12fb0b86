//! Workspaces: list, create, and resolve a slug within the caller's scope.

use keys_core::{NewWorkspace, Page, Pagination, Workspace, WorkspaceSlug};

use crate::{Caller, Service, ServiceError, ServiceResult};

impl Service {
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
        self.store.create_workspace(&workspace).await?;
        Ok(workspace)
    }
}
