//! Service tokens: their metadata, never the token (only its digest and a
//! masked prefix), their [`Role`], the workspaces they are limited to, and
//! the rules of their life (docs/GUARANTEES.md, Service tokens): what each role permits, who may
//! be given which token, when a token authenticates, and that an
//! organisation never loses its last unexpired admin token through a
//! revocation.

use std::ops::Deref;

use time::OffsetDateTime;

use crate::values::timestamp;
use crate::verify::Scope;
use crate::{Actor, CoreError, Name, Organisation, OrganisationId, SecretDigest, ServiceTokenId, WorkspaceSlug};

/// What a service token may do. Each role includes the ones below it:
/// `admin` ⊃ `manage` ⊃ `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Only `/v1/verify/…` and forward authentication: what a gateway needs.
    Verify,
    /// Also lists workspaces and manages the keys of its workspaces.
    Manage,
    /// Everything in its organisation, workspaces and service tokens too.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Manage, Role::Verify];

    pub fn parse(text: &str) -> Result<Self, CoreError> {
        Self::ALL.into_iter().find(|role| role.as_str() == text).ok_or(CoreError::InvalidRole)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manage => "manage",
            Self::Verify => "verify",
        }
    }

    /// Whether a token of this role may perform an operation that needs
    /// `permission`.
    pub fn permits(self, permission: Permission) -> bool {
        self >= permission.least_role()
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation needs of its caller. Every authenticated route states
/// one (keys-http's route table); [`Role::permits`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Verify credentials: `/v1/verify/…`, `/v1/auth/forward`.
    Verify,
    /// List the workspaces the token reaches.
    ReadWorkspaces,
    /// Create, read, change and delete the keys of a workspace, and
    /// organisation keys.
    ManageKeys,
    /// Create workspaces.
    ManageWorkspaces,
    /// List, create and revoke service tokens.
    ManageServiceTokens,
    /// Read the audit trail.
    ReadAudit,
    /// Report an API key of the organisation as leaked
    /// (`POST /v1/leak_report/`): any token may, as any scanner might
    /// find a key.
    ReportLeaks,
    /// Create, read, change and delete webhook endpoints, and see and
    /// retry their deliveries.
    ManageWebhooks,
}

impl Permission {
    /// The least role that has this permission.
    pub fn least_role(self) -> Role {
        match self {
            Self::Verify | Self::ReportLeaks => Role::Verify,
            Self::ReadWorkspaces | Self::ManageKeys => Role::Manage,
            Self::ManageWorkspaces | Self::ManageServiceTokens | Self::ReadAudit | Self::ManageWebhooks => Role::Admin,
        }
    }
}

/// The workspaces a token is limited to: `None` reaches every workspace of
/// its organisation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenWorkspaces(Option<Vec<WorkspaceSlug>>);

impl TokenWorkspaces {
    /// The most workspaces one token may name.
    pub const MAX: usize = 100;

    /// Every workspace of the organisation.
    pub fn all() -> Self {
        Self(None)
    }

    /// A limit to these workspaces: at least one, at most [`Self::MAX`],
    /// duplicates dropped, in the order given.
    pub fn only(slugs: Vec<WorkspaceSlug>) -> Result<Self, CoreError> {
        if slugs.is_empty() {
            return Err(CoreError::NoTokenWorkspaces);
        }
        let mut unique: Vec<WorkspaceSlug> = Vec::with_capacity(slugs.len());
        for slug in slugs {
            if !unique.contains(&slug) {
                unique.push(slug);
            }
        }
        if unique.len() > Self::MAX {
            return Err(CoreError::TooManyTokenWorkspaces { max: Self::MAX });
        }
        Ok(Self(Some(unique)))
    }

    pub fn slugs(&self) -> Option<&[WorkspaceSlug]> {
        self.0.as_deref()
    }

    pub fn is_limited(&self) -> bool {
        self.0.is_some()
    }
}

