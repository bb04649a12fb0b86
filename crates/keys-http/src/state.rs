//! What the whole application shares: its configuration ([`AppConfig`])
//! and the state every handler reads ([`AppState`]). A module of its own so
//! that the server, the dispatcher and the handlers depend on it and not on
//! each other.

use std::sync::Arc;
use std::time::Duration;

use keys_core::verify::{OrganisationTokenPolicy, TimePolicy};
use keys_service::Service;

use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;

/// `AppConfig::max_connections` of embedders; `keysd serve` derives its
/// default from the file-descriptor limit instead.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Limits and policy of the server.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Issuer bases accepted in Versori-style JWTs; empty accepts any base.
    pub issuer_bases: Vec<String>,
    /// Largest request body, in bytes (413 beyond).
    pub body_limit: usize,
    /// Longest time to receive a request body (408 beyond).
    pub body_read_timeout: Duration,
    /// Longest time to answer a request, body included (503 beyond).
    pub request_timeout: Duration,
    /// Longest time a client may take to send a request head: from the
    /// connection's start to its first request, whatever the protocol, and
    /// between requests on an HTTP/1 keep-alive connection.
    pub header_read_timeout: Duration,
    /// Most connections served at once; a socket accepted beyond is closed
    /// at once.
    pub max_connections: usize,
    /// Age at which a connection is asked to close (clients reconnect).
    pub max_connection_age: Duration,
    /// How often an HTTP/2 connection is pinged; one unanswered for as long
    /// again is closed.
    pub http2_keep_alive_interval: Duration,
    /// Longest wait for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// RSA keys generated ahead of time; 0 generates on demand.
    pub rsa_pool_capacity: usize,
    /// Threads that refill the RSA pool (`--rsa-pool-threads`).
    pub rsa_pool_threads: usize,
    /// JWTs the warm path remembers (`--verified-token-cache-entries`; 0:
    /// off).
    pub verified_token_cache_entries: usize,
    /// RSA keys generated inline at once (`--rsa-max-concurrent-generations`).
    pub rsa_max_concurrent_generations: usize,
    /// Verification calls and failed authentications a client may make per
    /// minute (`--rate-limit`); `None`: no limit.
    pub rate_limit_per_minute: Option<std::num::NonZeroU32>,
    /// `/metrics` is served on its own listener (`--metrics-listen`, see
    /// [`crate::App::operations`]) and not on the main one.
    pub separate_metrics: bool,
    /// The one time window rule of every token (`--jwt-leeway-seconds`).
    pub time_policy: TimePolicy,
    /// `--jwt-require-exp`, `--jwt-max-lifetime-seconds`, `--jwt-audience`.
    pub organisation_token_policy: OrganisationTokenPolicy,
    /// How often recorded API key uses are written to `last_used_at`
    /// (`--last-used-interval-seconds`); `None` records none.
    pub last_used_interval: Option<Duration>,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            issuer_bases: Vec::new(),
            body_limit: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connection_age: Duration::from_secs(600),
            http2_keep_alive_interval: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            rsa_pool_capacity: keys_crypto::keypair::DEFAULT_POOL_CAPACITY,
            rsa_pool_threads: keys_crypto::keypair::DEFAULT_POOL_THREADS,
            verified_token_cache_entries: keys_service::warm::DEFAULT_VERIFIED_TOKEN_CACHE_ENTRIES,
            rsa_max_concurrent_generations: keys_service::DEFAULT_RSA_MAX_CONCURRENT_GENERATIONS,
            separate_metrics: false,
            rate_limit_per_minute: None,
            time_policy: TimePolicy::default(),
            organisation_token_policy: OrganisationTokenPolicy::default(),
            last_used_interval: Some(Duration::from_secs(60)),
        }
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    /// The use cases; handlers call nothing else below HTTP.
    pub service: Arc<Service>,
    pub config: AppConfig,
    pub metrics: Metrics,
    /// From [`AppConfig::rate_limit_per_minute`].
    pub rate_limiter: Option<RateLimiter>,
    /// The generated OpenAPI document without `servers` (see
    /// [`crate::openapi`]), built by the application at start.
    pub openapi: &'static str,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config", &self.config).finish_non_exhaustive()
    }
}
