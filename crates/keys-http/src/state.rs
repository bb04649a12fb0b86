//! What the whole application shares: its configuration ([`AppConfig`])
//! and the state every handler reads ([`AppState`]). A module of its own so
//! that the server, the dispatcher and the handlers depend on it and not on
//! each other.

use std::sync::Arc;
use std::time::Duration;

use keys_service::{Service, ServiceConfig};

use crate::metrics::Metrics;
use crate::rate_limit::{RateLimiter, TrustedProxies};

/// `AppConfig::max_connections` of embedders; `keysd serve` derives its
/// default from the file-descriptor limit instead.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// [`AppConfig::max_request_head_bytes`]: 16 KiB (nginx's default allows
/// 8 KiB a header line).
pub const DEFAULT_MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;

/// [`AppConfig::http2_max_concurrent_streams`].
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// [`AppConfig::max_response_bytes_per_connection`]: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES_PER_CONNECTION: usize = 1024 * 1024;

/// [`AppConfig::max_response_bytes`]: 256 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Limits and policy of the server.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The use cases' policy, passed to [`Service::new`] as it is (the one
    /// place the token rules, the RSA pool and the warm path are set).
    /// Whether API key uses are recorded follows
    /// [`AppConfig::last_used_interval`].
    pub service: ServiceConfig,
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
    /// Most connections served at once. When all are open, a new one takes
    /// the place of one that serves nobody (silent, stalled or idle); when
    /// every one has a request in progress, the new socket is closed.
    pub max_connections: usize,
    /// Largest request head, in bytes: HTTP/1 (431 beyond) and the HTTP/2
    /// header list (`--max-request-head-bytes`).
    pub max_request_head_bytes: usize,
    /// Streams one HTTP/2 connection may have open at once
    /// (`--http2-max-concurrent-streams`).
    pub http2_max_concurrent_streams: u32,
    /// Unsent bytes of unshared response bodies one connection may hold; a
    /// connection over it is closed (`--max-response-bytes-per-connection`).
    pub max_response_bytes_per_connection: usize,
    /// The same over every connection: the connection that goes over it is
    /// closed (`--max-response-bytes`).
    pub max_response_bytes: usize,
    /// A connection holding response bytes its peer takes none of for this
    /// long is closed (`--stalled-response-timeout-seconds`).
    pub stalled_response_timeout: Duration,
    /// Proxies whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    pub trusted_proxies: TrustedProxies,
    /// Age at which a connection is asked to close (clients reconnect).
    pub max_connection_age: Duration,
    /// How often an HTTP/2 connection is pinged; one unanswered for as long
    /// again is closed.
    pub http2_keep_alive_interval: Duration,
    /// Longest wait for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Verification calls and failed authentications a client may make per
    /// minute (`--rate-limit`); `None`: no limit.
    pub rate_limit_per_minute: Option<std::num::NonZeroU32>,
    /// `/metrics` is served on its own listener (`--metrics-listen`, see
    /// [`crate::App::operations`]) and not on the main one.
    pub separate_metrics: bool,
    /// How often recorded API key uses are written to `last_used_at`
    /// (`--last-used-interval-seconds`); `None` records none.
    pub last_used_interval: Option<Duration>,
    /// How often usage counts are written and old buckets pruned
    /// (`--usage-interval-seconds`); `None` counts none per key (set
    /// `service.count_usage` to match).
    pub usage_interval: Option<Duration>,
    /// HTTPS on every listener of the application (`--tls-cert-file`,
    /// `--tls-key-file`); `None` serves plain HTTP.
    pub tls: Option<crate::tls::Tls>,
    /// GitHub's secret-scanning keys (`--github-secret-scanning-keys`);
    /// `None`: `POST /v1/secret_scanning/github/` is a 404.
    pub github_keys: Option<crate::GithubKeys>,
    /// Leak reports (GitHub's and others') a client may send per minute
    /// (`--leak-report-rate-limit`); on whatever `--rate-limit` says.
    pub leak_reports_per_minute: std::num::NonZeroU32,
    /// Whether this process delivers webhooks (the deliverer, the warnings'
    /// writer and the expiry scan); every replica does by default.
    pub deliver_webhooks: bool,
    /// More trust roots (PEM) for `https://` webhook destinations
    /// (`--webhook-ca-file`), beside Mozilla's.
    pub webhook_ca: Option<Vec<u8>>,
}

/// [`AppConfig::leak_reports_per_minute`].
pub const DEFAULT_LEAK_REPORTS_PER_MINUTE: std::num::NonZeroU32 = match std::num::NonZeroU32::new(120) {
    Some(limit) => limit,
    None => unreachable!(),
};

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            service: ServiceConfig::default(),
            body_limit: 64 * 1024,
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_request_head_bytes: DEFAULT_MAX_REQUEST_HEAD_BYTES,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
            max_response_bytes_per_connection: DEFAULT_MAX_RESPONSE_BYTES_PER_CONNECTION,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            stalled_response_timeout: Duration::from_secs(10),
            trusted_proxies: TrustedProxies::default(),
            max_connection_age: Duration::from_secs(600),
            http2_keep_alive_interval: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            separate_metrics: false,
            rate_limit_per_minute: None,
            last_used_interval: Some(Duration::from_secs(60)),
            usage_interval: None,
            tls: None,
            github_keys: None,
            leak_reports_per_minute: DEFAULT_LEAK_REPORTS_PER_MINUTE,
            deliver_webhooks: true,
            webhook_ca: None,
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
    /// From [`AppConfig::leak_reports_per_minute`].
    pub leak_limiter: RateLimiter,
    /// The generated OpenAPI document without `servers` (see
    /// [`crate::openapi`]), built by the application at start.
    pub openapi: &'static str,
    /// `/openapi.json`'s bodies by the server they name, shared between
    /// responses.
    pub openapi_bodies: SharedBodies,
    /// Set when the process begins to shut down ([`crate::App::drain`]):
    /// `/ready` answers 503 from then on, so that load balancers stop
    /// sending requests while those in flight finish.
    pub draining: std::sync::atomic::AtomicBool,
}

/// Response bodies built once and shared between responses (cloning a
/// [`Bytes`] copies nothing), keyed by what they vary with. It keeps
/// [`SharedBodies::MAX`] at most; beyond, a body is built per response
/// (keys come from clients, such as the `Host` header).
#[derive(Debug, Default)]
pub(crate) struct SharedBodies(std::sync::Mutex<std::collections::HashMap<String, bytes::Bytes>>);

impl SharedBodies {
    const MAX: usize = 16;

    /// The body kept for `key`, or `build`'s (kept while there is room).
    pub fn get_or_insert(&self, key: &str, build: impl FnOnce() -> bytes::Bytes) -> bytes::Bytes {
        let mut bodies = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(body) = bodies.get(key) {
            return body.clone();
        }
        let body = build();
        if bodies.len() < Self::MAX {
            bodies.insert(key.to_owned(), body.clone());
        }
        body
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("config", &self.config).finish_non_exhaustive()
    }
}
