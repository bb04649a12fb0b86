//! keys-service: the use cases of keysd, below HTTP.
//!
//! Every flow exists here once: bootstrap, organisation and service-token
//! creation, workspace, API-key, public-key, signing-key and
//! organisation-key management, and every verification. The HTTP handlers
//! of keys-http, the `keysd` CLI, the tests and services that embed keysd
//! all call a [`Service`]; a handler only parses the request into keys-core
//! values, calls one method, and renders what it returns.
//!
//! A use case (1) resolves what the request names *within the caller's
//! [`Scope`]* (a workspace slug of another organisation does not exist for
//! the caller), (2) makes what is new — ids, secrets, key pairs — from the
//! injected [`Entropy`] at the injected [`Clock`]'s `now`, (3) hands the
//! keys-core value or transition to the store, which runs it in one
//! transaction, and (4) returns the result together with the secret that
//! exists in plaintext only in that return value. Verification looks the
//! credential up, checks signatures with keys-crypto, and lets the total
//! `keys_core::verify::decide_*` functions decide.
//!
//! **Architecture invariant:** keys-service knows no HTTP, no JSON wire
//! format and no SQL. It decides nothing itself: every rule is a keys-core
//! function; it only fetches what those functions need, in the right order.
//!
//! Modules are named by the resource they hold: [`workspaces`],
//! [`api_keys`], [`public_keys`], [`signing_keys`], [`organisation_keys`],
//! [`operators`] (organisations, service tokens, bootstrap), [`audit`]
//! (the trail: pages, export, prune) and [`verification`], with its warm
//! path [`warm`].

pub mod api_keys;
pub mod audit;
pub mod jwks;
pub mod leaks;
pub mod metering;
pub mod operators;
pub mod organisation_keys;
pub mod public_keys;
pub mod service_tokens;
pub mod signing_keys;
mod usage;
pub mod usage_counts;
pub mod verification;
pub mod warm;
pub mod webhooks;
pub mod workspaces;

use std::fmt;
use std::sync::Arc;

use keys_core::verify::{OrganisationTokenPolicy, Scope, TimePolicy};
use keys_core::{
    Actor, CoreError, Name, NewServiceToken, Organisation, OrganisationId, Permission, RequestId, Role, SecretDigest,
    ServiceTokenId, ServiceTokenMaterial, ServiceTokenRecord, ServiceTokenState, TokenWorkspaces,
};
use keys_crypto::RsaKeyPool;
use keys_store::{Attributed, Attribution, Store, StoreError};
use rand_core::{CryptoRngCore, OsRng};
use time::OffsetDateTime;

pub use usage::UsageFlusher;
pub use verification::{
    MeteredVerdict, PublicKeyRequest, Refusal, Verdict, VerifiedApiKey, VerifiedJwt, VerifiedPublicKey,
};

/// Where `now` comes from. [`SystemClock`] in production; tests and
/// embedders may pass their own.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
}

/// The system's UTC clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Where randomness comes from: a cryptographically secure generator for
/// each use case that makes ids, secrets or key pairs.
pub trait Entropy: Send + Sync + 'static {
    fn generator(&self) -> Box<dyn CryptoRngCore + Send>;
}

/// The operating system's CSPRNG ([`OsRng`]; boxing it allocates nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn generator(&self) -> Box<dyn CryptoRngCore + Send> {
        Box::new(OsRng)
    }
}

/// The policy a [`Service`] applies.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Issuer bases accepted in Versori-style JWTs; empty accepts any base.
    pub issuer_bases: Vec<String>,
    /// The one time window rule of every token (`exp`, `nbf`, `iat`).
    pub time_policy: TimePolicy,
    /// What Versori-style JWTs must carry beyond it (`exp`, lifetime, `aud`).
    pub organisation_token_policy: OrganisationTokenPolicy,
    /// RSA keys generated ahead of time; 0 generates on demand.
    pub rsa_pool_capacity: usize,
    /// Threads that refill the RSA pool (at least 1 when it has a capacity).
    pub rsa_pool_threads: usize,
    /// RSA keys generated inline (the pool empty) at once, at least 1: each
    /// takes a core for up to a second, and without a bound a burst of
    /// creates would take every core from verification.
    pub rsa_max_concurrent_generations: usize,
    /// Whether verification records each API key's last use, and each
    /// authentication its service token's (in memory; written by
    /// [`Service::spawn_usage_flusher`]).
    pub record_api_key_uses: bool,
    /// The most verified JWTs the warm path remembers ([`warm`]); 0 turns
    /// it off.
    pub verified_token_cache_entries: usize,
    /// Whether verifications are counted per key (in memory; written by
    /// [`Service::spawn_usage_counts_flusher`]).
    pub count_usage: bool,
    /// How long usage buckets are kept.
    pub usage_retention: keys_core::usage::UsageRetention,
    /// Webhook endpoints and delivery ([`webhooks`]).
    pub webhooks: webhooks::WebhookConfig,
}

