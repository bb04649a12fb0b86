//! Workspaces: [`CreateWorkspace`] and [`PatchWorkspace`] (name,
//! description, API-key prefix, leak policy; never slug, uid or mode).

use keys_core::{EntityKind, Mutation, Workspace, WorkspacePatch, WorkspaceUid};

use super::{Acting, Applied, AuditAction, AuditEvent, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{Conflict, StoreResult};
use crate::repo::{self, Sql};

command! {
    /// Refused with [`Conflict::SlugTaken`] if the organisation has the slug.
    CreateWorkspace(Workspace) in Organisation(organisation_id) -> (), Mutation::Create(EntityKind::Workspace);
    apply |Self(workspace), sql, _locked| {
        let event = write_workspace(sql, &workspace).await?;
        Ok(Applied::one((), event, Change::Workspace(workspace.uid)))
    }
}

command! {
    /// Changes what a patch may change of a workspace, under its lock;
    /// returns it as it now is. Announced as a change of the workspace, so
    /// that every replica drops the keys it cached with the old one.
    PatchWorkspace { patch: WorkspacePatch } in Workspace(WorkspaceUid) -> Workspace,
        Mutation::Update(EntityKind::Workspace);
    apply |Self { acting, patch }, sql, locked| {
        let current = locked.workspace()?;
        let workspace = current.patched(patch);
        if workspace == current {
            // Nothing changes: no write, no event (the pipeline rolls back).
            return Ok(Applied { output: workspace, events: Vec::new(), change: None });
        }
        repo::save_workspace(sql, &workspace).await?;
        let event = acting.event(&Scope::of_workspace(&workspace), AuditAction::WorkspaceUpdated, workspace.uid.as_str(), acting.now);
        let change = Change::Workspace(workspace.uid.clone());
        Ok(Applied::one(workspace, event, change))
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
