//! API keys (server-side secrets): a digest and a masked prefix, never the
//! secret, and the whole life of one (docs/GUARANTEES.md, API keys): active ⇄ disabled,
//! active → rolled by a roll (the new key inherits the old one's profile),
//! any → deleted (terminal); expiry is not a state, a key past its
//! `expires_at` simply stops authenticating.

use std::ops::Deref;

use time::OffsetDateTime;

use crate::signing_key::{Deletion, GracePeriod};
use crate::values::timestamp;
use crate::verify::Denial;
use crate::{Actor, ApiKeyId, CoreError, Description, Name, OnLeak, SecretDigest, WorkspaceUid};

/// `active`, `disabled` or `rolled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKeyStatus {
    Active,
    Disabled,
    Rolled,
}

impl ApiKeyStatus {
    pub const ALL: [Self; 3] = [Self::Active, Self::Disabled, Self::Rolled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Rolled => "rolled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// One permission of an API key: 1–64 characters of `a-z 0-9 : . _ -`,
/// starting with a letter or digit, optionally ending in `:*`, which covers
/// every scope that starts with the part before the `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyScope(String);

impl KeyScope {
    pub const MAX_LEN: usize = 64;

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let invalid = || CoreError::InvalidScope(text.chars().take(Self::MAX_LEN + 1).collect());
        let body = text.strip_suffix(":*").map_or(text, |prefix| prefix);
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, ':' | '.' | '_' | '-');
        let starts_well = body.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if text.len() > Self::MAX_LEN || !starts_well || !body.chars().all(allowed) {
            return Err(invalid());
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for KeyScope {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The scopes of a key: at most 64, each once, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyScopes(Vec<KeyScope>);

impl KeyScopes {
    pub const MAX: usize = 64;

    pub fn parse<'a>(items: impl IntoIterator<Item = &'a str>) -> Result<Self, CoreError> {
        let mut scopes: Vec<KeyScope> = Vec::new();
        for item in items {
            if scopes.len() == Self::MAX {
                return Err(CoreError::TooManyScopes { max: Self::MAX });
            }
            let scope = KeyScope::parse(item)?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Ok(Self(scopes))
    }

    pub fn as_slice(&self) -> &[KeyScope] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The owner of a key in the customer's system: 1–255 characters, no
/// control or format characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalId(String);

impl ExternalId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let field = "external_id";
        if text.is_empty() {
            return Err(CoreError::Blank { field });
        }
        if text.chars().count() > Self::MAX_LEN {
            return Err(CoreError::TooLong { field, max: Self::MAX_LEN });
        }
        if text.chars().any(char::is_control) {
            return Err(CoreError::ControlCharacters { field });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form data the customer keeps on a key: the compact serialisation
/// of a JSON object, at most 4 KiB, returned as given by verification.
/// keys-core does not parse JSON (it is the pure domain): the wire layer
/// and the store hand it a serialised object, and this type keeps the size
/// rule and refuses text that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta(String);

impl KeyMeta {
    pub const MAX_BYTES: usize = 4096;

    /// `text` is a serialised JSON object.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        if !(text.starts_with('{') && text.ends_with('}')) {
            return Err(CoreError::MetaNotAnObject);
        }
        if text.len() > Self::MAX_BYTES {
            return Err(CoreError::MetaTooLarge { max: Self::MAX_BYTES });
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key is about, besides its secret: what a roll hands on to the
/// new key unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyProfile {
    pub name: Name,
    pub description: Option<Description>,
    pub scopes: KeyScopes,
    pub external_id: Option<ExternalId>,
    pub meta: Option<KeyMeta>,
    /// Authenticates strictly before this instant; `None` never expires.
    pub expires_at: Option<OffsetDateTime>,
}

impl ApiKeyProfile {
    /// A profile with just a name: no description, scopes, owner, meta or
    /// expiry.
    pub fn named(name: Name) -> Self {
        Self { name, description: None, scopes: KeyScopes::default(), external_id: None, meta: None, expires_at: None }
    }
}

/// The new secret's traces: the key's id, the digest of its secret and its
/// masked prefix (the secret itself never reaches the domain).
#[derive(Debug, Clone)]
pub struct ApiKeyMaterial {
    pub id: ApiKeyId,
    pub digest: SecretDigest,
    /// The first 10 characters of the secret and `*****`.
    pub masked_api_key: String,
}

/// Where a key is in its life, with what each stage carries. (Deletion is
/// orthogonal; expiry is not a stage.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeyLifecycle {
    Active,
    Disabled {
        at: OffsetDateTime,
        by: Option<Actor>,
    },
    /// Replaced by a roll; authenticates until its `expires_at`, which a
    /// rolled key always has.
    Rolled {
        at: OffsetDateTime,
        by: Option<Actor>,
    },
}

impl ApiKeyLifecycle {
    pub fn status(&self) -> ApiKeyStatus {
        match self {
            Self::Active => ApiKeyStatus::Active,
            Self::Disabled { .. } => ApiKeyStatus::Disabled,
            Self::Rolled { .. } => ApiKeyStatus::Rolled,
        }
    }
}

/// The stored fields of an API key: a digest and a masked prefix, never the
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyState {
    pub id: ApiKeyId,
    pub workspace: WorkspaceUid,
    pub digest: SecretDigest,
    pub masked_api_key: String,
    pub profile: ApiKeyProfile,
    pub lifecycle: ApiKeyLifecycle,
    /// Lags real use by up to the recording interval; never moves back.
    pub last_used_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub created_by: Option<Actor>,
    pub updated_at: OffsetDateTime,
    pub updated_by: Option<Actor>,
    pub deletion: Option<Deletion>,
}

impl Deref for ApiKeyState {
    type Target = ApiKeyProfile;
    fn deref(&self) -> &ApiKeyProfile {
        &self.profile
    }
}

/// An API key as storage keeps it, column by column: what
/// [`ApiKey::try_from`] checks before anything else may use it.
#[derive(Debug, Clone)]
pub struct StoredApiKey {
    pub id: ApiKeyId,
    pub workspace: WorkspaceUid,
    pub digest: SecretDigest,
    pub masked_api_key: String,
    pub profile: ApiKeyProfile,
    /// `active`, `disabled` or `rolled`.
    pub status: String,
    /// `disabled_at` and `disabled_by`, as stored: either may be missing.
    pub disabled: StoredStamp,
    pub rolled: StoredStamp,
    pub deleted: StoredStamp,
    pub last_used_at: Option<OffsetDateTime>,
    pub created: (OffsetDateTime, Option<Actor>),
    pub updated: (OffsetDateTime, Option<Actor>),
}

/// A moment and who caused it, as two nullable columns keep them.
pub type StoredStamp = (Option<OffsetDateTime>, Option<Actor>);

/// What a new API key is made of.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub workspace: WorkspaceUid,
    pub material: ApiKeyMaterial,
    pub profile: ApiKeyProfile,
}

/// What a PATCH changes: `None` leaves a field as it is; `Some(None)`
/// clears a nullable one (scopes clear to none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyPatch {
    pub name: Option<Name>,
    pub description: Option<Option<Description>>,
    pub expires_at: Option<Option<OffsetDateTime>>,
    pub scopes: Option<KeyScopes>,
    pub external_id: Option<Option<ExternalId>>,
    pub meta: Option<Option<KeyMeta>>,
}

/// What [`ApiKey::contain_leak`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakContainment {
    /// Active → disabled.
    Disabled,
    /// A rolled key's grace ended at the report.
    GraceEnded,
    /// Nothing: the workspace only reports leaks, or the key no longer
    /// authenticated.
    Unchanged,
}

/// A server-side API key. Its transitions are the only way to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey(ApiKeyState);

impl ApiKeyLifecycle {
    /// The stage a stored key is in, from its columns: a status, its
    /// disable and roll data, whether it has an expiry. `None` for what no
    /// transition makes (an active key with either, a disabled key without
    /// its time, a rolled key without its time or an expiry).
    fn from_columns(status: &str, disabled: StoredStamp, rolled: StoredStamp, expires: bool) -> Option<Self> {
        match (ApiKeyStatus::parse(status)?, disabled, rolled) {
            (ApiKeyStatus::Active, (None, None), (None, None)) => Some(Self::Active),
            (ApiKeyStatus::Disabled, (Some(at), by), (None, None)) => Some(Self::Disabled { at, by }),
            (ApiKeyStatus::Rolled, (None, None), (Some(at), by)) if expires => Some(Self::Rolled { at, by }),
            _ => None,
        }
    }
}

/// Rebuilds a key from storage, refusing what no transition can make (see
/// [`ApiKeyLifecycle::from_columns`] and [`Deletion::from_columns`]).
impl TryFrom<StoredApiKey> for ApiKey {
    type Error = CoreError;

    fn try_from(stored: StoredApiKey) -> Result<Self, CoreError> {
        let expires = stored.profile.expires_at.is_some();
        let lifecycle = ApiKeyLifecycle::from_columns(&stored.status, stored.disabled, stored.rolled, expires).ok_or(
            CoreError::InconsistentRecord {
                kind: "api key",
                reason: "status does not match its disable and roll data",
            },
        )?;
        let deletion = Deletion::from_columns("api key", stored.deleted.0, stored.deleted.1)?;
        Ok(Self(ApiKeyState {
            id: stored.id,
            workspace: stored.workspace,
            digest: stored.digest,
            masked_api_key: stored.masked_api_key,
            profile: stored.profile,
            lifecycle,
            last_used_at: stored.last_used_at,
            created_at: stored.created.0,
            created_by: stored.created.1,
            updated_at: stored.updated.0,
            updated_by: stored.updated.1,
            deletion,
        }))
    }
}

/// An expiry must lie ahead of the moment it is set.
fn future_expiry(expires_at: Option<OffsetDateTime>, now: OffsetDateTime) -> Result<(), CoreError> {
    match expires_at {
        Some(at) if at <= now => Err(CoreError::ExpiryInPast),
        _ => Ok(()),
    }
}

impl ApiKey {
    /// A new active key; its expiry, if any, must lie in the future.
    pub fn create(new: NewApiKey, actor: &Actor, now: OffsetDateTime) -> Result<Self, CoreError> {
        let now = timestamp(now);
        future_expiry(new.profile.expires_at, now)?;
        let NewApiKey { workspace, material: ApiKeyMaterial { id, digest, masked_api_key }, mut profile } = new;
        profile.expires_at = profile.expires_at.map(timestamp);
        Ok(Self(ApiKeyState {
            id,
            workspace,
            digest,
            masked_api_key,
            profile,
            lifecycle: ApiKeyLifecycle::Active,
            last_used_at: None,
            created_at: now,
            created_by: Some(actor.clone()),
            updated_at: now,
            updated_by: Some(actor.clone()),
            deletion: None,
        }))
    }

    pub fn status(&self) -> ApiKeyStatus {
        self.0.lifecycle.status()
    }

    pub fn is_deleted(&self) -> bool {
        self.0.deletion.is_some()
    }

    pub fn deleted_at(&self) -> Option<OffsetDateTime> {
        self.0.deletion.as_ref().map(|deletion| deletion.at)
    }

    /// Whether the key is past its expiry at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.0.profile.expires_at.is_some_and(|at| at <= now)
    }

    /// May the key authenticate at `now`? Deleted, disabled and expired
    /// keys may not (a rolled key may, until its expiry).
    pub fn authenticates(&self, now: OffsetDateTime) -> Result<(), Denial> {
        if self.is_deleted() {
            return Err(Denial::Deleted);
        }
        if matches!(self.0.lifecycle, ApiKeyLifecycle::Disabled { .. }) {
            return Err(Denial::KeyDisabled);
        }
        if self.is_expired(now) {
            return Err(Denial::KeyExpired);
        }
        Ok(())
    }

    fn live(&self) -> Result<(), CoreError> {
        if self.is_deleted() {
            return Err(CoreError::AlreadyDeleted { kind: "api key" });
        }
        Ok(())
    }

    fn touched(&mut self, actor: &Actor, now: OffsetDateTime) {
        self.0.updated_at = timestamp(now);
        self.0.updated_by = Some(actor.clone());
    }

    /// Changes the profile. A new expiry must lie ahead; a rolled key's
    /// expiry (the end of its grace) may only come sooner, never later or
    /// away.
    pub fn patch(&mut self, patch: ApiKeyPatch, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        self.live()?;
        let ApiKeyPatch { name, description, expires_at, scopes, external_id, meta } = patch;
        if let Some(expires_at) = expires_at {
            let expires_at = expires_at.map(timestamp);
            future_expiry(expires_at, now)?;
            if let (ApiKeyLifecycle::Rolled { .. }, Some(current)) = (&self.0.lifecycle, self.0.profile.expires_at) {
                if expires_at.is_none_or(|wanted| wanted > current) {
                    return Err(CoreError::RolledKeyExpiry);
                }
            }
            self.0.profile.expires_at = expires_at;
        }
        let profile = &mut self.0.profile;
        if let Some(name) = name {
            profile.name = name;
        }
        if let Some(description) = description {
            profile.description = description;
        }
        if let Some(scopes) = scopes {
            profile.scopes = scopes;
        }
        if let Some(external_id) = external_id {
            profile.external_id = external_id;
        }
        if let Some(meta) = meta {
            profile.meta = meta;
        }
        self.touched(actor, now);
        Ok(())
    }

    /// Active → disabled: the key stops authenticating until enabled.
    pub fn disable(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        self.live()?;
        if self.status() != ApiKeyStatus::Active {
            return Err(CoreError::ApiKeyNotActive { action: "disabled" });
        }
        self.0.lifecycle = ApiKeyLifecycle::Disabled { at: timestamp(now), by: Some(actor.clone()) };
        self.touched(actor, now);
        Ok(())
    }

    /// What a leak report does to the key under the workspace's `policy`
    /// (docs/API.md, Leaked keys): with `disable`, an active key is
    /// disabled and a rolled key's grace ends now, so that it stops
    /// authenticating either way; with `notify`, or for a key that no
    /// longer authenticates, nothing changes.
    pub fn contain_leak(
        &mut self,
        policy: OnLeak,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<LeakContainment, CoreError> {
        self.live()?;
        if policy == OnLeak::Notify || self.authenticates(now).is_err() {
            return Ok(LeakContainment::Unchanged);
        }
        match self.status() {
            ApiKeyStatus::Active => {
                self.disable(actor, now)?;
                Ok(LeakContainment::Disabled)
            }
            ApiKeyStatus::Rolled => {
                self.0.profile.expires_at = Some(timestamp(now));
                self.touched(actor, now);
                Ok(LeakContainment::GraceEnded)
            }
            ApiKeyStatus::Disabled => Ok(LeakContainment::Unchanged),
        }
    }

    /// Disabled → active.
    pub fn enable(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        self.live()?;
        if self.status() != ApiKeyStatus::Disabled {
            return Err(CoreError::ApiKeyNotDisabled);
        }
        self.0.lifecycle = ApiKeyLifecycle::Active;
        self.touched(actor, now);
        Ok(())
    }

    /// Active → rolled, and the key that replaces it: the new key inherits
    /// the profile (its expiry included); this one keeps authenticating
    /// until `min(now + grace, its expiry)` (no grace: it stops at once).
    pub fn roll(
        &mut self,
        grace: Option<GracePeriod>,
        material: ApiKeyMaterial,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<ApiKey, CoreError> {
        self.live()?;
        if self.status() != ApiKeyStatus::Active {
            return Err(CoreError::ApiKeyNotActive { action: "rolled" });
        }
        let now = timestamp(now);
        if self.is_expired(now) {
            return Err(CoreError::ApiKeyExpired);
        }
        let new = NewApiKey { workspace: self.0.workspace.clone(), material, profile: self.0.profile.clone() };
        let fresh = ApiKey::create(new, actor, now)?;
        let end_of_grace = now + grace.map(GracePeriod::duration).unwrap_or_default();
        let expires_at = self.0.profile.expires_at.map_or(end_of_grace, |at| at.min(end_of_grace));
        self.0.profile.expires_at = Some(expires_at);
        self.0.lifecycle = ApiKeyLifecycle::Rolled { at: now, by: Some(actor.clone()) };
        self.touched(actor, now);
        Ok(fresh)
    }

    /// Any → deleted, terminal.
    pub fn delete(&mut self, actor: &Actor, now: OffsetDateTime) -> Result<(), CoreError> {
        self.live()?;
        self.0.deletion = Some(Deletion { at: timestamp(now), by: Some(actor.clone()) });
        Ok(())
    }
}

impl Deref for ApiKey {
    type Target = ApiKeyState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