/// The default of [`ServiceConfig::rsa_max_concurrent_generations`].
pub const DEFAULT_RSA_MAX_CONCURRENT_GENERATIONS: usize = 2;

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            issuer_bases: Vec::new(),
            time_policy: TimePolicy::default(),
            organisation_token_policy: OrganisationTokenPolicy::default(),
            rsa_pool_capacity: 0,
            rsa_pool_threads: keys_crypto::keypair::DEFAULT_POOL_THREADS,
            rsa_max_concurrent_generations: DEFAULT_RSA_MAX_CONCURRENT_GENERATIONS,
            record_api_key_uses: false,
            verified_token_cache_entries: warm::DEFAULT_VERIFIED_TOKEN_CACHE_ENTRIES,
            count_usage: false,
            usage_retention: keys_core::usage::UsageRetention::DEFAULT,
            webhooks: webhooks::WebhookConfig::default(),
        }
    }
}

/// Who is calling. Made only by authenticating a service token
/// ([`Service::authenticate`], [`Service::authenticate_gateway`]) or, for a
/// service that embeds keysd, by [`Caller::embedded`], which states its
/// organisation, role and workspaces. It gives the [`Scope`] every decision
/// takes (its organisation and workspaces), the [`Role`] every use case
/// checks its [`Permission`] against ([`Caller::require`]), and the
/// [`Actor`] that fills every `*_by` the call causes; with the id of the
/// request it came in, the [`Attribution`] of every audit event.
#[derive(Clone)]
pub struct Caller {
    /// The token's record (shared with the store's cache, not copied); for
    /// an embedded caller, the record of the token it stands for, which is
    /// never stored and never authenticates, so that keys-core's token
    /// rules apply to it unchanged.
    record: Arc<ServiceTokenRecord>,
    /// Whether `record` is a stored token that authenticated.
    authenticated: bool,
    request_id: Option<RequestId>,
}

/// The id of the record an embedded caller stands for: no token has it
/// (every stored id is a ULID made at some instant after 1970).
const EMBEDDED_TOKEN_ID: &str = "st_00000000000000000000000000";

impl Caller {
    /// The caller of a token that authenticated.
    pub(crate) fn authenticated(record: Arc<ServiceTokenRecord>) -> Self {
        Self { record, authenticated: true, request_id: None }
    }

