//! keys-core: the pure domain of keysd.
//!
//! Organisations, workspaces and their keys, every state transition of the
//! key lifecycle, the invariants those transitions keep, and the one
//! verification decision that says whether a credential may authenticate at a
//! given moment.
//!
//! **Architecture invariant:** this crate knows nothing of tokio, sqlx, hyper,
//! serde_json or the clock. Time (`now`) and randomness (an `RngCore`) are
//! parameters of every function that needs them.
//!
//! Entities are newtypes over a `…State` struct with public fields: reading
//! is plain field access (through `Deref`), while every change goes through a
//! transition method that returns `Result<_, CoreError>`. `restore` rebuilds
//! an entity from what storage read back.

mod api_key;
mod digest;
mod error;
mod ids;
pub mod meter;
mod organisation;
mod organisation_key;
mod origin;
mod public_key;
mod quota;
mod service_token;
mod signing_key;
pub mod usage;
mod values;
pub mod verify;
pub mod webhook;
mod workspace;

pub use api_key::{
    ApiKey, ApiKeyLifecycle, ApiKeyMaterial, ApiKeyPatch, ApiKeyProfile, ApiKeyState, ApiKeyStatus, ExternalId,
    KeyMeta, KeyScope, KeyScopes, LeakContainment, NewApiKey, StoredApiKey, StoredStamp,
};
pub use digest::SecretDigest;
pub use error::CoreError;
pub use ids::{
    ulid, ApiKeyId, OrganisationId, OrganisationKeyId, PublicKeyId, RequestId, ServiceTokenId, SigningKeyId,
    SigningKeyUid, WorkspaceUid,
};
pub use organisation::Organisation;
pub use organisation_key::{KeyPage, KeyPosition, KeySlice, OrganisationSigningKey, OrganisationSigningKeyState};
pub use origin::{DomainPattern, Origin, Scheme};
pub use public_key::{NewPublicKey, PublicKey, PublicKeyPatch, PublicKeyRing, PublicKeyState};
pub use quota::{EntityKind, Mutation, QuotaKind, Quotas};
pub use service_token::{
    LiveAdmin, NewServiceToken, Permission, Role, ServiceTokenMaterial, ServiceTokenRecord, ServiceTokenState,
    TokenWorkspaces,
};
pub use signing_key::{
    Deletion, GracePeriod, NewSigningKey, SigningKeyLifecycle, SigningKeyRing, SigningKeyState, SigningKeyStatus,
    StoredSigningKey, WorkspaceSigningKey,
};
pub use values::{
    format_timestamp, timestamp, Actor, ApiKeyPrefix, Description, Mode, Name, OnLeak, Page, Pagination, WorkspaceSlug,
    COMBINING_MARKS, FORMAT_CHARACTERS, INVISIBLE_CHARACTERS, MAX_COMBINING_MARKS, PRESENTATION_SELECTORS,
    RESERVED_SLUGS,
};
pub use workspace::{NewWorkspace, Workspace, WorkspacePatch};
