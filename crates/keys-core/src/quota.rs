//! Per-organisation caps: how many workspaces an organisation, and how many
//! keys of each kind a workspace or an organisation, may hold at once
//! ([`Quotas`]), what a change adds to what they count ([`Mutation::adds`]),
//! and the one decision that admits a create or refuses it
//! ([`Quotas::admit`]).
//!
//! A cap counts what is live (not deleted): a deleted key frees its place,
//! a rolled key keeps its place until it is deleted (a roll adds the key
//! that replaces it). Workspaces are never deleted, so every one counts.
//! The store writes the create, then counts under the lock of the
//! aggregate that holds what is counted, in the same transaction, and rolls
//! it back past the cap; so concurrent creates, on one process or several,
//! never go past a cap, and a create that fails for another reason (a key
//! that is not there, or not active) says so rather than the cap.

use crate::CoreError;

/// What a cap counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Workspaces of an organisation.
    Workspaces,
    /// Live API keys of a workspace (rolled and disabled ones included).
    ApiKeys,
    /// Live public keys of a workspace.
    PublicKeys,
    /// Live signing keys of a workspace (rolled ones included).
    SigningKeys,
    /// Live organisation signing keys (dialect 2) of an organisation.
    OrganisationKeys,
    /// Identities (metering) of a workspace, capped like its keys.
    Identities,
}

impl QuotaKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::Workspaces,
        Self::ApiKeys,
        Self::PublicKeys,
        Self::SigningKeys,
        Self::OrganisationKeys,
        Self::Identities,
    ];

    /// What is counted, in the words of a message.
    pub fn counted(self) -> &'static str {
        match self {
            Self::Workspaces => "workspaces",
            Self::ApiKeys => "API keys",
            Self::PublicKeys => "public keys",
            Self::SigningKeys => "signing keys",
            Self::OrganisationKeys => "signing keys",
            Self::Identities => "identities",
        }
    }

    /// What holds what is counted.
    pub fn holder(self) -> &'static str {
        match self {
            Self::Workspaces | Self::OrganisationKeys => "organisation",
            Self::ApiKeys | Self::PublicKeys | Self::SigningKeys | Self::Identities => "workspace",
        }
    }
}

/// What a stored thing is, as far as a change to it is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Organisation,
    ServiceToken,
    Workspace,
    ApiKey,
    PublicKey,
    SigningKey,
    OrganisationKey,
    AuditTrail,
    /// An identity of metering (the keys of one `external_id`).
    Identity,
    /// A webhook endpoint of an organisation (capped by
    /// `WebhookEndpoint::MAX_PER_ORGANISATION` where it is made).
    WebhookEndpoint,
}

/// A change to the stored state, in the terms the caps need: each command
/// of the store says which one it is, and [`Mutation::adds`] decides what
/// that adds to the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The first state of an empty database.
    Bootstrap,
    /// One new thing of a kind.
    Create(EntityKind),
    /// A key replaced by a new one; the rolled key keeps its place until
    /// it is deleted.
    Roll(EntityKind),
    /// Anything else done to what exists (a patch, a disable, a rotation of
    /// its material, a revocation, a prune).
    Update(EntityKind),
    /// A deletion: it frees a place, it never takes one.
    Delete(EntityKind),
}

impl Mutation {
    /// What the change adds to a count a cap holds: one of that kind, or
    /// nothing. A create adds one of its kind and so does a roll (the key
    /// that replaces the rolled one); organisations and service tokens are
    /// not capped; the bootstrap writes a fixed, small state into an empty
    /// database.
    pub fn adds(self) -> Option<QuotaKind> {
        let kind = match self {
            Self::Create(kind) | Self::Roll(kind) => kind,
            Self::Bootstrap | Self::Update(_) | Self::Delete(_) => return None,
        };
        match kind {
            EntityKind::Workspace => Some(QuotaKind::Workspaces),
            EntityKind::ApiKey => Some(QuotaKind::ApiKeys),
            EntityKind::PublicKey => Some(QuotaKind::PublicKeys),
            EntityKind::SigningKey => Some(QuotaKind::SigningKeys),
            EntityKind::OrganisationKey => Some(QuotaKind::OrganisationKeys),
            EntityKind::Identity => Some(QuotaKind::Identities),
            EntityKind::Organisation
            | EntityKind::ServiceToken
            | EntityKind::AuditTrail
            | EntityKind::WebhookEndpoint => None,
        }
    }
}

/// The caps in force. Each is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    workspaces_per_organisation: u32,
    keys_per_workspace: u32,
    organisation_keys_per_organisation: u32,
}

impl Quotas {
    pub const DEFAULT_WORKSPACES_PER_ORGANISATION: u32 = 1_000;
    /// For each kind of workspace key separately.
    pub const DEFAULT_KEYS_PER_WORKSPACE: u32 = 10_000;
    pub const DEFAULT_ORGANISATION_KEYS_PER_ORGANISATION: u32 = 1_000;

