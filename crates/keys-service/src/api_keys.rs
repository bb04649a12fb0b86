//! API keys (server-side secrets) in a workspace the caller reaches: list,
//! get, create, patch, disable, enable, roll, delete, and import of keys
//! made elsewhere. Every transition is keys-core's; the secret of a create
//! or roll exists in plaintext only in the [`IssuedApiKey`] it returns, and
//! an imported key's text only until its digest is computed.

use keys_core::{
    ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyPatch, ApiKeyPrefix, ApiKeyProfile, GracePeriod, Page, SecretDigest,
};
use keys_crypto::imported::masked_digest;
use keys_crypto::{ApiKeySecret, ImportedKeyText};
use keys_store::{Acting, ApiKeyChange, ImportApiKeys, ImportedApiKeys, StoreError, StoredDigests};
use keys_store::{Mutations as _, Run as _};
use rand_core::{CryptoRng, RngCore};
use time::OffsetDateTime;

use crate::workspaces::{InWorkspace, Listing};
use crate::{ServiceError, ServiceResult};

/// The most entries one import takes (the API's limit, and the CLI's batch).
pub const MAX_IMPORT_BATCH: usize = 1_000;

/// The secret of an imported key, as its owner hands it over.
#[derive(Debug)]
pub enum ImportedSecret {
    /// The plaintext, digested at once and then dropped (zeroized).
    Text(ImportedKeyText),
    /// The SHA-256 of the plaintext, as keysd computes it.
    Sha256(SecretDigest),
}

/// One key to import: its secret and the fields a create takes.
#[derive(Debug)]
pub struct ImportEntry {
    pub secret: ImportedSecret,
    pub profile: ApiKeyProfile,
}

/// What a new API key is made of: its profile (name, description, scopes,
/// owner, meta, expiry).
pub type NewApiKey = ApiKeyProfile;

/// A key just created (or made by a roll), with its secret: the one place
/// the plaintext exists.
#[derive(Debug)]
pub struct IssuedApiKey {
    pub key: ApiKey,
    pub secret: ApiKeySecret,
}

/// A fresh secret (with the workspace's prefix, if it has one) and what
/// the domain keeps of it.
fn material<R: RngCore + CryptoRng>(
    prefix: Option<&ApiKeyPrefix>,
    now: OffsetDateTime,
    rng: &mut R,
) -> (ApiKeyMaterial, ApiKeySecret) {
    let secret = ApiKeySecret::generate_for(prefix, rng);
    let material =
        ApiKeyMaterial { id: ApiKeyId::generate(now, rng), digest: secret.digest(), masked_api_key: secret.masked() };
    (material, secret)
}

