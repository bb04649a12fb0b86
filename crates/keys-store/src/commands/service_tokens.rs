//! Service tokens: [`CreateServiceToken`] and [`RevokeServiceToken`].

use keys_core::{Actor, EntityKind, Mutation, OrganisationId, ServiceTokenId, ServiceTokenRecord};
use time::OffsetDateTime;

use super::{Applied, AuditAction, AuditEvent, Command, Lock, Locked, Scope};
use crate::change::Change;
use crate::error::{StoreError, StoreResult};
use crate::repo::{self, Sql};

#[derive(Debug, Clone)]
pub struct CreateServiceToken(pub ServiceTokenRecord);

impl Command for CreateServiceToken {
    type Output = ();

    fn lock(&self) -> Lock<'_> {
        Lock::Organisation(&self.0.organisation_id)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Create(EntityKind::ServiceToken)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, _locked: Locked) -> StoreResult<Applied<()>> {
        let event = write_service_token(sql, &self.0).await?;
        Ok(Applied::one((), event, Change::ServiceToken(self.0.digest)))
    }
}

/// Revokes a live token of the organisation; returns it as it now is.
/// Refused with `LastAdminToken` when the token is the organisation's last
/// live admin token (keys-core's `LiveAdmin`) at `now`, under any
/// concurrency (the organisation's lock serializes revocations).
#[derive(Debug, Clone)]
pub struct RevokeServiceToken {
    pub organisation: OrganisationId,
    pub id: ServiceTokenId,
    pub actor: Option<Actor>,
    pub now: OffsetDateTime,
}

impl Command for RevokeServiceToken {
    type Output = ServiceTokenRecord;

    fn lock(&self) -> Lock<'_> {
        Lock::Organisation(&self.organisation)
    }

    fn mutation(&self) -> Mutation {
        Mutation::Update(EntityKind::ServiceToken)
    }

    async fn apply<C: Sql + ?Sized>(self, sql: &mut C, locked: Locked) -> StoreResult<Applied<ServiceTokenRecord>> {
        let Self { id, actor, now, .. } = self;
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
