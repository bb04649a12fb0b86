//! Organisation signing keys (dialect 2): [`CreateOrganisationKey`] and
//! [`DeleteOrganisationKey`].

use keys_core::{Actor, EntityKind, Mutation, OrganisationId, OrganisationKeyId, OrganisationSigningKey};
use time::OffsetDateTime;

use super::{Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};

#[derive(Debug, Clone)]
pub struct CreateOrganisationKey(pub OrganisationSigningKey);

impl Command for CreateOrganisationKey {
    type Output = ();

    fn lock(&self) -> Lock<'_> {
        Lock::Organisation(&self.0.organisation_id)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::OrganisationKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<()>> {
        let key = self.0;
        let scope = Scope::of_organisation(&locked.organisation()?.id);
        repo::insert_organisation_key(sql, &key).await?;
        let (action, actor) = (AuditAction::OrganisationKeyGenerated, key.created_by.as_ref());
        let event = scope.event(action, actor, key.id.as_str(), key.created_at);
        Ok(Applied::one((), event, Change::OrganisationKey(key.id.clone())))
    }
}

/// Deletes a live key of the organisation; returns it as it now is.
#[derive(Debug, Clone)]
pub struct DeleteOrganisationKey {
    pub organisation: OrganisationId,
    pub id: OrganisationKeyId,
    pub actor: Actor,
    pub now: OffsetDateTime,
}

impl Command for DeleteOrganisationKey {
    type Output = OrganisationSigningKey;

    fn lock(&self) -> Lock<'_> {
        Lock::Organisation(&self.organisation)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Delete(EntityKind::OrganisationKey)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<OrganisationSigningKey>> {
        let Self { id, actor, now, .. } = self;
        let organisation = locked.organisation()?;
        let found = repo::organisation_key(sql, &id).await?;
        let found = found.filter(|key| key.organisation_id == organisation.id && !key.is_deleted());
        let mut key = found.ok_or(StoreError::NotFound { kind: "organisation signing key" })?;
        key.delete(&actor, now)?;
        repo::save_organisation_key(sql, &key).await?;
        let (action, at) = (AuditAction::OrganisationKeyDeleted, key.deleted_at.unwrap_or(now));
        let event = Scope::of_organisation(&organisation.id).event(action, Some(&actor), key.id.as_str(), at);
        let change = Change::OrganisationKey(key.id.clone());
        Ok(Applied::one(key, event, change))
    }
}
