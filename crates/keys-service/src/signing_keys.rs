//! Workspace signing keys: list, create, roll, delete. The private half is
//! generated here, returned once in [`IssuedSigningKey`], and never stored;
//! the one-active-key rule is the workspace's `SigningKeyRing`, run in the
//! store's transaction and backed by a partial unique index.

use keys_core::{GracePeriod, NewSigningKey, Page, Pagination, SigningKeyId, SigningKeyUid, WorkspaceSigningKey};
use keys_crypto::EcKeyPair;

use crate::{Caller, Service, ServiceResult};

/// A signing key just created, with its key pair: the one place the private
/// key exists.
#[derive(Debug)]
pub struct IssuedSigningKey {
    pub key: WorkspaceSigningKey,
    pub pair: EcKeyPair,
}

impl Service {
    pub async fn list_signing_keys(
        &self,
        caller: &Caller,
        workspace: &str,
        page: Pagination,
        include_deleted: bool,
    ) -> ServiceResult<Page<WorkspaceSigningKey>> {
        let workspace = self.workspace(caller, workspace).await?;
        Ok(self.store.list_signing_keys(&workspace.uid, page, include_deleted).await?)
    }

    /// A fresh P-256 key pair and the domain's view of it (public half only).
    fn new_signing_key(&self) -> (EcKeyPair, NewSigningKey) {
        let now = self.now();
        let mut rng = self.rng();
        let pair = EcKeyPair::generate(&mut rng);
        let new = NewSigningKey {
            id: SigningKeyId::generate(now, &mut rng),
            uid: SigningKeyUid::generate(now, &mut rng),
            public_key_pem: pair.public_key_pem(),
        };
        (pair, new)
    }

    pub async fn create_signing_key(&self, caller: &Caller, workspace: &str) -> ServiceResult<IssuedSigningKey> {
        let workspace = self.workspace(caller, workspace).await?;
        let (pair, new) = self.new_signing_key();
        let key = self.store.create_signing_key(&workspace.uid, new, caller.actor(), self.now()).await?;
        Ok(IssuedSigningKey { key, pair })
    }

    /// Rolls the active key `uid`: it becomes `rolled` (verifying until
    /// `now + grace`) and a new active key is returned with its private key.
    pub async fn roll_signing_key(
        &self,
        caller: &Caller,
        workspace: &str,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
    ) -> ServiceResult<IssuedSigningKey> {
        let workspace = self.workspace(caller, workspace).await?;
        let (pair, new) = self.new_signing_key();
        let (_rolled, key) =
            self.store.roll_signing_key(&workspace.uid, uid, grace, new, caller.actor(), self.now()).await?;
        Ok(IssuedSigningKey { key, pair })
    }

    pub async fn delete_signing_key(
        &self,
        caller: &Caller,
        workspace: &str,
        uid: &SigningKeyUid,
    ) -> ServiceResult<WorkspaceSigningKey> {
        let workspace = self.workspace(caller, workspace).await?;
        Ok(self.store.delete_signing_key(&workspace.uid, uid, caller.actor(), self.now()).await?)
    }
}
