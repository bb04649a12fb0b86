//! Service tokens: [`CreateServiceToken`] and [`RevokeServiceToken`].

use keys_core::{Actor, EntityKind, Mutation, OrganisationId, ServiceTokenId, ServiceTokenRecord};

use super::{Acting, Applied, AuditAction, AuditEvent, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};

command! {
    CreateServiceToken(ServiceTokenRecord) in Organisation(organisation_id) -> (),
        Mutation::Create(EntityKind::ServiceToken);
    apply |Self(token), sql, _locked| {
        let event = write_service_token(sql, &token).await?;
        Ok(Applied::one((), event, Change::ServiceToken(token.digest)))
    }
}

command! {
    /// Revokes a live token of the organisation; returns it as it now is.
    /// Refused with `LastAdminToken` when the token is the organisation's last
    /// live admin token (keys-core's `LiveAdmin`) at `now`, under any
    /// concurrency (the organisation's lock serializes revocations).
    RevokeServiceToken { id: ServiceTokenId } in Organisation(OrganisationId, Option<Actor>) -> ServiceTokenRecord,
        Mutation::Update(EntityKind::ServiceToken);
    apply |Self { acting: Acting { actor, now, .. }, id }, sql, locked| {
        let organisation = locked.organisation()?;
        let found = repo::service_token(sql, &organisation.id, &id).await?;
        let mut token =
            found.filter(|token| token.revoked_at.is_none()).ok_or(StoreError::NotFound { kind: "service token" })?;
        let others = repo::other_live_admin_tokens(sql, &organisation.id, &id, now).await?;
        token.revoke(usize::try_from(others).unwrap_or(usize::MAX), actor.as_ref(), now)?;
        repo::save_service_token_revocation(sql, &token).await?;
        let at = token.revoked_at.unwrap_or(now);
        let scope = Scope::of_organisation(&organisation.id);
        let event = scope.event(AuditAction::ServiceTokenRevoked, actor.as_ref(), id.as_str(), at);
        let change = Change::ServiceToken(token.digest);
        Ok(Applied::one(token, event, change))
    }
}

/// The writes of creating a service token, shared with the bootstrap.
pub(super) async fn write_service_token<C: Sql + ?Sized>(
    sql: &mut C,
    token: &ServiceTokenRecord,
) -> StoreResult<AuditEvent> {
    repo::insert_service_token(sql, token).await?;
    let scope = Scope::of_organisation(&token.organisation_id);
    let (action, actor) = (AuditAction::ServiceTokenGenerated, token.created_by.as_ref());
    Ok(scope.event(action, actor, token.id.as_str(), token.created_at))
}