    /// A caller for a service that embeds keysd and calls the use cases in
    /// its own process, without a service token: it acts in
    /// `organisation_id` with `role`, limited to `workspaces`, exactly as a
    /// token of that role and limit would, and every use case checks its
    /// permission and the limit alike. Refused as a token would be: an
    /// admin limited to workspaces
    /// ([`CoreError::AdminTokenLimited`](keys_core::CoreError)).
    ///
    /// Changes it makes are attributed to no token and no request: their
    /// audit events and `*_by` fields name the actor `actor_name`
    /// (`org_<organisation>@embedded.keysd.local`).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # let database = keys_testkit::TestDb::sqlite();
    /// # let url = database.url();
    /// use keys_core::{Name, Permission, Role, TokenWorkspaces, WorkspaceSlug};
    /// use keys_service::{Caller, Service, ServiceConfig, ServiceError};
    ///
    /// let service = Service::new(keys_store::open(url).await.unwrap(), ServiceConfig::default());
    /// let organisation = service.bootstrap_if_empty().await.unwrap().unwrap().organisation;
    ///
    /// // A billing service that may only verify, in every workspace.
    /// let billing = Caller::embedded(
    ///     organisation.id.clone(),
    ///     Role::Verify,
    ///     TokenWorkspaces::all(),
    ///     Name::parse("billing").unwrap(),
    /// )
    /// .unwrap();
    /// assert!(billing.require(Permission::Verify).is_ok());
    /// let verdict = service.verify_api_key(&billing, "SS.not-a-key").await.unwrap();
    /// assert_eq!(verdict.unwrap_err().reason(), "malformed");
    /// // Management needs `manage`: refused by the use case itself.
    /// let refused = service.in_workspace(&billing, "staging").await;
    /// assert!(matches!(refused, Err(ServiceError::PermissionDenied(_))));
    ///
    /// // A provisioning job that manages the keys of `staging` only.
    /// let staging = vec![WorkspaceSlug::parse("staging").unwrap()];
    /// let provisioning = Caller::embedded(
    ///     organisation.id.clone(),
    ///     Role::Manage,
    ///     TokenWorkspaces::only(staging).unwrap(),
    ///     Name::parse("provisioning").unwrap(),
    /// )
    /// .unwrap();
    /// let workspace = service.in_workspace(&provisioning, "staging").await.unwrap();
    /// let created = workspace.create_signing_key().await.unwrap();
    /// assert_eq!(created.key.created_by.as_ref().map(|actor| actor.name()), Some("provisioning"));
    /// # });
    /// ```
    pub fn embedded(
        organisation_id: OrganisationId,
        role: Role,
        workspaces: TokenWorkspaces,
        actor_name: Name,
    ) -> Result<Self, CoreError> {
        let actor = Actor::new(actor_name.as_str(), format!("org_{organisation_id}@embedded.keysd.local"));
        // The record of the token it stands for, made by keys-core's rules
        // for any token (the operator's, so no creator limits it); its
        // instant is never read, and it never expires.
        let material = ServiceTokenMaterial {
            id: ServiceTokenId::parse(EMBEDDED_TOKEN_ID)?,
            digest: SecretDigest::from_bytes([0; 32]),
            masked_token: String::new(),
        };
        let organisation = Organisation::create(organisation_id, actor_name.clone(), OffsetDateTime::UNIX_EPOCH);
        let new = NewServiceToken { name: actor_name, role, workspaces, expires_at: None };
        let record = ServiceTokenRecord::create(material, &organisation, new, None, OffsetDateTime::UNIX_EPOCH)?;
        let record = ServiceTokenRecord::restore(ServiceTokenState { actor, ..ServiceTokenState::clone(&record) });
        Ok(Self { record: Arc::new(record), authenticated: false, request_id: None })
    }

    /// The same caller, acting in the request `request_id`.
    pub fn with_request_id(self, request_id: RequestId) -> Self {
        Self { request_id: Some(request_id), ..self }
    }

    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// What the audit events of this caller's changes say of it: the token
    /// and request, none for an embedded caller (its actor names it).
    pub fn attribution(&self) -> Attribution {
        let token_id = self.authenticated.then(|| self.record.id.clone());
        Attribution { token_id, request_id: self.request_id.clone() }
    }