    /// Caps of these sizes; a zero is refused (a cap of zero would forbid
    /// what the product exists for).
    pub fn new(
        workspaces_per_organisation: u32,
        keys_per_workspace: u32,
        organisation_keys_per_organisation: u32,
    ) -> Result<Self, CoreError> {
        if workspaces_per_organisation == 0 || keys_per_workspace == 0 || organisation_keys_per_organisation == 0 {
            return Err(CoreError::InvalidQuota);
        }
        Ok(Self { workspaces_per_organisation, keys_per_workspace, organisation_keys_per_organisation })
    }

    /// The cap on `kind`.
    pub fn limit(&self, kind: QuotaKind) -> u32 {
        match kind {
            QuotaKind::Workspaces => self.workspaces_per_organisation,
            QuotaKind::ApiKeys | QuotaKind::PublicKeys | QuotaKind::SigningKeys | QuotaKind::Identities => {
                self.keys_per_workspace
            }
            QuotaKind::OrganisationKeys => self.organisation_keys_per_organisation,
        }
    }

    /// Whether a create may stand that leaves `live` of `kind` (itself
    /// included): refused with [`CoreError::QuotaReached`] beyond the cap.
    pub fn admit(&self, kind: QuotaKind, live: u64) -> Result<(), CoreError> {
        let limit = self.limit(kind);
        if live <= u64::from(limit) {
            Ok(())
        } else {
            Err(CoreError::QuotaReached { holder: kind.holder(), counted: kind.counted(), limit })
        }
    }
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            workspaces_per_organisation: Self::DEFAULT_WORKSPACES_PER_ORGANISATION,
            keys_per_workspace: Self::DEFAULT_KEYS_PER_WORKSPACE,
            organisation_keys_per_organisation: Self::DEFAULT_ORGANISATION_KEYS_PER_ORGANISATION,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_cap_and_refuses_past_it() {
        let quotas = Quotas::new(2, 3, 1).expect("valid");
        let cases = [
            (QuotaKind::Workspaces, 2, true),
            (QuotaKind::Workspaces, 3, false),
            (QuotaKind::ApiKeys, 3, true),
            (QuotaKind::ApiKeys, 4, false),
            (QuotaKind::PublicKeys, 4, false),
            (QuotaKind::SigningKeys, 5, false),
            (QuotaKind::OrganisationKeys, 1, true),
            (QuotaKind::OrganisationKeys, 2, false),
        ];
        for (kind, live, admitted) in cases {
            assert_eq!(quotas.admit(kind, live).is_ok(), admitted, "{kind:?} with {live} live");
        }
    }

    #[test]
    fn creates_and_rolls_add_one_of_their_kind_and_nothing_else_adds() {
        use EntityKind as E;
        let cases = [
            (Mutation::Create(E::Workspace), Some(QuotaKind::Workspaces)),
            (Mutation::Create(E::ApiKey), Some(QuotaKind::ApiKeys)),
            (Mutation::Roll(E::ApiKey), Some(QuotaKind::ApiKeys)),
            (Mutation::Create(E::PublicKey), Some(QuotaKind::PublicKeys)),
            (Mutation::Create(E::SigningKey), Some(QuotaKind::SigningKeys)),
            (Mutation::Roll(E::SigningKey), Some(QuotaKind::SigningKeys)),
            (Mutation::Create(E::OrganisationKey), Some(QuotaKind::OrganisationKeys)),
            (Mutation::Create(E::Organisation), None),
            (Mutation::Create(E::ServiceToken), None),
            (Mutation::Bootstrap, None),
            (Mutation::Update(E::ApiKey), None),
            (Mutation::Update(E::PublicKey), None),
            (Mutation::Update(E::ServiceToken), None),
            (Mutation::Update(E::AuditTrail), None),
            (Mutation::Delete(E::ApiKey), None),
            (Mutation::Delete(E::SigningKey), None),
            (Mutation::Delete(E::OrganisationKey), None),
        ];
        for (mutation, added) in cases {
            assert_eq!(mutation.adds(), added, "{mutation:?}");
        }
    }

    #[test]
    fn the_refusal_names_what_and_how_many() {
        let refusal = Quotas::new(5, 7, 9).expect("valid").admit(QuotaKind::ApiKeys, 8).expect_err("past the cap");
        assert_eq!(refusal, CoreError::QuotaReached { holder: "workspace", counted: "API keys", limit: 7 });
        assert_eq!(
            refusal.to_string(),
            "the workspace has reached its limit of 7 API keys: delete one it no longer needs first"
        );
    }

    #[test]
    fn defaults_are_generous_and_zero_is_refused() {
        let quotas = Quotas::default();
        assert_eq!(quotas.limit(QuotaKind::Workspaces), 1_000);
        assert_eq!(quotas.limit(QuotaKind::SigningKeys), 10_000);
        assert_eq!(quotas.limit(QuotaKind::OrganisationKeys), 1_000);
        assert_eq!(Quotas::new(0, 1, 1), Err(CoreError::InvalidQuota));
        assert_eq!(Quotas::new(1, 0, 1), Err(CoreError::InvalidQuota));
        assert_eq!(Quotas::new(1, 1, 0), Err(CoreError::InvalidQuota));
    }
}