/// What a client asks for when it creates a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewServiceToken {
    pub name: Name,
    pub role: Role,
    pub workspaces: TokenWorkspaces,
    pub expires_at: Option<OffsetDateTime>,
}

impl NewServiceToken {
    /// An unlimited, unexpiring admin token (the bootstrap token, the CLI's
    /// default).
    pub fn admin(name: Name) -> Self {
        Self { name, role: Role::Admin, workspaces: TokenWorkspaces::all(), expires_at: None }
    }
}

/// The traces of the token kept with its record: its digest (the lookup)
/// and its masked prefix (what lists show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTokenMaterial {
    pub id: ServiceTokenId,
    pub digest: SecretDigest,
    pub masked_token: String,
}

/// What is kept of a service token: its digest, never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTokenState {
    pub id: ServiceTokenId,
    pub organisation_id: OrganisationId,
    pub name: Name,
    pub digest: SecretDigest,
    pub masked_token: String,
    pub role: Role,
    pub workspaces: TokenWorkspaces,
    pub expires_at: Option<OffsetDateTime>,
    /// The actor every `*_by` the token causes is filled with.
    pub actor: Actor,
    pub created_at: OffsetDateTime,
    /// Who made it: a token's actor, or `None` for the CLI.
    pub created_by: Option<Actor>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_by: Option<Actor>,
}

/// A service token's metadata. Reaches the workspaces of its organisation
/// its [`TokenWorkspaces`] allow, does what its [`Role`] permits, and fills
/// every `*_by` it causes with its actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTokenRecord(ServiceTokenState);

impl ServiceTokenRecord {
    /// A new token. `created_by` is the creating token's record (an API
    /// call) or `None` (the operator's CLI, which may make any token).
    /// Refused: an expiry not in the future; an admin token limited to
    /// workspaces (an admin manages tokens, so it could lift its own limit);
    /// a token with more power than the token creating it.
    pub fn create(
        material: ServiceTokenMaterial,
        organisation: &Organisation,
        new: NewServiceToken,
        created_by: Option<&ServiceTokenRecord>,
        now: OffsetDateTime,
    ) -> Result<Self, CoreError> {
        let now = timestamp(now);
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(CoreError::ExpiryInPast);
        }
        if new.role == Role::Admin && new.workspaces.is_limited() {
            return Err(CoreError::AdminTokenLimited);
        }
        if let Some(creator) = created_by {
            if new.role > creator.role || !creator.scope().covers_all(&new.workspaces) {
                return Err(CoreError::TokenBeyondCreator);
            }
        }
        let ServiceTokenMaterial { id, digest, masked_token } = material;
        Ok(Self(ServiceTokenState {
            id,
            organisation_id: organisation.id.clone(),
            name: new.name,
            digest,
            masked_token,
            role: new.role,
            workspaces: new.workspaces,
            expires_at: new.expires_at.map(timestamp),
            actor: organisation.system_actor(),
            created_at: now,
            created_by: created_by.map(|creator| creator.actor.clone()),
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
        }))
    }

    /// Rebuilds a record read back from storage.
    pub fn restore(state: ServiceTokenState) -> Self {
        Self(state)
    }

    /// Whether the token may authenticate at `now`: not revoked, not past
    /// its `expires_at`.
    pub fn authenticates(&self, now: OffsetDateTime) -> bool {
        self.0.revoked_at.is_none() && self.0.expires_at.is_none_or(|at| now < at)
    }

    /// Whether this is an admin token that authenticates at `now`: what
    /// [`ServiceTokenRecord::revoke`] keeps at least one of.
    pub fn is_live_admin(&self, now: OffsetDateTime) -> bool {
        LiveAdmin::holds(self.0.role, self.0.revoked_at, self.0.expires_at, now)
    }

    /// The scope of the token's calls: its organisation and workspaces.
    pub fn scope(&self) -> Scope<'_> {
        Scope::limited(&self.0.organisation_id, self.0.workspaces.slugs())
    }

    /// Revokes the token. `other_live_admins` counts the organisation's
    /// other admin tokens that authenticate at `now`: the last one cannot be
    /// revoked (the CLI's `token create` makes a new one first).
    pub fn revoke(
        &mut self,
        other_live_admins: usize,
        by: Option<&Actor>,
        now: OffsetDateTime,
    ) -> Result<(), CoreError> {
        if self.0.revoked_at.is_some() {
            return Err(CoreError::AlreadyDeleted { kind: "service token" });
        }
        if self.is_live_admin(now) && other_live_admins == 0 {
            return Err(CoreError::LastAdminToken);
        }
        self.0.revoked_at = Some(timestamp(now));
        self.0.revoked_by = by.cloned();
        Ok(())
    }
}

