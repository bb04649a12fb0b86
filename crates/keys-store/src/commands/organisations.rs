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

/// Writes the bootstrap state if, and only if, the database has no
/// organisation yet; returns whether it did. Safe when several processes
/// start at once.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub organisation: Organisation,
    pub workspaces: Vec<Workspace>,
    pub token: ServiceTokenRecord,
}

impl Command for Bootstrap {
    type Output = bool;

    fn lock(&self) -> Lock<'_> {
        Lock::Bootstrap
    }

    fn mutation(&self) -> Mutation {
        Mutation::Bootstrap
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, _locked: Locked) -> StoreResult<Applied<bool>> {
        if repo::count_organisations(sql).await? > 0 {
            return Ok(Applied { output: false, events: Vec::new(), change: None });
        }
        let mut events = vec![write_organisation(sql, &self.organisation).await?];
        for workspace in &self.workspaces {
            events.push(write_workspace(sql, workspace).await?);
        }
        events.push(write_service_token(sql, &self.token).await?);
        Ok(Applied { output: true, events, change: Some(Change::Everything) })
    }
}

/// Refused with [`Conflict::OrganisationNameTaken`] if the name exists.
#[derive(Debug, Clone)]
pub struct CreateOrganisation(pub Organisation);

impl Command for CreateOrganisation {
    type Output = ();

    fn lock(&self) -> Lock<'_> {
        Lock::Nothing
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::Organisation)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, _locked: Locked) -> StoreResult<Applied<()>> {
        let event = write_organisation(sql, &self.0).await?;
        Ok(Applied::one((), event, Change::Organisation(self.0.id)))
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
