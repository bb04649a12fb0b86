//! Organisations: [`CreateOrganisation`], and [`Bootstrap`], the first
//! state of an empty database (an organisation, its workspaces, one
//! service token).

use keys_core::{EntityKind, Mutation, Organisation, ServiceTokenRecord, Workspace};

use super::service_tokens::write_service_token;
use super::workspaces::write_workspace;
use super::{Applied, AuditAction, AuditEvent, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{Conflict, StoreResult};
use crate::repo::{self, Sql};

command! {
    /// Writes the bootstrap state if, and only if, the database has no
    /// organisation yet; returns whether it did. Safe when several processes
    /// start at once.
    Bootstrap { organisation: Organisation, workspaces: Vec<Workspace>, token: ServiceTokenRecord } -> bool,
        lock |_command| Lock::Bootstrap, mutation |_command| Mutation::Bootstrap;
    apply |bootstrap, sql, _locked| {
        if repo::count_organisations(sql).await? > 0 {
            return Ok(Applied { output: false, events: Vec::new(), change: None });
        }
        let mut events = vec![write_organisation(sql, &bootstrap.organisation).await?];
        for workspace in &bootstrap.workspaces {
            events.push(write_workspace(sql, workspace).await?);
        }
        events.push(write_service_token(sql, &bootstrap.token).await?);
        Ok(Applied { output: true, events, change: Some(Change::Everything) })
    }
}

command! {
    /// Refused with [`Conflict::OrganisationNameTaken`] if the name exists.
    CreateOrganisation(Organisation) in Nothing -> (), Mutation::Create(EntityKind::Organisation);
    apply |Self(organisation), sql, _locked| {
        let event = write_organisation(sql, &organisation).await?;
        Ok(Applied::one((), event, Change::Organisation(organisation.id)))
    }
}

/// The writes of creating an organisation, shared with the bootstrap.
async fn write_organisation<C: Sql + ?Sized>(sql: &mut C, organisation: &Organisation) -> StoreResult<AuditEvent> {
    if repo::organisation_by_name(sql, organisation.name.as_str()).await?.is_some() {
        return Err(Conflict::OrganisationNameTaken(organisation.name.as_str().to_owned()).into());
    }
    repo::insert_organisation(sql, organisation).await?;
    let scope = Scope::of_organisation(&organisation.id);
    Ok(scope.event(AuditAction::OrganisationCreated, None, organisation.id.as_str(), organisation.created_at))
}
