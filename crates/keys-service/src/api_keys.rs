//! API keys (server-side secrets): list, create, delete, in a workspace the
//! caller reaches.

use keys_core::{ApiKey, ApiKeyId, Page};
use keys_crypto::ApiKeySecret;

use crate::workspaces::{InWorkspace, Listing, NewKey};
use crate::ServiceResult;

/// What a new API key is made of.
pub type NewApiKey = NewKey;

/// A key just created, with its secret: the one place the plaintext exists.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub secret: ApiKeySecret,
}

impl InWorkspace<'_> {
    pub async fn list_api_keys(&self, listing: Listing) -> ServiceResult<Page<ApiKey>> {
        let store = &self.service.store;
        Ok(store.list_api_keys(&self.workspace.uid, listing.page, listing.include_deleted).await?)
    }

    /// Creates a key; the store keeps only the secret's digest.
    pub async fn create_api_key(&self, new: NewApiKey) -> ServiceResult<IssuedApiKey> {
        let now = self.now();
        let mut rng = self.service.rng();
        let secret = ApiKeySecret::generate(&mut rng);
        let key = ApiKey::create(
            keys_core::NewApiKey {
                id: ApiKeyId::generate(now, &mut rng),
                workspace: self.workspace.uid.clone(),
                name: new.name,
                description: new.description,
                digest: secret.digest(),
                masked_api_key: secret.masked(),
            },
            self.caller.actor(),
            now,
        );
        self.service.store.create_api_key(&key).await?;
        Ok(IssuedApiKey { key, secret })
    }

    pub async fn delete_api_key(&self, id: &ApiKeyId) -> ServiceResult<ApiKey> {
        let store = &self.service.store;
        Ok(store.delete_api_key(&self.workspace.uid, id, self.caller.actor(), self.now()).await?)
    }
}
