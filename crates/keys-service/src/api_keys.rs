//! API keys (server-side secrets): list, create, delete.

use keys_core::{ApiKey, ApiKeyId, Description, Name, Page, Pagination};
use keys_crypto::ApiKeySecret;

use crate::{Caller, Service, ServiceResult};

/// What a new API key is made of.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: Name,
    pub description: Option<Description>,
}

/// A key just created, with its secret: the one place the plaintext exists.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub secret: ApiKeySecret,
}

impl Service {
    pub async fn list_api_keys(
        &self,
        caller: &Caller,
        workspace: &str,
        page: Pagination,
        include_deleted: bool,
    ) -> ServiceResult<Page<ApiKey>> {
        let workspace = self.workspace(caller, workspace).await?;
        Ok(self.store.list_api_keys(&workspace.uid, page, include_deleted).await?)
    }

    /// Creates a key in the caller's workspace `workspace` (a slug); the
    /// store keeps only the secret's digest.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        workspace: &str,
        new: NewApiKey,
    ) -> ServiceResult<IssuedApiKey> {
        let workspace = self.workspace(caller, workspace).await?;
        let now = self.now();
        let mut rng = self.rng();
        let secret = ApiKeySecret::generate(&mut rng);
        let key = ApiKey::create(
            ApiKeyId::generate(now, &mut rng),
            workspace.uid.clone(),
            new.name,
            new.description,
            secret.digest(),
            secret.masked(),
            caller.actor(),
            now,
        );
        self.store.create_api_key(&key).await?;
        Ok(IssuedApiKey { key, secret })
    }

    pub async fn delete_api_key(&self, caller: &Caller, workspace: &str, id: &ApiKeyId) -> ServiceResult<ApiKey> {
        let workspace = self.workspace(caller, workspace).await?;
        Ok(self.store.delete_api_key(&workspace.uid, id, caller.actor(), self.now()).await?)
    }
}
