//! Organisation signing keys (the Versori dialect): the public key only.

use std::ops::Deref;

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::{Actor, CoreError, Name, OrganisationId, OrganisationKeyId};

/// The stored half of an organisation signing key: the public key only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationSigningKeyState {
    pub id: OrganisationKeyId,
    pub organisation_id: OrganisationId,
    pub name: Name,
    /// SPKI PEM of the RSA-2048 public key.
    pub public_key_pem: String,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub deleted_at: Option<OffsetDateTime>,
    pub deleted_by: Option<Actor>,
}

/// Rebuilds a key from storage, refusing a deleter recorded without its
/// time.
impl TryFrom<OrganisationSigningKeyState> for OrganisationSigningKey {
    type Error = CoreError;

    fn try_from(state: OrganisationSigningKeyState) -> Result<Self, CoreError> {
        let kind = "organisation signing key";
        crate::signing_key::stamped(kind, state.deleted_at, state.deleted_by.as_ref(), "deleted_by alone")?;
        Ok(Self(state))
    }
}

/// An organisation signing key (RS256). Any number per organisation; delete
/// is terminal and invalidates every JWT the key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationSigningKey(OrganisationSigningKeyState);

impl OrganisationSigningKey {
    pub fn create(
        id: OrganisationKeyId,
        organisation_id: OrganisationId,
        name: Name,
        public_key_pem: String,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Self {
        Self(OrganisationSigningKeyState {
            id,
            organisation_id,
            name,
            public_key_pem,
            created_at: timestamp(now),
            created_by: Some(actor.clone()),
            deleted_at: None,
            deleted_by: None,
        })
    }

    /// Whether the key may verify tokens (and so be listed in the JWKS):
    /// until it is deleted. The one rule both the JWKS and
    /// [`crate::verify::decide_organisation_key`] follow.
    pub fn verifies(&self) -> bool {
        !self.is_deleted()
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deleted_at.is_some()
    }

    /// Deletes the key; deleting a deleted key is refused.
    pub fn delete(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        if self.is_deleted() {
            return Err(CoreError::AlreadyDeleted { kind: "organisation signing key" });
        }
        self.0.deleted_at = Some(timestamp(now));
        self.0.deleted_by = Some(actor.clone());
        Ok(())
    }
}

impl Deref for OrganisationSigningKey {
    type Target = OrganisationSigningKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Where a page of an organisation's keys ends: the list is ordered newest
/// first (`created_at`, then `id`, both descending), so the next page holds
/// the keys strictly after this one in that order. Stable under inserts and
/// deletes, unlike an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPosition {
    pub created_at: OffsetDateTime,
    pub id: OrganisationKeyId,
}

impl KeyPosition {
    /// The position of `key` in the list.
    pub fn of(key: &OrganisationSigningKey) -> Self {
        Self { created_at: key.created_at, id: key.id.clone() }
    }
}

/// Which page of an organisation's live keys: at most `limit` (1 to
/// [`KeyPage::MAX_LIMIT`], default [`KeyPage::DEFAULT_LIMIT`]), after a
/// position or from the newest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    limit: u32,
    after: Option<KeyPosition>,
}

impl KeyPage {
    pub const DEFAULT_LIMIT: u32 = 100;
    pub const MAX_LIMIT: u32 = 1_000;

    pub fn new(limit: u32, after: Option<KeyPosition>) -> Result<Self, CoreError> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(CoreError::InvalidKeyPageLimit { max: Self::MAX_LIMIT });
        }
        Ok(Self { limit, after })
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn after(&self) -> Option<&KeyPosition> {
        self.after.as_ref()
    }

    /// The page from what a lookup fetched for it: up to `limit + 1` keys
    /// in list order, the one beyond the limit only telling that more
    /// follow.
    pub fn slice(&self, mut fetched: Vec<OrganisationSigningKey>) -> KeySlice {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = fetched.len() > limit;
        fetched.truncate(limit);
        let next = if more { fetched.last().map(KeyPosition::of) } else { None };
        KeySlice { keys: fetched, next }
    }
}

impl Default for KeyPage {
    fn default() -> Self {
        Self { limit: Self::DEFAULT_LIMIT, after: None }
    }
}

/// One page of an organisation's keys, and where the next one starts
/// (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySlice {
    pub keys: Vec<OrganisationSigningKey>,
    pub next: Option<KeyPosition>,
}
