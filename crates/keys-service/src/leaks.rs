//! Leaked API keys (docs/API.md, Leaked keys): a key found where it should
//! not be, reported by GitHub's secret scanning (its alert's signature is
//! checked before this is called, by the HTTP layer with keys-crypto) or by
//! any other scanner holding a service token, is recorded as
//! `api_key.leaked` and contained as its workspace's `on_leak` says
//! (keys-core's [`keys_core::ApiKey::contain_leak`]; the store's
//! `ReportLeakedApiKey` does both in one transaction, and the change
//! reaches every replica's cache as a disable does).
//!
//! The report's text is used only to compute its digest: it is never
//! stored, logged or audited; the event carries the source URL.

use keys_core::{Actor, OrganisationId, Permission, SecretDigest};
use keys_store::{Acting, Attributed, Attribution, ReportLeakedApiKey, Run as _, Store};

use crate::verification::api_key_digest;
use crate::{Caller, Service, ServiceResult};

/// What a scanner is told of a reported text: `true_positive` for a key
/// keysd holds and that authenticated when reported, `false_positive` for
/// anything else (unknown, malformed, already disabled, expired or deleted,
/// or a key of another organisation than the reporter's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakLabel {
    TruePositive,
    FalsePositive,
}

impl LeakLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TruePositive => "true_positive",
            Self::FalsePositive => "false_positive",
        }
    }
}

/// The longest source a report keeps (a URL, in GitHub's alerts).
pub const MAX_LEAK_SOURCE_CHARS: usize = 1_024;

impl Service {
    /// One text of a GitHub secret-scanning alert whose signature verified:
    /// attributed to the actor `GitHub secret scanning`, no token.
    pub async fn report_github_leak(&self, text: &str, source: Option<&str>) -> ServiceResult<LeakLabel> {
        let actor = Actor::new("GitHub secret scanning", "secret-scanning@github.keysd.local");
        self.contain_leak(text, source, None, actor, Attribution::default()).await
    }

    /// A leak reported by a scanner with a service token of any role:
    /// only keys of the caller's organisation are contained (a key of
    /// another is a `false_positive`, as an unknown one is). Needs
    /// [`Permission::ReportLeaks`].
    pub async fn report_leak(&self, caller: &Caller, text: &str, source: Option<&str>) -> ServiceResult<LeakLabel> {
        caller.require(Permission::ReportLeaks)?;
        let organisation = caller.scope().organisation_id().clone();
        self.contain_leak(text, source, Some(&organisation), caller.actor().clone(), caller.attribution()).await
    }

    async fn contain_leak(
        &self,
        text: &str,
        source: Option<&str>,
        organisation: Option<&OrganisationId>,
        actor: Actor,
        attribution: Attribution,
    ) -> ServiceResult<LeakLabel> {
        let Some(digest) = api_key_digest(text) else {
            return Ok(LeakLabel::FalsePositive);
        };
        let Some(workspace) = self.holder_of(&digest, organisation).await? else {
            return Ok(LeakLabel::FalsePositive);
        };
        let source = source.map(|source| source.chars().take(MAX_LEAK_SOURCE_CHARS).collect::<String>());
        let acting = Acting::new(workspace, actor, self.now());
        let store = Attributed::new(&**self.store(), attribution);
        let reported = store.run(ReportLeakedApiKey { acting, digest, source }).await?.output;
        Ok(match reported {
            Some(leaked) if leaked.was_live => LeakLabel::TruePositive,
            _ => LeakLabel::FalsePositive,
        })
    }

    /// The workspace of the key with this digest, if one is stored (and
    /// belongs to `organisation`, when one is named). Through the cache, as
    /// verification reads it: a key that verifies is found; its state is
    /// read again under the workspace's lock by the store's command.
    async fn holder_of(
        &self,
        digest: &SecretDigest,
        organisation: Option<&OrganisationId>,
    ) -> ServiceResult<Option<keys_core::WorkspaceUid>> {
        let store: &dyn Store = &**self.store();
        let found = store.api_key_by_digest(digest).await?;
        Ok(found
            .filter(|(_, workspace)| organisation.is_none_or(|organisation| &workspace.organisation_id == organisation))
            .map(|(_, workspace)| workspace.uid))
    }
}
