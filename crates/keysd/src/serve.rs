//! `keysd serve`: the HTTP server of keys-http on a cached store, with the
//! process limits it asks of the OS and one shutdown signal for both
//! listeners.

use anyhow::{anyhow, Context};
use clap::Args;
use keys_core::verify::{OrganisationTokenPolicy, TimePolicy};
use keys_core::Quotas;
use keys_http::{serve, App, AppConfig};
use keys_service::{Service, ServiceConfig};
use keys_store::CacheConfig;
use tokio::net::TcpListener;

use crate::database::{open_cached_store, service_error};
use crate::process;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "KEYSD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Serve `/metrics` (and `/health`, `/ready`) on this address instead of
    /// the main one, so that per-tenant traffic figures are not public;
    /// `/metrics` then answers 404 on `--listen`.
    #[arg(long, env = "KEYSD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Serve HTTPS (TLS 1.2 and 1.3, HTTP/2 by ALPN) on `--listen` and
    /// `--metrics-listen` with this certificate chain (PEM, leaf first);
    /// needs `--tls-key-file`. Both files are read again every 2 s: a changed
    /// pair serves new connections without a restart.
    #[arg(long, env = "KEYSD_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The private key of `--tls-cert-file` (PEM, not encrypted; keep it
    /// mode 0600).
    #[arg(long, env = "KEYSD_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Accepted issuer base of Versori-style JWTs (repeatable); none given
    /// accepts the base a token states.
    #[arg(long = "jwt-issuer-base", value_name = "URL")]
    pub jwt_issuer_bases: Vec<String>,
    /// How long, in milliseconds, a cached verification lookup may answer
    /// (0 turns the cache off). At most 1000, so that a change made by
    /// another process is seen within a second even without notifications.
    #[arg(long, env = "KEYSD_CACHE_TTL_MS", value_name = "MS", default_value_t = 500, value_parser = up_to(1000))]
    pub cache_ttl_ms: u64,
    /// RSA-2048 keys generated ahead of time for organisation signing keys
    /// (0 generates each on demand). Generating one takes 0.2-0.7 s of a
    /// core, so a create that finds the pool empty waits that long.
    #[arg(long, env = "KEYSD_RSA_POOL_SIZE", value_name = "KEYS", default_value_t = 8, value_parser = up_to(256))]
    pub rsa_pool_size: u64,
    /// Threads that refill the RSA pool. More refill a drained pool sooner
    /// (a burst of creates), each taking a core while it generates.
    #[arg(long, env = "KEYSD_RSA_POOL_THREADS", value_name = "THREADS", default_value_t = 1)]
    #[arg(value_parser = clap::value_parser!(u64).range(1..=16))]
    pub rsa_pool_threads: u64,
    /// JWTs whose signature verified that are remembered by the digest of
    /// the whole token (the warm path), so that a token sent again skips
    /// the signature check; every other check still runs on each request.
    /// About 1 KiB each at most; 0 turns the warm path off.
    #[arg(long, env = "KEYSD_VERIFIED_TOKEN_CACHE_ENTRIES", value_name = "TOKENS")]
    #[arg(default_value_t = keys_service::warm::DEFAULT_VERIFIED_TOKEN_CACHE_ENTRIES as u64)]
    #[arg(value_parser = up_to(10_000_000))]
    pub verified_token_cache_entries: u64,
    /// RSA keys generated inline at once when the pool is empty; further
    /// organisation-key creates wait their turn, so that a burst of them
    /// cannot take every core from verification.
    #[arg(
        long,
        env = "KEYSD_RSA_MAX_CONCURRENT_GENERATIONS",
        value_name = "N",
        default_value_t = 2,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub rsa_max_concurrent_generations: u32,
    /// Allowance for clock skew on every token's `exp`, `nbf` and `iat`.
    #[arg(
        long,
        env = "KEYSD_JWT_LEEWAY_SECONDS",
        value_name = "SECONDS",
        default_value_t = keys_core::verify::DEFAULT_LEEWAY_SECONDS,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(keys_core::verify::MAX_LEEWAY_SECONDS))
    )]
    pub jwt_leeway_seconds: u32,
    /// Longest a secure-mode user token may be valid: `exp` at most this
    /// long after `iat` (after now without `iat`); beyond,
    /// `user_token_lifetime_too_long`. Default 366 days, at most 10 years.
    #[arg(
        long,
        env = "KEYSD_USER_TOKEN_MAX_LIFETIME_SECONDS",
        value_name = "SECONDS",
        default_value_t = keys_core::verify::DEFAULT_USER_TOKEN_MAX_LIFETIME_SECONDS,
        value_parser = clap::value_parser!(u32).range(60..=315_360_000)
    )]
    pub user_token_max_lifetime_seconds: u32,
    /// Refuse Versori-style JWTs without `exp` (`token_exp_missing`); without
    /// it such a token is valid until its key is deleted.
    #[arg(long, env = "KEYSD_JWT_REQUIRE_EXP")]
    pub jwt_require_exp: bool,
    /// Refuse Versori-style JWTs valid for longer than this: `exp` more than
    /// SECONDS after `iat` (or after now, without `iat`). Implies
    /// `--jwt-require-exp`.
    #[arg(
        long,
        env = "KEYSD_JWT_MAX_LIFETIME_SECONDS",
        value_name = "SECONDS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub jwt_max_lifetime_seconds: Option<u32>,
    /// Accepted `aud` of Versori-style JWTs (repeatable); when given, a
    /// token must name one of them (`audience_not_accepted`).
    #[arg(long = "jwt-audience", value_name = "AUDIENCE")]
    pub jwt_audiences: Vec<String>,
    /// Verification calls and failed authentications each client address
    /// may make per minute (a token bucket); beyond, 429 with
    /// `Retry-After`, for verification and every route that needs a service
    /// token. Off by default. Behind a reverse proxy every client is the
    /// proxy, unless it is a `--trusted-proxy`.
    #[arg(long, env = "KEYSD_RATE_LIMIT", value_name = "PER_MINUTE", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Leak reports (GitHub's secret-scanning alerts and
    /// `POST /v1/leak_report/`) each client address may send per minute;
    /// beyond, 429 with `Retry-After`. On whatever `--rate-limit` says.
    #[arg(
        long,
        env = "KEYSD_LEAK_REPORT_RATE_LIMIT",
        value_name = "PER_MINUTE",
        default_value_t = 120,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub leak_report_rate_limit: u32,
    /// Lets webhook endpoints use `http://` URLs and reach destinations that
    /// resolve to loopback, private, link-local, multicast or unspecified
    /// addresses (tests, private networks). Off: such a delivery attempt is
    /// refused (the address connected to is the one checked).
    #[arg(long, env = "KEYSD_WEBHOOK_ALLOW_PRIVATE_DESTINATIONS")]
    pub webhook_allow_private_destinations: bool,
    /// More trust roots (PEM certificates) for `https://` webhook
    /// destinations, beside Mozilla's (a private CA).
    #[arg(long, env = "KEYSD_WEBHOOK_CA_FILE", value_name = "FILE")]
    pub webhook_ca_file: Option<std::path::PathBuf>,
    /// Lead times of `api_key.expiring`, in hours before a key's
    /// `expires_at`, up to 30 days, the warnings' retention (repeatable;
    /// default 168 and 24: a week and a day).
    #[arg(
        long = "webhook-expiry-warning-hours",
        env = "KEYSD_WEBHOOK_EXPIRY_WARNING_HOURS",
        value_delimiter = ',',
        value_name = "HOURS",
        default_values_t = [168_u32, 24],
        value_parser = clap::value_parser!(u32).range(1..=720)
    )]
    pub webhook_expiry_warning_hours: Vec<u32>,
    /// Webhook attempts in flight to one endpoint from this process, so
    /// that one slow receiver cannot hold every delivery back.
    #[arg(
        long,
        env = "KEYSD_WEBHOOK_IN_FLIGHT_PER_ENDPOINT",
        value_name = "N",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=64)
    )]
    pub webhook_in_flight_per_endpoint: u32,
    /// GitHub's secret-scanning public keys: the JSON GitHub publishes at
    /// https://api.github.com/meta/public_keys/secret_scanning, saved to a
    /// file (keysd reaches no other host). Enables
    /// `POST /v1/secret_scanning/github/`; the file is read again every
    /// 2 s, so a refreshed copy needs no restart.
    #[arg(long, env = "KEYSD_GITHUB_SECRET_SCANNING_KEYS", value_name = "FILE")]
    pub github_secret_scanning_keys: Option<std::path::PathBuf>,
    /// Most client connections at once. When all are open, a new one takes
    /// the place of the oldest that serves nobody (no complete request head
    /// yet, response bytes its peer does not take, or idle between
    /// requests); when every one has a request in progress, the new socket
    /// is closed at once. Default: three quarters of the open-files limit
    /// (after raising it to the hard limit), at most 65536.
    #[arg(long, env = "KEYSD_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,
    /// Longest time a connection may take to send a complete request head,
    /// from its start (whatever it sends, HTTP/1 or HTTP/2) and between
    /// requests on an HTTP/1 keep-alive connection; it is closed beyond.
    #[arg(
        long,
        env = "KEYSD_HEADER_READ_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=300)
    )]
    pub header_read_timeout_seconds: u32,
    /// Age at which a connection is asked to close gracefully (HTTP/2
    /// GOAWAY, HTTP/1 `Connection: close`); clients reconnect.
    #[arg(
        long,
        env = "KEYSD_MAX_CONNECTION_AGE_SECONDS",
        value_name = "SECONDS",
        default_value_t = 600,
        value_parser = clap::value_parser!(u32).range(1..=86_400)
    )]
    pub max_connection_age_seconds: u32,
    /// Interval of HTTP/2 keep-alive pings; a connection that leaves one
    /// unanswered for as long again is closed.
    #[arg(
        long,
        env = "KEYSD_HTTP2_KEEP_ALIVE_SECONDS",
        value_name = "SECONDS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    pub http2_keep_alive_seconds: u32,
    /// Streams one HTTP/2 connection may have open at once.
    #[arg(
        long,
        env = "KEYSD_HTTP2_MAX_CONCURRENT_STREAMS",
        value_name = "N",
        default_value_t = keys_http::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub http2_max_concurrent_streams: u32,
    /// Largest request head (request line and headers; on HTTP/2 the
    /// decoded header list), in bytes; 431 beyond.
    #[arg(
        long,
        env = "KEYSD_MAX_REQUEST_HEAD_BYTES",
        value_name = "BYTES",
        default_value_t = keys_http::DEFAULT_MAX_REQUEST_HEAD_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(8192..=1_048_576)
    )]
    pub max_request_head_bytes: u64,
    /// Unsent bytes of response bodies (those not shared with a cache) one
    /// connection may hold while its peer does not read them; a connection
    /// over it is closed.
    #[arg(
        long,
        env = "KEYSD_MAX_RESPONSE_BYTES_PER_CONNECTION",
        value_name = "BYTES",
        default_value_t = keys_http::DEFAULT_MAX_RESPONSE_BYTES_PER_CONNECTION as u64,
        value_parser = clap::value_parser!(u64).range(65_536..=1_073_741_824)
    )]
    pub max_response_bytes_per_connection: u64,
    /// The same over every connection: the connection whose response would
    /// go over it is closed.
    #[arg(
        long,
        env = "KEYSD_MAX_RESPONSE_BYTES",
        value_name = "BYTES",
        default_value_t = keys_http::DEFAULT_MAX_RESPONSE_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(65_536..=68_719_476_736)
    )]
    pub max_response_bytes: u64,
    /// A connection that holds response bytes its peer takes none of for
    /// this long (an HTTP/2 flow-control window left at zero, a socket
    /// never read) is closed.
    #[arg(
        long,
        env = "KEYSD_STALLED_RESPONSE_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    pub stalled_response_timeout_seconds: u32,
    /// A reverse proxy keysd believes (`ADDRESS` or `ADDRESS/PREFIX`,
    /// repeatable): for its requests the client is the right-most address
    /// of `X-Forwarded-For` that is not a trusted proxy, for the rate limit.
    /// None by default: the header is ignored.
    #[arg(long = "trusted-proxy", env = "KEYSD_TRUSTED_PROXIES", value_delimiter = ',', value_name = "CIDR")]
    pub trusted_proxies: Vec<keys_http::rate_limit::Cidr>,
    /// How often the API keys' `last_used_at` is written, at most once per
    /// key per interval (uses are recorded in memory, never on the request
    /// path); 0 records no uses.
    #[arg(long, env = "KEYSD_LAST_USED_INTERVAL_SECONDS", value_name = "SECONDS", default_value_t = 60)]
    #[arg(value_parser = up_to(86_400))]
    pub last_used_interval_seconds: u64,
    /// How often verifications counted per key and outcome are written to
    /// the usage buckets (in memory until then, never on the request path),
    /// and buckets past their retention pruned; 0 counts nothing per key
    /// (`/metrics` still counts by kind and outcome).
    #[arg(long, env = "KEYSD_USAGE_INTERVAL_SECONDS", value_name = "SECONDS", default_value_t = 60)]
    #[arg(value_parser = up_to(86_400))]
    pub usage_interval_seconds: u64,
    /// How long minute buckets of usage are kept.
    #[arg(long, env = "KEYSD_USAGE_MINUTE_RETENTION_HOURS", value_name = "HOURS", default_value_t = 48)]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=876_000))]
    pub usage_minute_retention_hours: u32,
    /// How long hour buckets of usage are kept.
    #[arg(long, env = "KEYSD_USAGE_HOUR_RETENTION_DAYS", value_name = "DAYS", default_value_t = 90)]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub usage_hour_retention_days: u32,
    /// How long day buckets of usage are kept.
    #[arg(long, env = "KEYSD_USAGE_DAY_RETENTION_DAYS", value_name = "DAYS", default_value_t = 730)]
    #[arg(value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub usage_day_retention_days: u32,
    /// After SIGTERM (or ctrl-c), how long `serve` keeps serving with
    /// `/ready` answering 503, so that load balancers take it out of
    /// rotation before it stops accepting connections; a second signal
    /// cuts it short.
    #[arg(
        long,
        env = "KEYSD_SHUTDOWN_DELAY_SECONDS",
        value_name = "SECONDS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=300)
    )]
    pub shutdown_delay_seconds: u32,
    /// Then, how long requests in flight may take to finish before their
    /// connections are closed; the pending `last_used_at` writes follow.
    #[arg(
        long,
        env = "KEYSD_SHUTDOWN_GRACE_SECONDS",
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    pub shutdown_grace_seconds: u32,
    /// Whether `serve` applies the pending migrations at start (`auto`) or
    /// refuses to start while one is pending (`never`: the fleet migrates
    /// with `keysd migrate` as a step of its own). Either way it refuses a
    /// schema that needs a newer keysd. See docs/OPERATIONS.md.
    #[arg(long, env = "KEYSD_MIGRATE", value_name = "WHEN", value_enum, default_value_t = MigrateWhen::Auto)]
    pub migrate: MigrateWhen,
    #[command(flatten)]
    pub quotas: QuotaArgs,
}

