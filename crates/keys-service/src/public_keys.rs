//! Public keys (publishable client keys): list, create, patch, rotate,
//! delete. The workspace's `PublicKeyRing` (in the store's transaction)
//! keeps the default-key rules.

use keys_core::{Description, Name, Page, Pagination, PublicKey, PublicKeyId, PublicKeyPatch};
use keys_crypto::PublicKeyValue;
use keys_store::PublicKeyChange;

use crate::{Caller, Service, ServiceResult};

/// What a new public key is made of.
#[derive(Debug, Clone)]
pub struct NewPublicKey {
    pub name: Name,
    pub description: Option<Description>,
}

impl Service {
    pub async fn list_public_keys(
        &self,
        caller: &Caller,
        workspace: &str,
        page: Pagination,
        include_deleted: bool,
    ) -> ServiceResult<Page<PublicKey>> {
        let workspace = self.workspace(caller, workspace).await?;
        Ok(self.store.list_public_keys(&workspace.uid, page, include_deleted).await?)
    }

    pub async fn create_public_key(
        &self,
        caller: &Caller,
        workspace: &str,
        new: NewPublicKey,
    ) -> ServiceResult<PublicKey> {
        let workspace = self.workspace(caller, workspace).await?;
        let now = self.now();
        let mut rng = self.rng();
        let value = PublicKeyValue::generate(&mut rng);
        let id = PublicKeyId::generate(now, &mut rng);
        let key = self
            .store
            .create_public_key(
                &workspace.uid,
                id,
                value.as_str().to_owned(),
                new.name,
                new.description,
                caller.actor(),
                now,
            )
            .await?;
        Ok(key)
    }

    pub async fn patch_public_key(
        &self,
        caller: &Caller,
        workspace: &str,
        id: &PublicKeyId,
        patch: PublicKeyPatch,
    ) -> ServiceResult<PublicKey> {
        let workspace = self.workspace(caller, workspace).await?;
        let change = PublicKeyChange::Patch(patch);
        Ok(self.store.change_public_key(&workspace.uid, id, change, caller.actor(), self.now()).await?)
    }

    /// New material for the same record; the old value stops working at once.
    pub async fn rotate_public_key(
        &self,
        caller: &Caller,
        workspace: &str,
        id: &PublicKeyId,
    ) -> ServiceResult<PublicKey> {
        let workspace = self.workspace(caller, workspace).await?;
        let value = PublicKeyValue::generate(&mut self.rng());
        let change = PublicKeyChange::Rotate(value.as_str().to_owned());
        Ok(self.store.change_public_key(&workspace.uid, id, change, caller.actor(), self.now()).await?)
    }

    pub async fn delete_public_key(
        &self,
        caller: &Caller,
        workspace: &str,
        id: &PublicKeyId,
    ) -> ServiceResult<PublicKey> {
        let workspace = self.workspace(caller, workspace).await?;
        Ok(self.store.delete_public_key(&workspace.uid, id, caller.actor(), self.now()).await?)
    }
}