/// Who counts as a live admin token at `now`, stated once: a token of
/// [`LiveAdmin::ROLE`], not revoked, with no expiry or one strictly after
/// `now` (a token that expires at exactly `now` no longer authenticates).
/// [`ServiceTokenRecord::is_live_admin`] applies it to a record; keys-store
/// counts the tokens it holds without loading them
/// (`repo::service_tokens::other_live_admin_tokens`), binding
/// [`LiveAdmin::ROLE`] and `now` into the same three conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveAdmin;

impl LiveAdmin {
    /// The role a live admin token has.
    pub const ROLE: Role = Role::Admin;

    /// Whether a token with these fields is a live admin token at `now`.
    pub fn holds(
        role: Role,
        revoked_at: Option<OffsetDateTime>,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> bool {
        role == Self::ROLE && revoked_at.is_none() && expires_at.is_none_or(|at| now < at)
    }
}

impl Deref for ServiceTokenRecord {
    type Target = ServiceTokenState;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn organisation() -> Organisation {
        Organisation::create(
            OrganisationId::parse("01J0000000000000000000000A").unwrap(),
            Name::parse("acme").unwrap(),
            now(),
        )
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn material(n: u8) -> ServiceTokenMaterial {
        ServiceTokenMaterial {
            id: ServiceTokenId::parse(&format!("st_01J000000000000000000000{n:02}")).unwrap(),
            digest: SecretDigest::from_bytes([n; 32]),
            masked_token: "kst_abcdef*****".to_owned(),
        }
    }

    fn new(role: Role, workspaces: &[&str]) -> NewServiceToken {
        let workspaces = if workspaces.is_empty() {
            TokenWorkspaces::all()
        } else {
            TokenWorkspaces::only(workspaces.iter().map(|slug| WorkspaceSlug::parse(slug).unwrap()).collect()).unwrap()
        };
        NewServiceToken { name: Name::parse("t").unwrap(), role, workspaces, expires_at: None }
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.permits(Permission::ReadAudit));
        assert!(Role::Admin.permits(Permission::Verify));
        assert!(Role::Manage.permits(Permission::ManageKeys));
        assert!(Role::Manage.permits(Permission::ReadWorkspaces));
        assert!(!Role::Manage.permits(Permission::ManageWorkspaces));
        assert!(!Role::Manage.permits(Permission::ManageServiceTokens));
        assert!(!Role::Manage.permits(Permission::ReadAudit));
        assert!(Role::Verify.permits(Permission::Verify));
        assert!(!Role::Verify.permits(Permission::ReadWorkspaces));
        assert!(!Role::Verify.permits(Permission::ManageKeys));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        assert_eq!(Role::parse("root"), Err(CoreError::InvalidRole));
    }

    #[test]
    fn an_admin_token_reaches_every_workspace() {
        let organisation = organisation();
        let refused = ServiceTokenRecord::create(material(1), &organisation, new(Role::Admin, &["a"]), None, now());
        assert_eq!(refused, Err(CoreError::AdminTokenLimited));
    }