/// `--migrate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MigrateWhen {
    /// Apply the pending migrations at start.
    Auto,
    /// Apply none; refuse to start while one is pending.
    Never,
}

impl From<MigrateWhen> for keys_store::Migrations {
    fn from(when: MigrateWhen) -> Self {
        match when {
            MigrateWhen::Auto => Self::Apply,
            MigrateWhen::Never => Self::Require,
        }
    }
}

/// The parser of a bounded count option: a whole number from 0 to `max`
/// (what `clap::value_parser!(u64).range(0..=max)` makes).
fn up_to(max: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(0..=max)
}

/// `keysd serve`.
pub async fn run(database_url: &str, args: ServeArgs) -> anyhow::Result<()> {
    // Before anything is announced: a signal from now on drains.
    let mut signals = Signals::listen()?;
    process::disable_core_dumps();
    let descriptor_limit = process::raise_descriptor_limit();
    let max_connections = match args.max_connections {
        // u32 always fits the usize of the platforms keysd builds for.
        Some(chosen) => usize::try_from(chosen).unwrap_or(usize::MAX),
        None => process::default_max_connections(descriptor_limit),
    };
    if let Some(limit) = descriptor_limit {
        if max_connections as u64 >= limit {
            tracing::warn!(
                max_connections,
                open_files_limit = limit,
                "--max-connections is not below the open-files limit: accepts will fail before it is reached"
            );
        }
    }
    // A bad certificate or key stops the start before anything listens.
    let tls = load_tls(args.tls_cert_file.as_deref(), args.tls_key_file.as_deref())?;
    let github_keys = args
        .github_secret_scanning_keys
        .as_ref()
        .map(keys_http::GithubKeys::load)
        .transpose()
        .map_err(|error| anyhow!("--github-secret-scanning-keys: {error}"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Bind first: a port in use fails before anything is written.
    let listener =
        TcpListener::bind(&args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("cannot read the listening address")?;
    let metrics_listener = match &args.metrics_listen {
        Some(metrics_address) => Some(
            TcpListener::bind(metrics_address)
                .await
                .with_context(|| format!("cannot listen on {metrics_address} (--metrics-listen)"))?,
        ),
        None => None,
    };
    let cache = CacheConfig { ttl: std::time::Duration::from_millis(args.cache_ttl_ms), ..CacheConfig::default() };
    let quotas = args.quotas.quotas().map_err(|error| anyhow!("{error}"))?;
    let store = open_cached_store(database_url, cache, quotas, args.migrate.into()).await?;
    if args.jwt_issuer_bases.is_empty() {
        tracing::warn!(
            "no --jwt-issuer-base pinned: Versori-style JWTs are accepted with any issuer base they state \
             (pin yours, e.g. --jwt-issuer-base https://versori.com)"
        );
    }
    let organisation_token_policy = OrganisationTokenPolicy {
        require_exp: args.jwt_require_exp,
        max_lifetime_seconds: args.jwt_max_lifetime_seconds,
        audiences: args.jwt_audiences,
    };
    // The flags fill one configuration: the service's policy inside the
    // server's limits.
    let service = ServiceConfig {
        issuer_bases: args.jwt_issuer_bases,
        organisation_token_policy,
        time_policy: TimePolicy::new(args.jwt_leeway_seconds)
            .map_err(|error| anyhow!("{error}"))?
            .with_user_token_max_lifetime(args.user_token_max_lifetime_seconds),
        // The range checks of the flags keep these far inside usize.
        rsa_pool_capacity: args.rsa_pool_size as usize,
        rsa_pool_threads: args.rsa_pool_threads as usize,
        verified_token_cache_entries: args.verified_token_cache_entries as usize,
        usage_retention: keys_core::usage::UsageRetention::new(
            time::Duration::hours(args.usage_minute_retention_hours.into()),
            time::Duration::days(args.usage_hour_retention_days.into()),
            time::Duration::days(args.usage_day_retention_days.into()),
        )
        .map_err(|error| anyhow!("--usage-*-retention-*: {error}"))?,
        rsa_max_concurrent_generations: args.rsa_max_concurrent_generations as usize,
        webhooks: keys_service::webhooks::WebhookConfig {
            allow_private_destinations: args.webhook_allow_private_destinations,
            expiry_warnings: args
                .webhook_expiry_warning_hours
                .iter()
                .map(|hours| time::Duration::hours(i64::from(*hours)))
                .collect(),
            in_flight_per_endpoint: args.webhook_in_flight_per_endpoint as usize,
        },
        ..ServiceConfig::default()
    };
    let webhook_ca = args
        .webhook_ca_file
        .as_ref()
        .map(|file| std::fs::read(file).with_context(|| format!("--webhook-ca-file {}", file.display())))
        .transpose()?;
    let config = AppConfig {
        service,
        separate_metrics: metrics_listener.is_some(),
        rate_limit_per_minute: args.rate_limit.and_then(std::num::NonZeroU32::new),
        leak_reports_per_minute: std::num::NonZeroU32::new(args.leak_report_rate_limit)
            .unwrap_or(keys_http::DEFAULT_LEAK_REPORTS_PER_MINUTE),
        github_keys,
        max_connections,
        header_read_timeout: seconds(args.header_read_timeout_seconds),
        max_connection_age: seconds(args.max_connection_age_seconds),
        http2_keep_alive_interval: seconds(args.http2_keep_alive_seconds),
        http2_max_concurrent_streams: args.http2_max_concurrent_streams,
        // The range checks of the flags keep these far inside usize.
        max_request_head_bytes: usize::try_from(args.max_request_head_bytes).unwrap_or(usize::MAX),
        max_response_bytes_per_connection: usize::try_from(args.max_response_bytes_per_connection)
            .unwrap_or(usize::MAX),
        max_response_bytes: usize::try_from(args.max_response_bytes).unwrap_or(usize::MAX),
        stalled_response_timeout: seconds(args.stalled_response_timeout_seconds),
        trusted_proxies: keys_http::rate_limit::TrustedProxies::new(args.trusted_proxies),
        last_used_interval: (args.last_used_interval_seconds > 0)
            .then(|| std::time::Duration::from_secs(args.last_used_interval_seconds)),
        usage_interval: (args.usage_interval_seconds > 0)
            .then(|| std::time::Duration::from_secs(args.usage_interval_seconds)),
        tls,
        webhook_ca,
        shutdown_grace: seconds(args.shutdown_grace_seconds),
        ..AppConfig::default()
    };
    let app = App::new(store, config);
    bootstrap(app.service()).await?;
    // One shutdown signal, for both listeners: `/ready` turns 503 at once,
    // the listeners stop `--shutdown-delay-seconds` later (or at a second
    // signal), then in-flight requests have `--shutdown-grace-seconds`.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let draining = app.clone();
    let delay = seconds(args.shutdown_delay_seconds);
    tokio::spawn(async move {
        signals.next().await;
        draining.drain();
        if !delay.is_zero() {
            tracing::info!(seconds = delay.as_secs(), "draining: /ready answers 503; stopping after the delay");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = signals.next() => tracing::info!("second signal: stopping now"),
            }
        }
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone: stop just the same.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let operations = match metrics_listener {
        Some(metrics_listener) => {
            let metrics_address = metrics_listener.local_addr().context("cannot read the metrics address")?;
            crate::output::metrics(&format!("{scheme}://{metrics_address}/metrics"));
            tracing::info!(%metrics_address, "metrics listening");
            Some(tokio::spawn(serve(metrics_listener, app.operations(), until_stopped(stopped.clone()))))
        }
        None => None,
    };
    crate::output::listening(&format!("{scheme}://{address}"));
    tracing::info!(%address, "listening");
    serve(listener, app, until_stopped(stopped)).await.context("server failed")?;
    if let Some(operations) = operations {
        operations.await.context("metrics server panicked")?.context("metrics server failed")?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// `--tls-cert-file` and `--tls-key-file`, which go together: the HTTPS of
/// both listeners, or none.
fn load_tls(
    certificate: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<Option<keys_http::tls::Tls>> {
    match (certificate, key) {
        (Some(certificate), Some(key)) => {
            keys_http::tls::Tls::load(certificate, key).map(Some).map_err(|error| anyhow!("TLS: {error}"))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(anyhow!("--tls-cert-file needs --tls-key-file (KEYSD_TLS_KEY_FILE) beside it")),
        (None, Some(_)) => Err(anyhow!("--tls-key-file needs --tls-cert-file (KEYSD_TLS_CERT_FILE) beside it")),
    }
}

fn seconds(seconds: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(seconds))
}

async fn bootstrap(service: &Service) -> anyhow::Result<()> {
    if let Some(bootstrapped) = service.bootstrap_if_empty().await.map_err(service_error)? {
        crate::output::bootstrapped(&bootstrapped.organisation.id.to_string());
        crate::output::service_token(bootstrapped.token.expose());
    }
    Ok(())
}

/// SIGTERM and ctrl-c (SIGINT), listened for from the moment this is made:
/// `serve` makes it before it announces its address, so that a signal sent
/// as soon as the address is printed drains like any other instead of
/// killing the process (the default action, until a handler exists).
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for ctrl-c")?,
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Completes at the next SIGTERM or ctrl-c.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("ctrl-c received"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM received"),
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("ctrl-c received");
        }
    }
}

// ------------------------------------------------ the --max-… caps

/// The `--max-…` flags: the per-organisation caps of keys-core's
/// [`Quotas`], which the store holds every create to (a 400 in the
/// dialect's error shape when one is reached; see docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct QuotaArgs {
    /// Most workspaces an organisation may have.
    #[arg(
        long,
        env = "KEYSD_MAX_WORKSPACES_PER_ORGANISATION",
        value_name = "N",
        default_value_t = Quotas::DEFAULT_WORKSPACES_PER_ORGANISATION,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_workspaces_per_organisation: u32,
    /// Most live keys of each kind (API keys, public keys, signing keys)
    /// a workspace may have, and most identities (metering); rolled and
    /// disabled keys count until deleted.
    #[arg(
        long,
        env = "KEYSD_MAX_KEYS_PER_WORKSPACE",
        value_name = "N",
        default_value_t = Quotas::DEFAULT_KEYS_PER_WORKSPACE,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_keys_per_workspace: u32,
    /// Most live organisation signing keys (dialect 2, RSA) an organisation
    /// may have.
    #[arg(
        long,
        env = "KEYSD_MAX_ORGANISATION_KEYS",
        value_name = "N",
        default_value_t = Quotas::DEFAULT_ORGANISATION_KEYS_PER_ORGANISATION,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_organisation_keys: u32,
}

impl QuotaArgs {
    /// The caps these flags ask for (each is at least 1: the parser refuses 0).
    pub fn quotas(&self) -> Result<Quotas, keys_core::CoreError> {
        Quotas::new(self.max_workspaces_per_organisation, self.max_keys_per_workspace, self.max_organisation_keys)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use keys_core::QuotaKind;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn cli_parses_serve_and_commands() {
        let cli = Cli::try_parse_from(["keysd", "serve", "--listen", "127.0.0.1:0", "--jwt-issuer-base", "https://a"])
            .expect("parses");
        match cli.command {
            Command::Serve(args) => {
                assert_eq!(args.listen, "127.0.0.1:0");
                assert_eq!(args.jwt_issuer_bases, vec!["https://a".to_owned()]);
                assert_eq!(args.cache_ttl_ms, 500);
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "keysd",
            "token",
            "create",
            "--org",
            "acme",
            "--name",
            "ci",
            "--database-url",
            "sqlite://x.db",
        ])
        .expect("parses");
        assert_eq!(cli.database_url, "sqlite://x.db");
        assert!(Cli::try_parse_from(["keysd", "serve", "--cache-ttl-ms", "0"]).is_ok());
        assert!(Cli::try_parse_from(["keysd", "serve", "--cache-ttl-ms", "1001"]).is_err());
    }

    #[test]
    fn jwt_policy_flags() {
        let Command::Serve(args) = Cli::try_parse_from(["keysd", "serve"]).expect("parses").command else {
            panic!("serve")
        };
        assert!(!args.jwt_require_exp);
        assert_eq!(args.jwt_max_lifetime_seconds, None);
        assert!(args.jwt_audiences.is_empty());
        let parsed = Cli::try_parse_from([
            "keysd",
            "serve",
            "--jwt-require-exp",
            "--jwt-max-lifetime-seconds",
            "3600",
            "--jwt-audience",
            "a",
            "--jwt-audience",
            "b",
        ]);
        let Command::Serve(args) = parsed.expect("parses").command else { panic!("serve") };
        assert!(args.jwt_require_exp);
        assert_eq!(args.jwt_max_lifetime_seconds, Some(3600));
        assert_eq!(args.jwt_audiences, ["a", "b"]);
        assert!(Cli::try_parse_from(["keysd", "serve", "--jwt-max-lifetime-seconds", "0"]).is_err());
        assert!(Cli::try_parse_from(["keysd", "serve", "--rate-limit", "0"]).is_err());
        let Command::Serve(args) =
            Cli::try_parse_from(["keysd", "serve", "--rate-limit", "120"]).expect("parses").command
        else {
            panic!("serve")
        };
        assert_eq!(args.rate_limit, Some(120));
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let Command::Serve(args) = Cli::try_parse_from(["keysd", "serve"]).expect("parses").command else {
            panic!("serve")
        };
        assert_eq!(args.max_connections, None);
        assert_eq!(args.header_read_timeout_seconds, 10);
        assert_eq!(args.max_connection_age_seconds, 600);
        assert_eq!(args.http2_keep_alive_seconds, 20);
        for flag in [
            "--max-connections",
            "--header-read-timeout-seconds",
            "--max-connection-age-seconds",
            "--http2-keep-alive-seconds",
        ] {
            assert!(Cli::try_parse_from(["keysd", "serve", flag, "0"]).is_err(), "{flag} 0");
            assert!(Cli::try_parse_from(["keysd", "serve", flag, "1"]).is_ok(), "{flag} 1");
        }
        assert!(Cli::try_parse_from(["keysd", "serve", "--header-read-timeout-seconds", "301"]).is_err());
    }

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        quotas: QuotaArgs,
    }

    fn parsed(arguments: &[&str]) -> Result<Quotas, String> {
        let flags = Flags::try_parse_from(std::iter::once("keysd").chain(arguments.iter().copied()))
            .map_err(|error| error.to_string())?;
        flags.quotas.quotas().map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_keys_core_defaults() {
        assert_eq!(parsed(&[]), Ok(Quotas::default()));
    }

    #[test]
    fn each_flag_sets_its_cap_and_zero_is_refused() {
        let quotas = parsed(&[
            "--max-workspaces-per-organisation",
            "3",
            "--max-keys-per-workspace",
            "4",
            "--max-organisation-keys",
            "5",
        ])
        .expect("parses");
        assert_eq!(quotas.limit(QuotaKind::Workspaces), 3);
        assert_eq!(quotas.limit(QuotaKind::ApiKeys), 4);
        assert_eq!(quotas.limit(QuotaKind::PublicKeys), 4);
        assert_eq!(quotas.limit(QuotaKind::OrganisationKeys), 5);
        for flag in ["--max-workspaces-per-organisation", "--max-keys-per-workspace", "--max-organisation-keys"] {
            assert!(parsed(&[flag, "0"]).is_err(), "{flag} 0");
        }
    }
}
