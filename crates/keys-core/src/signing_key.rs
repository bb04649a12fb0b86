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

/// Where a signing key is in its life, with what each stage carries: a
/// rolled key always has its roll time and its expiry, an active key has
/// neither. (Deletion is orthogonal: see [`Deletion`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKeyLifecycle {
    Active,
    Rolled {
        rolled_at: OffsetDateTime,
        rolled_by: Option<Actor>,
        /// Verifies strictly before this instant.
        expiry_at: OffsetDateTime,
    },
}

/// When and by whom a record was deleted (terminal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub at: OffsetDateTime,
    pub by: Option<Actor>,
}

/// Refuses an actor stored without the moment it acted at (`…_by` without
/// `…_at`), which no transition writes.
pub(crate) fn stamped(
    kind: &'static str,
    at: Option<OffsetDateTime>,
    by: Option<&Actor>,
    reason: &'static str,
) -> Result<(), CoreError> {
    match (at, by) {
        (None, Some(_)) => Err(CoreError::InconsistentRecord { kind, reason }),
        _ => Ok(()),
    }
}

impl Deletion {
    /// The deletion of a stored `kind` from its two columns; a deleter
    /// without a deletion time is no state any transition makes.
    pub fn from_columns(
        kind: &'static str,
        at: Option<OffsetDateTime>,
        by: Option<Actor>,
    ) -> Result<Option<Self>, CoreError> {
        match (at, by) {
            (Some(at), by) => Ok(Some(Self { at, by })),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(CoreError::InconsistentRecord { kind, reason: "deleted_by without deleted_at" }),
        }
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
    pub allowed_domains: Option<Vec<DomainPattern>>,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub lifecycle: SigningKeyLifecycle,
    pub deletion: Option<Deletion>,
}

/// A signing key as storage keeps it, column by column: what
/// [`WorkspaceSigningKey::try_from`] checks before anything else may use it.
#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub id: SigningKeyId,
    pub uid: SigningKeyUid,
    pub workspace: WorkspaceUid,
    pub public_key_pem: String,
    /// `active` or `rolled`.
    pub status: String,
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

impl TryFrom<StoredSigningKey> for WorkspaceSigningKey {
    type Error = CoreError;

    /// Rebuilds a key from storage, refusing what no transition can make: a
    /// rolled key without its roll time or expiry (or expiring before it was
    /// rolled), an active key with either, a deleter without a deletion.
    fn try_from(stored: StoredSigningKey) -> Result<Self, CoreError> {
        let inconsistent = |reason| CoreError::InconsistentRecord { kind: "signing key", reason };
        let lifecycle = match (SigningKeyStatus::parse(&stored.status), stored.rolled_at, stored.expiry_at) {
            (Some(SigningKeyStatus::Active), None, None) if stored.rolled_by.is_none() => SigningKeyLifecycle::Active,
            (Some(SigningKeyStatus::Active), ..) => return Err(inconsistent("an active key has roll data")),
            (Some(SigningKeyStatus::Rolled), Some(rolled_at), Some(expiry_at)) if expiry_at >= rolled_at => {
                SigningKeyLifecycle::Rolled { rolled_at, rolled_by: stored.rolled_by, expiry_at }
            }
            (Some(SigningKeyStatus::Rolled), ..) => {
                return Err(inconsistent("a rolled key needs rolled_at and an expiry_at not before it"))
            }
            (None, ..) => return Err(inconsistent("status is neither active nor rolled")),
        };
        let deletion = Deletion::from_columns("signing key", stored.deleted_at, stored.deleted_by)?;
        Ok(Self(SigningKeyState {
            id: stored.id,
            uid: stored.uid,
            workspace: stored.workspace,
            public_key_pem: stored.public_key_pem,
            allowed_domains: stored.allowed_domains,
            created_at: stored.created_at,
            created_by: stored.created_by,
            lifecycle,
            deletion,
        }))
    }
}

impl WorkspaceSigningKey {
    pub fn is_deleted(&self) -> bool {
        self.0.deletion.is_some()
    }

    pub fn status(&self) -> SigningKeyStatus {
        match self.0.lifecycle {
            SigningKeyLifecycle::Active => SigningKeyStatus::Active,
            SigningKeyLifecycle::Rolled { .. } => SigningKeyStatus::Rolled,
        }
    }

    /// When a rolled key stops verifying; `None` for the active key.
    pub fn expiry_at(&self) -> Option<OffsetDateTime> {
        match self.0.lifecycle {
            SigningKeyLifecycle::Active => None,
            SigningKeyLifecycle::Rolled { expiry_at, .. } => Some(expiry_at),
        }
    }

    pub fn rolled_at(&self) -> Option<OffsetDateTime> {
        match self.0.lifecycle {
            SigningKeyLifecycle::Active => None,
            SigningKeyLifecycle::Rolled { rolled_at, .. } => Some(rolled_at),
        }
    }

    pub fn rolled_by(&self) -> Option<&Actor> {
        match &self.0.lifecycle {
            SigningKeyLifecycle::Active => None,
            SigningKeyLifecycle::Rolled { rolled_by, .. } => rolled_by.as_ref(),
        }
    }

    pub fn deleted_at(&self) -> Option<OffsetDateTime> {
        self.0.deletion.as_ref().map(|deletion| deletion.at)
    }

    pub fn deleted_by(&self) -> Option<&Actor> {
        self.0.deletion.as_ref().and_then(|deletion| deletion.by.as_ref())
    }

    /// Whether a token signed by this key may verify at `now`: active keys
    /// do; rolled keys do strictly before their `expiry_at`; deleted keys
    /// never do.
    pub fn verifies_at(&self, now: OffsetDateTime) -> bool {
        if self.is_deleted() {
            return false;
        }
        match self.0.lifecycle {
            SigningKeyLifecycle::Active => true,
            SigningKeyLifecycle::Rolled { expiry_at, .. } => now < expiry_at,
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
        self.keys.iter().find(|key| key.status() == SigningKeyStatus::Active)
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
            .filter_map(WorkspaceSigningKey::expiry_at)
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
            allowed_domains: None,
            created_at: now,
            created_by: Some(actor.clone()),
            lifecycle: SigningKeyLifecycle::Active,
            deletion: None,
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
        if self.keys[index].status() != SigningKeyStatus::Active {
            return Err(CoreError::SigningKeyNotActive);
        }
        let fresh = self.new_active(new, actor, now);
        self.keys[index].0.lifecycle = SigningKeyLifecycle::Rolled {
            rolled_at: now,
            rolled_by: Some(actor.clone()),
            expiry_at: now + grace.map_or(Duration::ZERO, GracePeriod::duration),
        };
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
        key.0.deletion = Some(Deletion { at: timestamp(now), by: Some(actor.clone()) });
        Ok(key)
    }
}
