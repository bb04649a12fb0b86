//! [`Change`]: what a committed mutation touched, as far as anything that
//! remembers lookups (the verification cache of [`crate::CachedStore`], in
//! this process or in another) needs to know.
//!
//! Every mutation of [`crate::SqlStore`] announces its change inside its
//! transaction (on PostgreSQL, `pg_notify` on [`CHANGES_CHANNEL`], which the
//! server delivers only on commit and drops on rollback), so other
//! processes learn of it; [`crate::CachedStore`] applies the same change to
//! its own cache as soon as the mutation returns.
//!
//! [`ChangeFeed`] is where announcements come from (on PostgreSQL, the
//! listener of `crate::postgres`); it lives here, beside what it carries, so
//! that neither the cache nor a backend has to import the other for it.

use std::future::Future;

use keys_core::{OrganisationId, OrganisationKeyId, SecretDigest, WorkspaceUid};

use crate::error::StoreResult;

/// The PostgreSQL channel of change announcements.
pub const CHANGES_CHANNEL: &str = "keysd_changes";

/// What one mutation touched. A digest here is the stored SHA-256 of a
/// secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Anything may have changed: the bootstrap, a failure that leaves the
    /// outcome of a commit unknown, or an announcement this version cannot
    /// read.
    Everything,
    /// An organisation was created (nothing cached depends on it yet).
    Organisation(OrganisationId),
    /// A workspace was created, or patched (its name, description, prefix
    /// or leak policy): what was cached with it is dropped.
    Workspace(WorkspaceUid),
    /// The service token with this digest was created.
    ServiceToken(SecretDigest),
    /// The API key with this digest was created or deleted.
    ApiKey(SecretDigest),
    /// Keys were imported into this workspace: any digest looked up and
    /// not found may be stored now (one announcement for a whole batch,
    /// which could name a thousand digests).
    ApiKeysImported(WorkspaceUid),
    /// Public keys of this workspace were created, changed (patched,
    /// rotated to a new value) or deleted.
    PublicKeys(WorkspaceUid),
    /// Signing keys of this workspace were created, rolled or deleted.
    SigningKeys(WorkspaceUid),
    /// The organisation signing key with this id was created or deleted.
    OrganisationKey(OrganisationKeyId),
    /// A key's or an identity's limits or credits in this workspace
    /// changed (metering reads them again; no cached key changes).
    Meters(WorkspaceUid),
}

impl Change {
    /// The text of the announcement (`kind` or `kind:argument`; well under
    /// PostgreSQL's 8000-byte payload limit).
    pub fn to_payload(&self) -> String {
        match self {
            Self::Everything => "everything".to_owned(),
            Self::Organisation(id) => format!("organisation:{id}"),
            Self::Workspace(uid) => format!("workspace:{uid}"),
            Self::ServiceToken(digest) => format!("service_token:{}", digest.to_hex()),
            Self::ApiKey(digest) => format!("api_key:{}", digest.to_hex()),
            Self::ApiKeysImported(workspace) => format!("api_keys_imported:{workspace}"),
            Self::PublicKeys(workspace) => format!("public_keys:{workspace}"),
            Self::SigningKeys(workspace) => format!("signing_keys:{workspace}"),
            Self::OrganisationKey(id) => format!("organisation_key:{id}"),
            Self::Meters(workspace) => format!("meters:{workspace}"),
        }
    }

    /// Reads an announcement. Anything unreadable (another version's word,
    /// a damaged payload) is [`Change::Everything`]: forgetting too much is
    /// safe, forgetting too little is not.
    pub fn from_payload(payload: &str) -> Self {
        let (kind, argument) = payload.split_once(':').unwrap_or((payload, ""));
        let parsed = match kind {
            "everything" => Some(Self::Everything),
            "organisation" => OrganisationId::parse(argument).ok().map(Self::Organisation),
            "workspace" => WorkspaceUid::parse(argument).ok().map(Self::Workspace),
            "service_token" => SecretDigest::from_hex(argument).map(Self::ServiceToken),
            "api_key" => SecretDigest::from_hex(argument).map(Self::ApiKey),
            "api_keys_imported" => WorkspaceUid::parse(argument).ok().map(Self::ApiKeysImported),
            "public_keys" => WorkspaceUid::parse(argument).ok().map(Self::PublicKeys),
            "signing_keys" => WorkspaceUid::parse(argument).ok().map(Self::SigningKeys),
            "organisation_key" => OrganisationKeyId::parse(argument).ok().map(Self::OrganisationKey),
            "meters" => WorkspaceUid::parse(argument).ok().map(Self::Meters),
            _ => None,
        };
        parsed.unwrap_or(Self::Everything)
    }
}

/// What a [`ChangeFeed`] heard.
#[derive(Debug)]
pub(crate) enum Heard {
    /// A process (this one included) committed a change.
    Change(Change),
    /// The feed's connection was lost and has been re-established,
    /// listening included: whatever was announced in between is lost.
    Reconnected,
}

/// Where announced changes come from: on PostgreSQL, the `ChangeListener`
/// of the backend module.
pub(crate) trait ChangeFeed: Sized + Send + 'static {
    /// Waits for the next announcement. An error means the feed is broken
    /// and will hear nothing more: [`ChangeFeed::reopen`] makes a new one.
    fn next(&mut self) -> impl Future<Output = StoreResult<Heard>> + Send;
    /// A new feed like this one, listening when it returns.
    fn reopen(&self) -> impl Future<Output = StoreResult<Self>> + Send;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use time::macros::datetime;

    #[test]
    fn payloads_round_trip() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let now = datetime!(2026-04-21 12:00 UTC);
        let workspace = WorkspaceUid::generate(now, &mut rng);
        for change in [
            Change::Everything,
            Change::Organisation(OrganisationId::generate(now, &mut rng)),
            Change::Workspace(workspace.clone()),
            Change::ServiceToken(SecretDigest::from_bytes([7; 32])),
            Change::ApiKey(SecretDigest::from_bytes([0xab; 32])),
            Change::ApiKeysImported(workspace.clone()),
            Change::PublicKeys(workspace.clone()),
            Change::SigningKeys(workspace.clone()),
            Change::OrganisationKey(OrganisationKeyId::generate(now, &mut rng)),
            Change::Meters(workspace),
        ] {
            assert_eq!(Change::from_payload(&change.to_payload()), change, "{}", change.to_payload());
        }
    }

    #[test]
    fn unreadable_payloads_mean_everything() {
        for payload in ["", "api_key", "api_key:zz", "api_key:", "workspace:nope", "something_new:1", ":"] {
            assert_eq!(Change::from_payload(payload), Change::Everything, "{payload}");
        }
    }
}
