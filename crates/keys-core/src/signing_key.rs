//! Workspace signing keys (ES256) and the ring that keeps the
//! one-active-key rule.

use std::ops::Deref;

use time::{Duration, OffsetDateTime};

use crate::values::timestamp;
use crate::{Actor, CoreError, DomainPattern, SigningKeyId, SigningKeyUid, WorkspaceUid};

/// `active` or `rolled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningKeyStatus {
    Active,
    Rolled,
}

impl SigningKeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Rolled => "rolled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "rolled" => Some(Self::Rolled),
            _ => None,
        }
    }
}

/// How long a rolled key keeps verifying: 0 (stops at once) to 30 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracePeriod(Duration);

impl GracePeriod {
    pub const MAX_SECONDS: u64 = 30 * 24 * 60 * 60;

    pub fn from_seconds(seconds: u64) -> Result<Self, CoreError> {
        if seconds > Self::MAX_SECONDS {
            return Err(CoreError::InvalidGracePeriod { max: Self::MAX_SECONDS });
        }
        // The bound above keeps the value far inside i64.
        Ok(Self(Duration::seconds(seconds as i64)))
    }

    pub fn duration(self) -> Duration {
        self.0
    }
}

/// The stored half of a workspace signing key: the public key only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyState {
    pub id: SigningKeyId,
    pub uid: SigningKeyUid,
    pub workspace: WorkspaceUid,
    /// SPKI PEM of the P-256 public key.
    pub public_key_pem: String,
    pub status: SigningKeyStatus,
    pub allowed_domains: Option<Vec<DomainPattern>>,
    pub expiry_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub rolled_at: Option<OffsetDateTime>,
    pub rolled_by: Option<Actor>,
    pub deleted_at: Option<OffsetDateTime>,
    pub deleted_by: Option<Actor>,
}

/// A workspace signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSigningKey(SigningKeyState);

impl WorkspaceSigningKey {
    pub fn restore(state: SigningKeyState) -> Self {
        Self(state)
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deleted_at.is_some()
    }

    /// Whether a token signed by this key may verify at `now`: active keys
    /// do; rolled keys do strictly before their `expiry_at`; deleted keys
    /// never do.
    pub fn verifies_at(&self, now: OffsetDateTime) -> bool {
        if self.is_deleted() {
            return false;
        }
        match self.0.status {
            SigningKeyStatus::Active => true,
            SigningKeyStatus::Rolled => self.0.expiry_at.is_some_and(|expiry| now < expiry),
        }
    }
}

impl Deref for WorkspaceSigningKey {
    type Target = SigningKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The material of a freshly generated key, as far as the domain needs it.
#[derive(Debug, Clone)]
pub struct NewSigningKey {
    pub id: SigningKeyId,
    pub uid: SigningKeyUid,
    pub public_key_pem: String,
}

/// The live (not deleted) signing keys of one workspace: the aggregate that
/// owns "at most one non-deleted active signing key per workspace".
#[derive(Debug, Clone)]
pub struct SigningKeyRing {
    workspace: WorkspaceUid,
    keys: Vec<WorkspaceSigningKey>,
}

impl SigningKeyRing {
    /// Rebuilds the ring of `workspace` from its stored keys; deleted keys
    /// are ignored.
    pub fn restore(workspace: WorkspaceUid, keys: Vec<WorkspaceSigningKey>) -> Self {
        Self { workspace, keys: keys.into_iter().filter(|key| !key.is_deleted()).collect() }
    }

    pub fn keys(&self) -> &[WorkspaceSigningKey] {
        &self.keys
    }

    pub fn active(&self) -> Option<&WorkspaceSigningKey> {
        self.keys.iter().find(|key| key.status == SigningKeyStatus::Active)
    }

    pub fn get(&self, uid: &SigningKeyUid) -> Option<&WorkspaceSigningKey> {
        self.keys.iter().find(|key| &key.uid == uid)
    }

    /// The keys that verify at `now` (what the JWKS publishes).
    pub fn verifying_at(&self, now: OffsetDateTime) -> impl Iterator<Item = &WorkspaceSigningKey> {
        self.keys.iter().filter(move |key| key.verifies_at(now))
    }

    /// How long an outside verifier may cache the JWKS published at `now`:
    /// at most `cap_seconds`, and never past the earliest `expiry_at` of a
    /// listed (rolled) key, so a cache never keeps a key that stopped
    /// verifying. Whole seconds, rounded down.
    pub fn jwks_max_age(&self, now: OffsetDateTime, cap_seconds: u32) -> u32 {
        self.verifying_at(now)
            .filter_map(|key| key.expiry_at)
            .map(|expiry| (expiry - now).whole_seconds().clamp(0, i64::from(cap_seconds)))
            .min()
            .map_or(cap_seconds, |seconds| u32::try_from(seconds).unwrap_or(0))
    }

    fn new_active(&self, new: NewSigningKey, actor: &Actor, now: OffsetDateTime) -> WorkspaceSigningKey {
        WorkspaceSigningKey(SigningKeyState {
            id: new.id,
            uid: new.uid,
            workspace: self.workspace.clone(),
            public_key_pem: new.public_key_pem,
            status: SigningKeyStatus::Active,
            allowed_domains: None,
            expiry_at: None,
            created_at: now,
            created_by: Some(actor.clone()),
            rolled_at: None,
            rolled_by: None,
            deleted_at: None,
            deleted_by: None,
        })
    }

    /// Creates the workspace's active key; refused while one exists.
    pub fn create(
        &mut self,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<&WorkspaceSigningKey, CoreError> {
        if self.active().is_some() {
            return Err(CoreError::OnlyOneActiveSigningKey);
        }
        let key = self.new_active(new, actor, timestamp(now));
        self.keys.push(key);
        let last = self.keys.len() - 1;
        Ok(&self.keys[last])
    }

    /// Rolls the active key `uid`: it becomes `rolled` (verifying until now
    /// plus the grace period, or not at all without one) and a new active key
    /// takes its place. Returns (the rolled key, the new key).
    pub fn roll(
        &mut self,
        uid: &SigningKeyUid,
        grace: Option<GracePeriod>,
        new: NewSigningKey,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<(&WorkspaceSigningKey, &WorkspaceSigningKey), CoreError> {
        let now = timestamp(now);
        let index =
            self.keys.iter().position(|key| &key.uid == uid).ok_or(CoreError::NotFound { kind: "signing key" })?;
        if self.keys[index].status != SigningKeyStatus::Active {
            return Err(CoreError::SigningKeyNotActive);
        }
        let fresh = self.new_active(new, actor, now);
        let rolled = &mut self.keys[index].0;
        rolled.status = SigningKeyStatus::Rolled;
        rolled.rolled_at = Some(now);
        rolled.rolled_by = Some(actor.clone());
        rolled.expiry_at = Some(now + grace.map_or(Duration::ZERO, GracePeriod::duration));
        self.keys.push(fresh);
        let last = self.keys.len() - 1;
        Ok((&self.keys[index], &self.keys[last]))
    }

    /// Deletes a live key (active or rolled) and returns it.
    pub fn delete(
        &mut self,
        uid: &SigningKeyUid,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<WorkspaceSigningKey, CoreError> {
        let index =
            self.keys.iter().position(|key| &key.uid == uid).ok_or(CoreError::NotFound { kind: "signing key" })?;
        let mut key = self.keys.remove(index);
        key.0.deleted_at = Some(timestamp(now));
        key.0.deleted_by = Some(actor.clone());
        Ok(key)
    }
}