impl InWorkspace<'_> {
    pub async fn list_api_keys(&self, listing: Listing) -> ServiceResult<Page<ApiKey>> {
        let store = &self.service.store;
        Ok(store.list_api_keys(&self.workspace.uid, listing).await?)
    }

    /// One key of the workspace, deleted or not.
    pub async fn get_api_key(&self, id: &ApiKeyId) -> ServiceResult<ApiKey> {
        let found = self.service.store.api_key(&self.workspace.uid, id).await?;
        Ok(found.ok_or(StoreError::NotFound { kind: "api key" })?)
    }

    /// Creates a key; the store keeps only the secret's digest.
    pub async fn create_api_key(&self, profile: NewApiKey) -> ServiceResult<IssuedApiKey> {
        self.create_metered_api_key(profile, None).await
    }

    /// Creates a key with its rate limits and credits, in one transaction
    /// (docs/METERING.md); `None` meters nothing.
    pub async fn create_metered_api_key(
        &self,
        profile: NewApiKey,
        setting: Option<keys_store::MeterSetting>,
    ) -> ServiceResult<IssuedApiKey> {
        let now = self.now();
        let (material, secret) = material(self.workspace.api_key_prefix.as_ref(), now, &mut self.service.rng());
        let new = keys_core::NewApiKey { workspace: self.workspace.uid.clone(), material, profile };
        let key = ApiKey::create(new, self.caller.actor(), now).map_err(StoreError::Refused)?;
        let store = self.service.mutations(self.caller);
        match setting {
            Some(setting) => {
                store.run(keys_store::CreateMeteredApiKey { key: key.clone(), setting }).await?;
            }
            None => store.create_api_key(&key).await?,
        }
        Ok(IssuedApiKey { key, secret })
    }

    pub async fn patch_api_key(&self, id: &ApiKeyId, patch: ApiKeyPatch) -> ServiceResult<ApiKey> {
        self.change_api_key(id, ApiKeyChange::Patch(patch)).await
    }

    /// Active → disabled: the key stops authenticating on every replica.
    pub async fn disable_api_key(&self, id: &ApiKeyId) -> ServiceResult<ApiKey> {
        self.change_api_key(id, ApiKeyChange::Disable).await
    }

    /// Disabled → active.
    pub async fn enable_api_key(&self, id: &ApiKeyId) -> ServiceResult<ApiKey> {
        self.change_api_key(id, ApiKeyChange::Enable).await
    }

    /// Replaces an active key by a new one with the same profile; the old
    /// one keeps authenticating for the grace (capped by its expiry).
    pub async fn roll_api_key(&self, id: &ApiKeyId, grace: Option<GracePeriod>) -> ServiceResult<IssuedApiKey> {
        let now = self.now();
        let (material, secret) = material(self.workspace.api_key_prefix.as_ref(), now, &mut self.service.rng());
        let store = self.service.mutations(self.caller);
        let (_rolled, key) =
            store.roll_api_key(&self.workspace.uid, id, grace, material, self.caller.actor(), now).await?;
        Ok(IssuedApiKey { key, secret })
    }

    /// Stores keys made elsewhere, 1 to [`MAX_IMPORT_BATCH`] of them, all
    /// or nothing in one transaction (see `keys_store::ImportApiKeys`); an
    /// imported key verifies by its original text like a created one. A
    /// refused entry is named by its index (`keys[3]: …`).
    pub async fn import_api_keys(
        &self,
        entries: Vec<ImportEntry>,
        stored: StoredDigests,
    ) -> ServiceResult<ImportedApiKeys> {
        if entries.is_empty() || entries.len() > MAX_IMPORT_BATCH {
            return Err(ServiceError::Invalid(format!("keys must hold 1 to {MAX_IMPORT_BATCH} entries")));
        }
        let now = self.now();
        let mut rng = self.service.rng();
        let mut keys = Vec::with_capacity(entries.len());
        for (index, ImportEntry { secret, profile }) in entries.into_iter().enumerate() {
            let (digest, masked_api_key) = match secret {
                ImportedSecret::Text(text) => (text.digest(), text.masked()),
                ImportedSecret::Sha256(digest) => (digest, masked_digest(&digest)),
            };
            let material = ApiKeyMaterial { id: ApiKeyId::generate(now, &mut rng), digest, masked_api_key };
            let new = keys_core::NewApiKey { workspace: self.workspace.uid.clone(), material, profile };
            let key = ApiKey::create(new, self.caller.actor(), now)
                .map_err(|refusal| ServiceError::Invalid(format!("keys[{index}]: {refusal}")))?;
            keys.push(key);
        }
        let acting = Acting::new(self.workspace.uid.clone(), self.caller.actor().clone(), now);
        let store = self.service.mutations(self.caller);
        Ok(store.run(ImportApiKeys { acting, keys, stored }).await?.output)
    }

    pub async fn delete_api_key(&self, id: &ApiKeyId) -> ServiceResult<ApiKey> {
        self.change_api_key(id, ApiKeyChange::Delete).await
    }

    async fn change_api_key(&self, id: &ApiKeyId, change: ApiKeyChange) -> ServiceResult<ApiKey> {
        let store = self.service.mutations(self.caller);
        Ok(store.change_api_key(&self.workspace.uid, id, change, self.caller.actor(), self.now()).await?)
    }
}
