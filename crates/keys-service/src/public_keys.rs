//! Public keys (publishable client keys): list, create, patch, rotate,
//! delete, in a workspace the caller reaches. The workspace's
//! `PublicKeyRing` (in the store's transaction) keeps the default-key rules.

use keys_core::{Page, PublicKey, PublicKeyId, PublicKeyPatch};
use keys_crypto::PublicKeyValue;
use keys_store::Mutations as _;
use keys_store::PublicKeyChange;

use crate::workspaces::{InWorkspace, Listing, NewKey};
use crate::ServiceResult;

/// What a new public key is made of.
pub type NewPublicKey = NewKey;

impl InWorkspace<'_> {
    pub async fn list_public_keys(&self, listing: Listing) -> ServiceResult<Page<PublicKey>> {
        let store = &self.service.store;
        Ok(store.list_public_keys(&self.workspace.uid, listing).await?)
    }

    pub async fn create_public_key(&self, new: NewPublicKey) -> ServiceResult<PublicKey> {
        let now = self.now();
        let mut rng = self.service.rng();
        let value = PublicKeyValue::generate(&mut rng).as_str().to_owned();
        let id = PublicKeyId::generate(now, &mut rng);
        let workspace = self.workspace.uid.clone();
        let new = keys_core::NewPublicKey { id, workspace, value, name: new.name, description: new.description };
        Ok(self.service.mutations(self.caller).create_public_key(new, self.caller.actor(), now).await?)
    }

    pub async fn patch_public_key(&self, id: &PublicKeyId, patch: PublicKeyPatch) -> ServiceResult<PublicKey> {
        self.change_public_key(id, PublicKeyChange::Patch(patch)).await
    }

    /// New material for the same record; the old value stops working at once.
    pub async fn rotate_public_key(&self, id: &PublicKeyId) -> ServiceResult<PublicKey> {
        let value = PublicKeyValue::generate(&mut self.service.rng());
        self.change_public_key(id, PublicKeyChange::Rotate(value.as_str().to_owned())).await
    }

    async fn change_public_key(&self, id: &PublicKeyId, change: PublicKeyChange) -> ServiceResult<PublicKey> {
        let store = self.service.mutations(self.caller);
        Ok(store.change_public_key(&self.workspace.uid, id, change, self.caller.actor(), self.now()).await?)
    }

    pub async fn delete_public_key(&self, id: &PublicKeyId) -> ServiceResult<PublicKey> {
        let store = self.service.mutations(self.caller);
        Ok(store.delete_public_key(&self.workspace.uid, id, self.caller.actor(), self.now()).await?)
    }
}
