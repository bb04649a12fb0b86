//! Workspace signing keys: list, create, roll, delete, in a workspace the
//! caller reaches. The private half is generated here, returned once in
//! [`IssuedSigningKey`], and never stored; the one-active-key rule is the
//! workspace's `SigningKeyRing`, run in the store's transaction and backed
//! by a partial unique index.

use keys_core::{GracePeriod, NewSigningKey, Page, SigningKeyId, SigningKeyUid, WorkspaceSigningKey};
use keys_crypto::EcKeyPair;
use keys_store::Mutations as _;

use crate::workspaces::{InWorkspace, Listing};
use crate::ServiceResult;

/// A signing key just created, with its key pair: the one place the private
/// key exists.
#[derive(Debug)]
pub struct IssuedSigningKey {
    pub key: WorkspaceSigningKey,
    pub pair: EcKeyPair,
}

impl InWorkspace<'_> {
    pub async fn list_signing_keys(&self, listing: Listing) -> ServiceResult<Page<WorkspaceSigningKey>> {
        let store = &self.service.store;
        Ok(store.list_signing_keys(&self.workspace.uid, listing).await?)
    }

    /// A fresh P-256 key pair and the domain's view of it (public half only).
    fn new_signing_key(&self) -> (EcKeyPair, NewSigningKey) {
        let now = self.now();
        let mut rng = self.service.rng();
        let pair = EcKeyPair::generate(&mut rng);
        let (id, uid) = (SigningKeyId::generate(now, &mut rng), SigningKeyUid::generate(now, &mut rng));
        let new = NewSigningKey { id, uid, public_key_pem: pair.public_key_pem() };
        (pair, new)
    }

    pub async fn create_signing_key(&self) -> ServiceResult<IssuedSigningKey> {
        let (pair, new) = self.new_signing_key();
        let key = self
            .service
            .mutations(self.caller)
            .create_signing_key(&self.workspace.uid, new, self.caller.actor(), self.now())
            .await?;
        Ok(IssuedSigningKey { key, pair })
    }

    /// Rolls the active key `uid`: it becomes `rolled` (verifying until
    /// `now + grace`) and a new active key is returned with its private key.
    pub async fn roll_signing_key(
        &self,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
    ) -> ServiceResult<IssuedSigningKey> {
        let (pair, new) = self.new_signing_key();
        let (workspace, actor) = (&self.workspace.uid, self.caller.actor());
        let (_rolled, key) =
            self.service.mutations(self.caller).roll_signing_key(workspace, uid, grace, new, actor, self.now()).await?;
        Ok(IssuedSigningKey { key, pair })
    }

    pub async fn delete_signing_key(&self, uid: &SigningKeyUid) -> ServiceResult<WorkspaceSigningKey> {
        let store = self.service.mutations(self.caller);
        Ok(store.delete_signing_key(&self.workspace.uid, uid, self.caller.actor(), self.now()).await?)
    }
}
