//! API keys (server-side secrets): a digest and a masked prefix, never the
//! secret; active until deleted, and deleted is terminal.

use std::ops::Deref;

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, ApiKeyId, CoreError, Description, Name, SecretDigest, WorkspaceUid};

/// The stored fields of an API key: a digest and a masked prefix, never the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyState {
    pub id: ApiKeyId,
    pub workspace: WorkspaceUid,
    pub name: Name,
    pub description: Option<Description>,
    pub digest: SecretDigest,
    /// The first 10 characters of the secret and `*****`.
    pub masked_api_key: String,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub deleted_at: Option<OffsetDateTime>,
    pub deleted_by: Option<Actor>,
}

/// What a new API key is made of: its id and workspace, what the client
/// named it, and what is kept of its secret (the digest and the masked
/// prefix; the secret itself never reaches the domain).
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub workspace: WorkspaceUid,
    pub name: Name,
    pub description: Option<Description>,
    pub digest: SecretDigest,
    pub masked_api_key: String,
}

/// A server-side API key. Active until deleted; deleted is terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey(ApiKeyState);

impl ApiKey {
    #[allow(clippy::too_many_arguments)]
    pub fn create(new: NewApiKey, actor: &Actor, now: OffsetDateTime) -> Self {
        let NewApiKey { id, workspace, name, description, digest, masked_api_key } = new;
        Self(ApiKeyState {
            id,
            workspace,
            name,
            description,
            digest,
            masked_api_key,
            created_at: timestamp(now),
            created_by: Some(actor.clone()),
            deleted_at: None,
            deleted_by: None,
        })
    }

    pub fn restore(state: ApiKeyState) -> Self {
        Self(state)
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deleted_at.is_some()
    }

    pub fn delete(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        if self.is_deleted() {
            return Err(CoreError::AlreadyDeleted { kind: "api key" });
        }
        self.0.deleted_at = Some(timestamp(now));
        self.0.deleted_by = Some(actor.clone());
        Ok(())
    }
}

impl Deref for ApiKey {
    type Target = ApiKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
