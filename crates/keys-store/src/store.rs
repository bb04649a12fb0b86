//! The read side of the store, split by who reads: [`Lookups`], the
//! lookups of authentication and verification that [`crate::CachedStore`]
//! serves from memory, and [`Management`], everything else.
//!
//! Mutations are [`crate::Mutations`]; [`crate::Store`] is all three.

use std::sync::Arc;

use async_trait::async_trait;
use keys_core::{
    ApiKey, ApiKeyId, KeyPage, KeySlice, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Page,
    Pagination, PublicKey, SecretDigest, ServiceTokenId, ServiceTokenRecord, SigningKeyUid, Workspace,
    WorkspaceSigningKey, WorkspaceUid,
};

use crate::commands::{AuditEvent, RecordedAuditEvent};
use crate::error::StoreResult;
use crate::meters::{KeyMeters, MeterOf, StoredMeter};
use crate::repo::{AuditFilter, AuditOrder, AuditQuery};
use crate::usage::{UsageQuery, UsageRow};

/// The lookups on the request path of authentication and verification.
/// Each returns `Ok(None)` for what does not exist.
pub use crate::repo::Listing;

#[async_trait]
pub trait Lookups: Send + Sync {
    /// The authentication lookup: unrevoked tokens only.
    async fn service_token_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<ServiceTokenRecord>>;
    /// [`Lookups::service_token_by_digest`] for callers that only read the
    /// record: a caching store hands out the record it holds rather than a
    /// copy. Authentication runs on every request, where copying a record
    /// (a string allocation per field) is a measurable part of the cost.
    async fn shared_service_token_by_digest(
        &self,
        digest: &SecretDigest,
    ) -> StoreResult<Option<Arc<ServiceTokenRecord>>> {
        Ok(self.service_token_by_digest(digest).await?.map(Arc::new))
    }
    /// The verification path: one index lookup by digest. Deleted keys are
    /// returned too, so the decision can say `key_deleted`.
    async fn api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<(ApiKey, Workspace)>>;
    /// [`Lookups::api_key_by_digest`], shared rather than copied (see
    /// [`Lookups::shared_service_token_by_digest`]).
    async fn shared_api_key_by_digest(&self, digest: &SecretDigest) -> StoreResult<Option<Arc<(ApiKey, Workspace)>>> {
        Ok(self.api_key_by_digest(digest).await?.map(Arc::new))
    }
    /// The verification path: by the `SS.PUBK.` value (unique index).
    async fn public_key_by_value(&self, value: &str) -> StoreResult<Option<(PublicKey, Workspace)>>;
    /// The live (not deleted) keys of a workspace: JWKS and secure mode.
    async fn live_signing_keys(&self, workspace: &WorkspaceUid) -> StoreResult<Vec<WorkspaceSigningKey>>;
    /// By `uid` (the JWT `kid`), deleted keys included.
    async fn signing_key_by_uid(&self, uid: &SigningKeyUid) -> StoreResult<Option<WorkspaceSigningKey>>;
    /// By id, deleted keys included.
    async fn organisation_key(&self, id: &OrganisationKeyId) -> StoreResult<Option<OrganisationSigningKey>>;

    /// A number that changes whenever this workspace's meters may have
    /// changed, in this process or another (`Change::Meters`, or anything
    /// forgotten); `None` when this store cannot know (it hears no
    /// announcements), and meters must be read again within a second
    /// instead.
    fn meter_generation(&self, _workspace: &WorkspaceUid) -> Option<u64> {
        None
    }
}

/// The reads of management: lists are newest first with a total count;
/// lookups return `Ok(None)` for what does not exist.
#[async_trait]
pub trait Management: Send + Sync {
    /// Cheap round trip to the database (readiness).
    async fn ping(&self) -> StoreResult<()>;
    async fn organisation(&self, id: &OrganisationId) -> StoreResult<Option<Organisation>>;
    async fn organisation_by_name(&self, name: &str) -> StoreResult<Option<Organisation>>;
    async fn workspace_by_slug(&self, organisation: &OrganisationId, slug: &str) -> StoreResult<Option<Workspace>>;
    async fn workspace_by_uid(&self, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>>;
    async fn list_workspaces(&self, organisation: &OrganisationId, page: Pagination) -> StoreResult<Page<Workspace>>;
    /// One API key of the workspace, deleted or not.
    async fn api_key(&self, workspace: &WorkspaceUid, id: &ApiKeyId) -> StoreResult<Option<ApiKey>>;
    async fn list_api_keys(&self, workspace: &WorkspaceUid, listing: Listing) -> StoreResult<Page<ApiKey>>;
    async fn list_public_keys(&self, workspace: &WorkspaceUid, listing: Listing) -> StoreResult<Page<PublicKey>>;
    async fn list_signing_keys(
        &self,
        workspace: &WorkspaceUid,
        listing: Listing,
    ) -> StoreResult<Page<WorkspaceSigningKey>>;
    /// One service token of the organisation by id, revoked or not.
    async fn service_token(
        &self,
        organisation: &OrganisationId,
        id: &ServiceTokenId,
    ) -> StoreResult<Option<ServiceTokenRecord>>;
    /// The organisation's service tokens, newest first; revoked ones only
    /// with `include_deleted`.
    async fn list_service_tokens(
        &self,
        organisation: &OrganisationId,
        listing: Listing,
    ) -> StoreResult<Page<ServiceTokenRecord>>;
    /// Live keys of the organisation, newest first.
    async fn list_organisation_keys(&self, organisation: &OrganisationId) -> StoreResult<Vec<OrganisationSigningKey>>;
    /// One page of the live keys of the organisation, newest first, and
    /// where the next page starts.
    async fn organisation_keys_page(&self, organisation: &OrganisationId, page: &KeyPage) -> StoreResult<KeySlice>;
    /// One page of an organisation's audit events, in the query's order,
    /// after its position (keyset pagination on `(at, id)`).
    async fn audit_page(&self, query: &AuditQuery) -> StoreResult<Vec<RecordedAuditEvent>>;
    /// One page of usage counts (see [`UsageQuery`]).
    async fn usage_page(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>>;

    /// What a key of the workspace draws on: the root of its roll chain,
    /// its meter and, when it has an `external_id`, its identity's; `None`
    /// when the workspace has no such key.
    async fn key_meters(
        &self,
        workspace: &WorkspaceUid,
        key: &ApiKeyId,
        external_id: Option<&str>,
    ) -> StoreResult<Option<KeyMeters>>;

    /// One subject's meter, when it has one.
    async fn meter(&self, workspace: &WorkspaceUid, of: &MeterOf) -> StoreResult<Option<StoredMeter>>;

    /// The ids of the live keys with this `external_id` (at most 1,000,
    /// oldest first).
    async fn identity_key_ids(&self, workspace: &WorkspaceUid, external_id: &str) -> StoreResult<Vec<ApiKeyId>>;
    /// The newest `limit` audit events of an organisation.
    async fn audit_events(&self, organisation: &OrganisationId, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        let filter = AuditFilter::organisation(organisation.clone());
        let query = AuditQuery { filter, order: AuditOrder::NewestFirst, after: None, limit };
        Ok(self.audit_page(&query).await?.into_iter().map(|recorded| recorded.event).collect())
    }
}
