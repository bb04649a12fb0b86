//! Organisation signing keys (the Versori dialect): list, create, delete,
//! and the public lookup for verifiers. RSA-2048 pairs come from a pool
//! generated ahead of time on a background thread (with the OS CSPRNG);
//! when it runs dry, generation happens on a blocking thread, never on a
//! runtime worker.

use std::sync::Arc;

use keys_core::{Name, OrganisationId, OrganisationKeyId, OrganisationSigningKey};
use keys_crypto::RsaKeyPair;

use crate::{Caller, Service, ServiceError, ServiceResult};

/// An organisation key just created, with its key pair: the one place the
/// private key exists.
#[derive(Debug)]
pub struct IssuedOrganisationKey {
    pub key: OrganisationSigningKey,
    pub pair: RsaKeyPair,
}

impl Service {
    /// The organisation a path names, which must be the caller's own: any
    /// other is [`ServiceError::OrganisationNotFound`], like one that does
    /// not exist.
    pub fn own_organisation<'c>(&self, caller: &'c Caller, organisation: &str) -> ServiceResult<&'c OrganisationId> {
        // A path that is no organisation id names nothing; one that is
        // another organisation's is, for this caller, the same: keys-core's
        // scope decides.
        let scope = caller.scope();
        let named = OrganisationId::parse(organisation).ok();
        match named.filter(|id| scope.reaches_organisation(id)) {
            Some(_) => Ok(scope.organisation_id()),
            None => Err(ServiceError::OrganisationNotFound),
        }
    }

    pub async fn list_organisation_keys(
        &self,
        caller: &Caller,
        organisation: &str,
    ) -> ServiceResult<Vec<OrganisationSigningKey>> {
        let organisation = self.own_organisation(caller, organisation)?;
        Ok(self.store.list_organisation_keys(organisation).await?)
    }

    pub async fn create_organisation_key(
        &self,
        caller: &Caller,
        organisation: &str,
        name: Name,
    ) -> ServiceResult<IssuedOrganisationKey> {
        let organisation = self.own_organisation(caller, organisation)?.clone();
        let pool = Arc::clone(&self.rsa_pool);
        let pair = tokio::task::spawn_blocking(move || pool.take()).await.map_err(ServiceError::Background)?;
        let now = self.now();
        let key = OrganisationSigningKey::create(
            OrganisationKeyId::generate(now, &mut self.rng()),
            organisation,
            name,
            pair.public_key_pem(),
            caller.actor(),
            now,
        );
        self.store.create_organisation_key(&key).await?;
        Ok(IssuedOrganisationKey { key, pair })
    }

    pub async fn delete_organisation_key(
        &self,
        caller: &Caller,
        organisation: &str,
        id: &OrganisationKeyId,
    ) -> ServiceResult<OrganisationSigningKey> {
        let organisation = self.own_organisation(caller, organisation)?;
        Ok(self.store.delete_organisation_key(organisation, id, caller.actor(), self.now()).await?)
    }

    /// A key as public verifiers see it (no authentication): deleted keys
    /// are gone.
    pub async fn public_organisation_key(
        &self,
        id: &OrganisationKeyId,
    ) -> ServiceResult<Option<OrganisationSigningKey>> {
        Ok(self.store.organisation_key(id).await?.filter(OrganisationSigningKey::verifies))
    }
}