    #[test]
    fn a_token_cannot_make_a_stronger_one() {
        let organisation = organisation();
        let manage =
            ServiceTokenRecord::create(material(1), &organisation, new(Role::Manage, &["a"]), None, now()).unwrap();
        for asked in [new(Role::Admin, &[]), new(Role::Manage, &[]), new(Role::Manage, &["a", "b"])] {
            let made = ServiceTokenRecord::create(material(2), &organisation, asked, Some(&manage), now());
            assert_eq!(made, Err(CoreError::TokenBeyondCreator));
        }
        let made =
            ServiceTokenRecord::create(material(2), &organisation, new(Role::Verify, &["a"]), Some(&manage), now());
        assert!(made.is_ok());
    }

    #[test]
    fn expiry_and_revocation_end_authentication() {
        let organisation = organisation();
        let mut asked = new(Role::Verify, &[]);
        asked.expires_at = Some(now());
        assert_eq!(
            ServiceTokenRecord::create(material(1), &organisation, asked.clone(), None, now()),
            Err(CoreError::ExpiryInPast)
        );
        asked.expires_at = Some(now() + time::Duration::hours(1));
        let mut token = ServiceTokenRecord::create(material(1), &organisation, asked, None, now()).unwrap();
        assert!(token.authenticates(now()));
        assert!(!token.authenticates(now() + time::Duration::hours(1)));
        token.revoke(0, None, now()).unwrap();
        assert!(!token.authenticates(now()));
        assert_eq!(token.revoke(0, None, now()), Err(CoreError::AlreadyDeleted { kind: "service token" }));
    }

    #[test]
    fn the_last_live_admin_token_stays() {
        let organisation = organisation();
        let mut admin =
            ServiceTokenRecord::create(material(1), &organisation, new(Role::Admin, &[]), None, now()).unwrap();
        assert_eq!(admin.revoke(0, None, now()), Err(CoreError::LastAdminToken));
        assert!(admin.authenticates(now()));
        admin.revoke(1, None, now()).unwrap();
    }

    #[test]
    fn workspace_limits_are_bounded() {
        assert_eq!(TokenWorkspaces::only(Vec::new()), Err(CoreError::NoTokenWorkspaces));
        let many = (0..=TokenWorkspaces::MAX).map(|n| WorkspaceSlug::parse(&format!("w{n}")).unwrap()).collect();
        assert_eq!(TokenWorkspaces::only(many), Err(CoreError::TooManyTokenWorkspaces { max: TokenWorkspaces::MAX }));
        let twice = vec![WorkspaceSlug::parse("a").unwrap(), WorkspaceSlug::parse("a").unwrap()];
        assert_eq!(TokenWorkspaces::only(twice).unwrap().slugs().map(<[_]>::len), Some(1));
    }

    #[test]
    fn a_live_admin_is_an_unrevoked_admin_token_unexpired_at_now() {
        let at = now();
        let second = time::Duration::seconds(1);
        let cases = [
            (Role::Admin, None, None, true),
            (Role::Admin, None, Some(at + second), true),
            // Expired at exactly `now`: no longer live.
            (Role::Admin, None, Some(at), false),
            (Role::Admin, None, Some(at - second), false),
            (Role::Admin, Some(at - second), None, false),
            (Role::Admin, Some(at + second), Some(at + second), false),
            (Role::Manage, None, None, false),
            (Role::Verify, None, None, false),
        ];
        for (role, revoked_at, expires_at, live) in cases {
            assert_eq!(
                LiveAdmin::holds(role, revoked_at, expires_at, at),
                live,
                "{role:?} {revoked_at:?} {expires_at:?}"
            );
            // The record's predicate is the same rule: an admin token that authenticates.
            let mut state =
                ServiceTokenRecord::create(material(1), &organisation(), new(Role::Admin, &[]), None, at - second * 10)
                    .unwrap()
                    .0;
            (state.role, state.revoked_at, state.expires_at) = (role, revoked_at, expires_at);
            let record = ServiceTokenRecord(state);
            assert_eq!(record.is_live_admin(at), live);
            assert_eq!(record.is_live_admin(at), role == Role::Admin && record.authenticates(at));
        }
    }
}
