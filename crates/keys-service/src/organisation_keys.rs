//! Organisation signing keys (the Versori dialect): list, create, delete,
//! and the public lookup for verifiers. RSA-2048 pairs come from a pool
//! generated ahead of time on a background thread (with the OS CSPRNG);
//! when it runs dry, generation happens on a blocking thread, never on a
//! runtime worker.

use keys_store::Mutations as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use keys_core::verify::WorkspaceAccess;
use keys_core::{KeyPage, KeySlice, Name, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Permission};
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
    /// not exist. Organisation keys span every workspace, so a token
    /// limited to some workspaces may not manage them
    /// ([`ServiceError::PermissionDenied`]; keys-core decides:
    /// [`keys_core::verify::Scope::organisation_keys_access`]).
    ///
    /// Every organisation-key use case resolves its organisation here, so
    /// this is where they check [`Permission::ManageKeys`], first.
    pub fn own_organisation<'c>(&self, caller: &'c Caller, organisation: &str) -> ServiceResult<&'c OrganisationId> {
        caller.require(Permission::ManageKeys)?;
        // A path that is no organisation id names nothing, like one of
        // another organisation.
        let scope = caller.scope();
        let named = OrganisationId::parse(organisation).map_err(|_| ServiceError::OrganisationNotFound)?;
        match scope.organisation_keys_access(&named) {
            WorkspaceAccess::Reachable => Ok(scope.organisation_id()),
            WorkspaceAccess::Forbidden => Err(ServiceError::PermissionDenied(
                "a service token limited to workspaces cannot manage organisation keys".to_owned(),
            )),
            WorkspaceAccess::Hidden => Err(ServiceError::OrganisationNotFound),
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

    /// One page of the organisation's live keys, newest first.
    pub async fn organisation_keys_page(
        &self,
        caller: &Caller,
        organisation: &str,
        page: &KeyPage,
    ) -> ServiceResult<KeySlice> {
        let organisation = self.own_organisation(caller, organisation)?;
        Ok(self.store.organisation_keys_page(organisation, page).await?)
    }

    pub async fn create_organisation_key(
        &self,
        caller: &Caller,
        organisation: &str,
        name: Name,
    ) -> ServiceResult<IssuedOrganisationKey> {
        let organisation = self.own_organisation(caller, organisation)?.clone();
        let pair = match self.rsa_pool.try_take() {
            Some(pair) => pair,
            None => self.generate_rsa_key().await?,
        };
        let now = self.now();
        let key = OrganisationSigningKey::create(
            OrganisationKeyId::generate(now, &mut self.rng()),
            organisation,
            name,
            pair.public_key_pem(),
            caller.actor(),
            now,
        );
        self.mutations(caller).create_organisation_key(&key).await?;
        Ok(IssuedOrganisationKey { key, pair })
    }

    /// An RSA key generated now, on a blocking thread, under one of the
    /// [`ServiceConfig::rsa_max_concurrent_generations`](crate::ServiceConfig)
    /// permits: a caller beyond them waits (bounded by the request's
    /// timeout). The permit moves into the blocking task, so a request that
    /// gives up does not free it before the core is free.
    async fn generate_rsa_key(&self) -> ServiceResult<RsaKeyPair> {
        // The semaphore is never closed: acquiring can only wait.
        let permit = Arc::clone(&self.rsa_generations).acquire_owned().await.ok();
        let generating = Arc::clone(&self.rsa_generating);
        let pool = Arc::clone(&self.rsa_pool);
        tokio::task::spawn_blocking(move || {
            generating.fetch_add(1, Ordering::SeqCst);
            let pair = pool.take();
            generating.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            pair
        })
        .await
        .map_err(ServiceError::Background)
    }

    /// How many RSA keys are being generated inline right now (at most
    /// [`ServiceConfig::rsa_max_concurrent_generations`](crate::ServiceConfig)).
    pub fn rsa_generations_in_flight(&self) -> usize {
        self.rsa_generating.load(Ordering::SeqCst)
    }

    pub async fn delete_organisation_key(
        &self,
        caller: &Caller,
        organisation: &str,
        id: &OrganisationKeyId,
    ) -> ServiceResult<OrganisationSigningKey> {
        let organisation = self.own_organisation(caller, organisation)?;
        Ok(self.mutations(caller).delete_organisation_key(organisation, id, caller.actor(), self.now()).await?)
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