    pub fn scope(&self) -> Scope<'_> {
        self.record.scope()
    }

    pub fn role(&self) -> Role {
        self.record.role
    }

    /// Whether the caller's role allows an operation that needs
    /// `permission` (keys-core decides: [`Role::permits`]).
    pub fn may(&self, permission: Permission) -> bool {
        self.record.role.permits(permission)
    }

    /// The check every use case that takes a caller makes first: its
    /// `permission`, or [`ServiceError::PermissionDenied`] saying which role
    /// it needs. (The workspace limit is checked where a workspace is
    /// resolved: [`Service::workspace`], [`Service::own_organisation`].)
    pub fn require(&self, permission: Permission) -> ServiceResult<()> {
        if self.may(permission) {
            return Ok(());
        }
        Err(ServiceError::PermissionDenied(format!(
            "this caller may not do this: it needs role '{}' (this one is '{}')",
            permission.least_role(),
            self.role()
        )))
    }

    pub fn actor(&self) -> &Actor {
        &self.record.actor
    }

    /// The record of the service token that authenticated; `None` for an
    /// embedded caller.
    pub fn token(&self) -> Option<&ServiceTokenRecord> {
        self.authenticated.then_some(&*self.record)
    }

    /// The record keys-core's token rules read of this caller (a creator's
    /// role and limit), embedded or not.
    pub(crate) fn record(&self) -> &ServiceTokenRecord {
        &self.record
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("organisation_id", &self.record.organisation_id)
            .field("token_id", &self.token().map(|token| &token.id))
            .field("role", &self.record.role)
            .field("actor", &self.record.actor)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// Why a use case did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The workspace the request names does not exist for the caller (it
    /// may exist in another organisation: the caller cannot tell).
    #[error("workspace not found")]
    WorkspaceNotFound,
    /// The organisation the request names is not the caller's, or does not
    /// exist.
    #[error("organisation not found")]
    OrganisationNotFound,
    /// The caller's token may not do this: its role is too low, or the
    /// workspace (which exists in its organisation) is outside its
    /// workspaces.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is well formed but names something that cannot be used
    /// (a workspace that does not exist in a token's `workspaces`).
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed; see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Work handed to a blocking thread (RSA key generation) did not finish.
    #[error("background task failed")]
    Background(#[source] tokio::task::JoinError),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// The use cases over one store. Cheap to share (`Arc` it); every method
/// takes `&self`.
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    config: ServiceConfig,
    rsa_pool: Arc<RsaKeyPool>,
    /// Permits for inline RSA generation ([`ServiceConfig::rsa_max_concurrent_generations`]).
    rsa_generations: Arc<tokio::sync::Semaphore>,
    /// Inline RSA generations running now.
    rsa_generating: Arc<std::sync::atomic::AtomicUsize>,
    parsed_keys: verification::ParsedKeys,
    usage: usage::UsageRecorder<keys_core::ApiKeyId>,
    token_usage: usage::UsageRecorder<keys_core::ServiceTokenId>,
    /// Verifications counted per key and outcome ([`usage_counts`]).
    usage_counts: usage_counts::UsageCounter,
    /// JWTs whose signature verified, by the digest of the token.
    warm: warm::VerifiedTokens<verification::Warm>,
    /// The public JWKS documents, made once per set of keys ([`jwks`]).
    jwks_documents: jwks::JwksDocuments,
    /// Signature checks made by verification ([`Service::signature_checks`]).
    signature_checks: std::sync::atomic::AtomicU64,
    /// Gateway tokens stronger than `verify` already warned of
    /// ([`Service::authenticate_gateway`]).
    strong_gateways: std::sync::Mutex<std::collections::HashSet<keys_core::ServiceTokenId>>,
    /// What this replica holds of metering ([`metering`]).
    metering: metering::Metering,
    /// This process's webhook state ([`webhooks`]).
    webhooks: webhooks::WebhookState,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Service {
    /// A service on `store` with the system clock and the OS CSPRNG.
    pub fn new(store: Arc<dyn Store>, config: ServiceConfig) -> Self {
        Self::with_sources(store, config, Arc::new(SystemClock), Arc::new(OsEntropy))
    }

    /// A service with an explicit clock and entropy source.
    pub fn with_sources(
        store: Arc<dyn Store>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        let rsa_pool = Arc::new(RsaKeyPool::with_threads(config.rsa_pool_capacity, config.rsa_pool_threads));
        let rsa_generations = Arc::new(tokio::sync::Semaphore::new(config.rsa_max_concurrent_generations.max(1)));
        let usage = usage::UsageRecorder::new(config.record_api_key_uses);
        let token_usage = usage::UsageRecorder::new(config.record_api_key_uses);
        let warm = warm::VerifiedTokens::new(config.verified_token_cache_entries);
        // Names this process's usage batches: 128 random bits.
        let mut generator = entropy.generator();
        let process = format!("{:016x}{:016x}", generator.next_u64(), generator.next_u64());
        let usage_counts = usage_counts::UsageCounter::new(config.count_usage, config.usage_retention, process);
        Self {
            store,
            clock,
            entropy,
            config,
            rsa_pool,
            rsa_generations,
            rsa_generating: Arc::default(),
            parsed_keys: verification::ParsedKeys::default(),
            usage,
            token_usage,
            usage_counts,
            warm,
            jwks_documents: jwks::JwksDocuments::default(),
            signature_checks: std::sync::atomic::AtomicU64::new(0),
            strong_gateways: std::sync::Mutex::default(),
            metering: metering::Metering::default(),
            webhooks: webhooks::WebhookState::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The store, with every change attributed to `caller` (its token and
    /// request reach each audit event the change writes).
    pub(crate) fn mutations<'a>(&'a self, caller: &Caller) -> Attributed<'a, dyn Store> {
        Attributed::new(&*self.store, caller.attribution())
    }

    /// The clock's `now`.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// A generator for one use case.
    pub(crate) fn rng(&self) -> Box<dyn CryptoRngCore + Send> {
        self.entropy.generator()
    }

    /// How many verified JWTs the warm path remembers now.
    pub fn warm_path_entries(&self) -> usize {
        self.warm.len()
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> ServiceResult<()> {
        Ok(self.store.ping().await?)
    }
}
