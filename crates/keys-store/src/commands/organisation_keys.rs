//! Organisation signing keys (dialect 2): [`CreateOrganisationKey`] and
//! [`DeleteOrganisationKey`].

use keys_core::{EntityKind, Mutation, OrganisationId, OrganisationKeyId, OrganisationSigningKey};

use super::{Acting, Applied, AuditAction, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};

command! {
    CreateOrganisationKey(OrganisationSigningKey) in Organisation(organisation_id) -> (),
        Mutation::Create(EntityKind::OrganisationKey);
    apply |Self(key), sql, locked| {
        let scope = Scope::of_organisation(&locked.organisation()?.id);
        repo::insert_organisation_key(sql, &key).await?;
        let (action, actor) = (AuditAction::OrganisationKeyGenerated, key.created_by.as_ref());
        let event = scope.event(action, actor, key.id.as_str(), key.created_at);
        Ok(Applied::one((), event, Change::OrganisationKey(key.id.clone())))
    }
}

command! {
    /// Deletes a live key of the organisation; returns it as it now is.
    DeleteOrganisationKey { id: OrganisationKeyId } in Organisation(OrganisationId) -> OrganisationSigningKey,
        Mutation::Delete(EntityKind::OrganisationKey);
    apply |Self { acting, id }, sql, locked| {
        let organisation = locked.organisation()?;
        let found = repo::organisation_key(sql, &id).await?;
        let found = found.filter(|key| key.organisation_id == organisation.id && !key.is_deleted());
        let mut key = found.ok_or(StoreError::NotFound { kind: "organisation signing key" })?;
        key.delete(&acting.actor, acting.now)?;
        repo::save_organisation_key(sql, &key).await?;
        let (action, at) = (AuditAction::OrganisationKeyDeleted, key.deleted_at.unwrap_or(acting.now));
        let event = acting.event(&Scope::of_organisation(&organisation.id), action, key.id.as_str(), at);
        let change = Change::OrganisationKey(key.id.clone());
        Ok(Applied::one(key, event, change))
    }
}
