//! Workspaces: [`CreateWorkspace`] (workspaces never change afterwards).

use keys_core::{EntityKind, Mutation, Workspace};

use super::{Applied, AuditAction, AuditEvent, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{Conflict, StoreResult};
use crate::repo::{self, Sql};

/// Refused with [`Conflict::SlugTaken`] if the organisation has the slug.
#[derive(Debug, Clone)]
pub struct CreateWorkspace(pub Workspace);

impl Command for CreateWorkspace {
    type Output = ();

    fn lock(&self) -> Lock<'_> {
        Lock::Organisation(&self.0.organisation_id)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::Workspace)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, _locked: Locked) -> StoreResult<Applied<()>> {
        let event = write_workspace(sql, &self.0).await?;
        Ok(Applied::one((), event, Change::Workspace(self.0.uid)))
    }
}

/// The writes of creating a workspace, shared with the bootstrap. The
/// caller holds the organisation.
pub(super) async fn write_workspace<C: Sql + ?Sized>(sql: &mut C, workspace: &Workspace) -> StoreResult<AuditEvent> {
    if repo::workspace_by_slug(sql, &workspace.organisation_id, workspace.slug.as_str()).await?.is_some() {
        return Err(Conflict::SlugTaken(workspace.slug.as_str().to_owned()).into());
    }
    repo::insert_workspace(sql, workspace).await?;
    let (action, actor) = (AuditAction::WorkspaceCreated, workspace.created_by.as_ref());
    Ok(Scope::of_workspace(workspace).event(action, actor, workspace.uid.as_str(), workspace.created_at))
}
