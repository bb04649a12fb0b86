//! Service tokens (docs/GUARANTEES.md, Service tokens): issued, listed and revoked over the API
//! by an admin token, and by the operator's CLI on the database. The rules
//! (roles, workspace limits, expiry, the last admin token) are keys-core's
//! [`ServiceTokenRecord`]; the one this module adds is that a token's
//! workspaces must exist when it is made.

use keys_core::{
    NewServiceToken, Organisation, OrganisationId, Page, Permission, ServiceTokenId, ServiceTokenMaterial,
    ServiceTokenRecord,
};
use keys_crypto::ServiceToken;
use keys_store::{Mutations, StoreError};
use rand_core::RngCore;
use time::OffsetDateTime;

use crate::workspaces::Listing;
use crate::{Caller, Service, ServiceError, ServiceResult};

/// A service token just created, with its secret: the one place the
/// plaintext exists.
#[derive(Debug)]
pub struct IssuedServiceToken {
    pub record: ServiceTokenRecord,
    pub token: ServiceToken,
}

/// The id, digest and masked prefix of a fresh token.
pub(crate) fn material<R: RngCore>(token: &ServiceToken, now: OffsetDateTime, rng: &mut R) -> ServiceTokenMaterial {
    ServiceTokenMaterial {
        id: ServiceTokenId::generate(now, rng),
        digest: token.digest(),
        masked_token: token.masked(),
    }
}

impl Service {
    /// A new token of the caller's organisation, no stronger than the
    /// caller's own token. Needs [`Permission::ManageServiceTokens`].
    pub async fn issue_service_token(
        &self,
        caller: &Caller,
        new: NewServiceToken,
    ) -> ServiceResult<IssuedServiceToken> {
        caller.require(Permission::ManageServiceTokens)?;
        let organisation = self
            .store
            .organisation(caller.scope().organisation_id())
            .await?
            .ok_or(ServiceError::OrganisationNotFound)?;
        self.issue(&organisation, new, Some(caller)).await
    }

    /// A new token of `organisation`, made by the operator (the CLI): any
    /// role, any limit.
    pub async fn create_service_token(
        &self,
        organisation: &Organisation,
        new: NewServiceToken,
    ) -> ServiceResult<IssuedServiceToken> {
        self.issue(organisation, new, None).await
    }

    async fn issue(
        &self,
        organisation: &Organisation,
        new: NewServiceToken,
        caller: Option<&Caller>,
    ) -> ServiceResult<IssuedServiceToken> {
        for slug in new.workspaces.slugs().unwrap_or_default() {
            if self.store.workspace_by_slug(&organisation.id, slug.as_str()).await?.is_none() {
                return Err(ServiceError::Invalid(format!("workspaces: workspace '{slug}' does not exist")));
            }
        }
        let now = self.now();
        let mut rng = self.rng();
        let token = ServiceToken::generate(&mut rng);
        let material = material(&token, now, &mut rng);
        let created_by = caller.map(Caller::record);
        let record =
            ServiceTokenRecord::create(material, organisation, new, created_by, now).map_err(StoreError::Refused)?;
        match caller {
            // Its audit event names the creating token and the request.
            Some(caller) => self.mutations(caller).create_service_token(&record).await?,
            None => self.store.create_service_token(&record).await?,
        }
        Ok(IssuedServiceToken { record, token })
    }

    /// A page of the caller's organisation's tokens, newest first. Needs
    /// [`Permission::ManageServiceTokens`].
    pub async fn list_service_tokens(
        &self,
        caller: &Caller,
        listing: Listing,
    ) -> ServiceResult<Page<ServiceTokenRecord>> {
        caller.require(Permission::ManageServiceTokens)?;
        self.service_tokens_of(caller.scope().organisation_id(), listing).await
    }

    /// A page of an organisation's tokens (the CLI).
    pub async fn service_tokens_of(
        &self,
        organisation: &OrganisationId,
        listing: Listing,
    ) -> ServiceResult<Page<ServiceTokenRecord>> {
        Ok(self.store.list_service_tokens(organisation, listing).await?)
    }

    /// Revokes a token of the caller's organisation (its own included, as
    /// long as it is not the last unexpired admin token). Every replica
    /// refuses it within a second: the revocation is announced like every
    /// change. An id that is malformed, unknown or already revoked is
    /// `NotFound`. Needs [`Permission::ManageServiceTokens`].
    pub async fn revoke_service_token(&self, caller: &Caller, id: &str) -> ServiceResult<ServiceTokenRecord> {
        caller.require(Permission::ManageServiceTokens)?;
        let id = ServiceTokenId::parse(id).map_err(|_| StoreError::NotFound { kind: "service token" })?;
        let organisation = caller.scope().organisation_id();
        let mutations = self.mutations(caller);
        Ok(mutations.revoke_service_token(organisation, &id, Some(caller.actor()), self.now()).await?)
    }

    /// Revokes a token of `organisation` (the CLI; no actor).
    pub async fn revoke_service_token_of(
        &self,
        organisation: &OrganisationId,
        id: &str,
    ) -> ServiceResult<ServiceTokenRecord> {
        let id = ServiceTokenId::parse(id).map_err(|_| StoreError::NotFound { kind: "service token" })?;
        Ok(self.store.revoke_service_token(organisation, &id, None, self.now()).await?)
    }
}
