//! The `keysd` command line: `serve`, and the operator commands that create
//! organisations, workspaces and service tokens directly in the database
//! (they work while a `keysd serve` runs on the same database).
//!
//! Output contract: `org create` prints the new id alone, `token create` the
//! token alone, `workspace create` the new workspace uid alone;
//! `sign user-token` / `sign jwt` print the token alone (no database); `serve`
//! prints the bootstrap token (only when this process bootstrapped) and a
//! `keysd listening on http://ADDR` line to stdout. Logs go to stderr. Errors
//! are one line on stderr and a non-zero exit. `audit export` writes NDJSON
//! (one event a line, as `GET /v1/audit_event/` renders it, oldest first),
//! reading the trail in batches so memory stays flat whatever its size;
//! `audit prune` prints how many events it deleted.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use keys_core::verify::{OrganisationTokenPolicy, TimePolicy};
use keys_core::{
    CoreError, Mode, Name, NewServiceToken, NewWorkspace, Organisation, Pagination, Quotas, Role, TokenWorkspaces,
    WorkspaceSlug,
};
use keys_service::{Service, ServiceConfig, ServiceError};
use keys_store::{CacheConfig, Store, StoreError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;

use crate::dto::ServiceTokenDto;
use crate::process;
use crate::quotas::QuotaArgs;
use crate::server::{serve, App, AppConfig};

/// keysd: API keys, publishable keys and signing keys as a service.
#[derive(Debug, Parser)]
#[command(name = "keysd", version, about)]
pub struct Cli {
    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(long, global = true, env = "KEYSD_DATABASE_URL", default_value = "sqlite://keysd.db")]
    pub database_url: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Manage organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Manage service tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Sign tokens locally with a private key keysd returned (no database).
    #[command(subcommand)]
    Sign(SignCommand),
    /// Export or prune the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write the organisation's events to stdout as NDJSON, oldest first.
    Export {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
        /// Only events at or after this RFC 3339 instant.
        #[arg(long, value_parser = rfc3339)]
        since: Option<time::OffsetDateTime>,
        /// Only events before this RFC 3339 instant.
        #[arg(long, value_parser = rfc3339)]
        until: Option<time::OffsetDateTime>,
    },
    /// Delete the organisation's events older than `--before` (one
    /// transaction; records one `audit.pruned` event) and print how many.
    Prune {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
        /// Events before this RFC 3339 instant go.
        #[arg(long, value_parser = rfc3339)]
        before: time::OffsetDateTime,
    },
}

fn rfc3339(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "must be an RFC 3339 timestamp such as 2027-01-31T12:00:00Z".to_owned())
}

/// How many events `audit export` reads at once: memory is this batch's.
const EXPORT_BATCH: u32 = 1_000;

/// `keysd audit export`: batch after batch, each written and flushed before
/// the next is read. A closed stdout (`| head`) ends the export quietly.
async fn export_audit(
    service: &Service,
    organisation: &Organisation,
    since: Option<time::OffsetDateTime>,
    until: Option<time::OffsetDateTime>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut export = service.export_audit_events(&organisation.id, since, until, EXPORT_BATCH);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = async {
        while let Some(batch) = export.next_batch().await.map_err(service_error)? {
            for event in &batch {
                // Serialised apart, so a closed stdout is an I/O error of its own.
                let mut line = serde_json::to_vec(&crate::dto::AuditEventDto::from(event))?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
            out.flush()?;
        }
        anyhow::Ok(())
    }
    .await;
    match written {
        Err(error)
            if error.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[derive(Debug, Subcommand)]
pub enum SignCommand {
    /// An ES256 secure-mode user token, as `/v1/verify/public_key/` checks it (docs/API.md, Verification).
    UserToken {
        /// File holding the signing key's `private_key_pem` or `private_key_base64`.
        #[arg(long, value_name = "FILE")]
        private_key: std::path::PathBuf,
        #[arg(long)]
        entity_id: String,
        #[arg(long)]
        tenant_id: Option<String>,
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
        ttl_seconds: u32,
        /// The signing key's uid as `kid` (optional: keysd tries the active key
        /// and the rolled keys in grace).
        #[arg(long, value_name = "UID")]
        kid: Option<String>,
    },
    /// An RS256 Versori-style JWT for an organisation key.
    Jwt {
        /// File holding the organisation key's `privateKey` PEM (or its base64).
        #[arg(long, value_name = "FILE")]
        private_key: std::path::PathBuf,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "https://versori.com")]
        issuer_base: String,
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
        ttl_seconds: u32,
    },
}

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
        default_value_t = crate::state::DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub http2_max_concurrent_streams: u32,
    /// Largest request head (request line and headers; on HTTP/2 the
    /// decoded header list), in bytes; 431 beyond.
    #[arg(
        long,
        env = "KEYSD_MAX_REQUEST_HEAD_BYTES",
        value_name = "BYTES",
        default_value_t = crate::state::DEFAULT_MAX_REQUEST_HEAD_BYTES as u64,
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
        default_value_t = crate::state::DEFAULT_MAX_RESPONSE_BYTES_PER_CONNECTION as u64,
        value_parser = clap::value_parser!(u64).range(65_536..=1_073_741_824)
    )]
    pub max_response_bytes_per_connection: u64,
    /// The same over every connection: the connection whose response would
    /// go over it is closed.
    #[arg(
        long,
        env = "KEYSD_MAX_RESPONSE_BYTES",
        value_name = "BYTES",
        default_value_t = crate::state::DEFAULT_MAX_RESPONSE_BYTES as u64,
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
    pub trusted_proxies: Vec<crate::rate_limit::Cidr>,
    /// How often the API keys' `last_used_at` is written, at most once per
    /// key per interval (uses are recorded in memory, never on the request
    /// path); 0 records no uses.
    #[arg(long, env = "KEYSD_LAST_USED_INTERVAL_SECONDS", value_name = "SECONDS", default_value_t = 60)]
    #[arg(value_parser = up_to(86_400))]
    pub last_used_interval_seconds: u64,
    #[command(flatten)]
    pub quotas: QuotaArgs,
}

/// The parser of a bounded count option: a whole number from 0 to `max`
/// (what `clap::value_parser!(u64).range(0..=max)` makes).
fn up_to(max: u64) -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(0..=max)
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation (no workspaces) and print its id.
    Create {
        /// The organisation's unique name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace and print its uid.
    Create {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
        /// The workspace slug (`^[a-z0-9][a-z0-9_-]{0,62}$`).
        slug: String,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
        /// `sandbox` (default) or `production`.
        #[arg(long)]
        mode: Option<String>,
        /// Free-text description.
        #[arg(long)]
        description: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a service token and print it alone (shown once).
    Create {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
        /// A label for the token.
        #[arg(long)]
        name: String,
        /// `admin` (everything), `manage` (the keys of its workspaces) or
        /// `verify` (only verification and forward authentication).
        #[arg(long, default_value = "admin")]
        role: String,
        /// A workspace slug the token is limited to (repeatable; none: all).
        #[arg(long = "workspace", value_name = "SLUG")]
        workspaces: Vec<String>,
        /// When the token stops authenticating (RFC 3339).
        #[arg(long, value_name = "RFC3339")]
        expires_at: Option<String>,
    },
    /// List the organisation's service tokens, one JSON object a line
    /// (masked, as the API lists them), revoked ones included.
    List {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
    },
    /// Revoke a service token: every replica refuses it within a second.
    Revoke {
        /// Organisation id or name.
        #[arg(long)]
        org: String,
        /// The token's id (`st_…`).
        id: String,
    },
}

/// Runs the command line; the exit code is non-zero on any error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("keysd: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("keysd: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sign(command) => {
            println!("{}", sign(command)?);
            Ok(())
        }
        Command::Serve(args) => run_serve(&cli.database_url, args).await,
        Command::Org(OrgCommand::Create { name }) => {
            let service = open_service(&cli.database_url).await?;
            let name = Name::parse(&name).map_err(|error| anyhow!("{error}"))?;
            let organisation = service.create_organisation(name).await.map_err(service_error)?;
            println!("{}", organisation.id);
            Ok(())
        }
        Command::Workspace(WorkspaceCommand::Create { org, slug, name, mode, description }) => {
            let service = open_service(&cli.database_url).await?;
            let organisation = find_organisation(&service, &org).await?;
            let slug = WorkspaceSlug::parse(&slug).map_err(|error| anyhow!("{error}"))?;
            let new = NewWorkspace {
                name: Name::parse(name.as_deref().unwrap_or(slug.as_str())).map_err(|error| anyhow!("{error}"))?,
                slug: Some(slug),
                description: keys_core::Description::parse(description.as_deref())
                    .map_err(|error| anyhow!("{error}"))?,
                mode: mode.as_deref().map(Mode::parse).transpose().map_err(|error| anyhow!("{error}"))?,
            };
            let workspace = service.create_operator_workspace(&organisation, new).await.map_err(service_error)?;
            println!("{}", workspace.uid);
            Ok(())
        }
        Command::Token(command) => run_token(&cli.database_url, command).await,
        Command::Audit(AuditCommand::Export { org, since, until }) => {
            let service = open_service(&cli.database_url).await?;
            let organisation = find_organisation(&service, &org).await?;
            export_audit(&service, &organisation, since, until).await
        }
        Command::Audit(AuditCommand::Prune { org, before }) => {
            let service = open_service(&cli.database_url).await?;
            let organisation = find_organisation(&service, &org).await?;
            let pruned = service.prune_audit_events(&organisation, before).await.map_err(service_error)?;
            println!("{pruned}");
            Ok(())
        }
    }
}

/// `keysd token create | list | revoke`.
async fn run_token(database_url: &str, command: TokenCommand) -> anyhow::Result<()> {
    let refused = |error: CoreError| anyhow!("{error}");
    match command {
        TokenCommand::Create { org, name, role, workspaces, expires_at } => {
            let service = open_service(database_url).await?;
            let organisation = find_organisation(&service, &org).await?;
            let workspaces = if workspaces.is_empty() {
                TokenWorkspaces::all()
            } else {
                let slugs = workspaces.iter().map(|slug| WorkspaceSlug::parse(slug)).collect::<Result<Vec<_>, _>>();
                TokenWorkspaces::only(slugs.map_err(refused)?).map_err(refused)?
            };
            let expires_at = expires_at
                .map(|text| {
                    OffsetDateTime::parse(&text, &Rfc3339)
                        .map_err(|_| anyhow!("--expires-at must be an RFC 3339 timestamp such as 2027-01-31T12:00:00Z"))
                })
                .transpose()?;
            let new = NewServiceToken {
                name: Name::parse(&name).map_err(refused)?,
                role: Role::parse(&role).map_err(refused)?,
                workspaces,
                expires_at,
            };
            let issued = service.create_service_token(&organisation, new).await.map_err(service_error)?;
            println!("{}", issued.token.expose());
            Ok(())
        }
        TokenCommand::List { org } => {
            let service = open_service(database_url).await?;
            let organisation = find_organisation(&service, &org).await?;
            let mut offset = 0;
            loop {
                let page = Pagination::new(100, offset).map_err(refused)?;
                let listing = keys_service::workspaces::Listing::new(page, true);
                let tokens = service.service_tokens_of(&organisation.id, listing).await.map_err(service_error)?;
                for token in &tokens.items {
                    println!("{}", serde_json::to_string(&ServiceTokenDto::from(token))?);
                }
                offset += tokens.items.len() as u64;
                if tokens.items.is_empty() || offset >= tokens.total {
                    return Ok(());
                }
            }
        }
        TokenCommand::Revoke { org, id } => {
            let service = open_service(database_url).await?;
            let organisation = find_organisation(&service, &org).await?;
            let revoked =
                service.revoke_service_token_of(&organisation.id, &id).await.map_err(|error| match error {
                    ServiceError::Store(StoreError::NotFound { .. }) => {
                        anyhow!("service token '{id}' not found (or already revoked)")
                    }
                    other => service_error(other),
                })?;
            println!("{}", revoked.id);
            Ok(())
        }
    }
}

async fn run_serve(database_url: &str, args: ServeArgs) -> anyhow::Result<()> {
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
    let store = open_cached_store(database_url, cache, quotas).await?;
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
    let config = AppConfig {
        issuer_bases: args.jwt_issuer_bases,
        organisation_token_policy,
        separate_metrics: metrics_listener.is_some(),
        rate_limit_per_minute: args.rate_limit.and_then(std::num::NonZeroU32::new),
        // The range check of the flag keeps this far inside usize.
        rsa_pool_capacity: args.rsa_pool_size as usize,
        rsa_pool_threads: args.rsa_pool_threads as usize,
        verified_token_cache_entries: args.verified_token_cache_entries as usize,
        rsa_max_concurrent_generations: args.rsa_max_concurrent_generations as usize,
        time_policy: TimePolicy::new(args.jwt_leeway_seconds)
            .map_err(|error| anyhow!("{error}"))?
            .with_user_token_max_lifetime(args.user_token_max_lifetime_seconds),
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
        trusted_proxies: crate::rate_limit::TrustedProxies::new(args.trusted_proxies),
        last_used_interval: (args.last_used_interval_seconds > 0)
            .then(|| std::time::Duration::from_secs(args.last_used_interval_seconds)),
        ..AppConfig::default()
    };
    let app = App::new(store, config);
    bootstrap(app.service()).await?;
    // One shutdown signal, for both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone: stop just the same.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };
    let operations = match metrics_listener {
        Some(metrics_listener) => {
            let metrics_address = metrics_listener.local_addr().context("cannot read the metrics address")?;
            println!("keysd metrics on http://{metrics_address}/metrics");
            tracing::info!(%metrics_address, "metrics listening");
            Some(tokio::spawn(serve(metrics_listener, app.operations(), until_stopped(stopped.clone()))))
        }
        None => None,
    };
    println!("keysd listening on http://{address}");
    tracing::info!(%address, "listening");
    serve(listener, app, until_stopped(stopped)).await.context("server failed")?;
    if let Some(operations) = operations {
        operations.await.context("metrics server panicked")?.context("metrics server failed")?;
    }
    tracing::info!("stopped");
    Ok(())
}

fn seconds(seconds: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(seconds))
}

/// `keysd sign …`: reads the key file, mints the token at the system clock.
fn sign(command: SignCommand) -> anyhow::Result<String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(zeroize::Zeroizing::new)
            .with_context(|| format!("cannot read the private key file {}", path.display()))
    };
    let now = time::OffsetDateTime::now_utc();
    match command {
        SignCommand::UserToken { private_key, entity_id, tenant_id, ttl_seconds, kid } => {
            let request = keys_crypto::mint::UserTokenRequest {
                entity_id: &entity_id,
                tenant_id: tenant_id.as_deref(),
                ttl_seconds,
                kid: kid.as_deref(),
            };
            keys_crypto::mint::user_token(&read(&private_key)?, &request, now).map_err(|error| anyhow!("{error}"))
        }
        SignCommand::Jwt { private_key, key_id, sub, issuer_base, ttl_seconds } => {
            let request = keys_crypto::mint::OrganisationTokenRequest {
                key_id: &key_id,
                sub: &sub,
                issuer_base: &issuer_base,
                ttl_seconds,
            };
            keys_crypto::mint::organisation_token(&read(&private_key)?, &request, now)
                .map_err(|error| anyhow!("{error}"))
        }
    }
}

async fn bootstrap(service: &Service) -> anyhow::Result<()> {
    if let Some(bootstrapped) = service.bootstrap_if_empty().await.map_err(service_error)? {
        println!(
            "keysd bootstrapped organisation 'default' ({}) with workspaces 'staging' and 'production'",
            bootstrapped.organisation.id
        );
        println!("keysd service token (shown once, store it now): {}", bootstrapped.token.expose());
    }
    Ok(())
}

/// The use cases over the uncached store: operator commands write and exit.
async fn open_service(url: &str) -> anyhow::Result<Service> {
    let store = keys_store::open(url).await.map_err(|error| open_error(url, error))?;
    Ok(Service::new(store, ServiceConfig::default()))
}

async fn open_cached_store(url: &str, cache: CacheConfig, quotas: Quotas) -> anyhow::Result<Arc<dyn Store>> {
    keys_store::open_cached(url, cache, quotas).await.map_err(|error| open_error(url, error))
}

fn open_error(url: &str, error: StoreError) -> anyhow::Error {
    match error {
        StoreError::UnsupportedUrl => {
            anyhow!("unsupported database url '{}' (expected sqlite://PATH or postgres://…)", redact_url(url))
        }
        other => anyhow!("cannot open database {}: {other}", redact_url(url)),
    }
}

fn service_error(error: ServiceError) -> anyhow::Error {
    match error {
        ServiceError::Store(StoreError::Refused(refusal)) => anyhow!("{refusal}"),
        other => anyhow!("{other}"),
    }
}

/// `--org` takes an organisation id or its name.
async fn find_organisation(service: &Service, reference: &str) -> anyhow::Result<Organisation> {
    match service.find_organisation(reference).await.map_err(service_error)? {
        Some(organisation) => Ok(organisation),
        None => bail!("organisation '{reference}' not found"),
    }
}

/// The URL with any password replaced, for error messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{credentials}@{host}"),
        },
        None => authority.to_owned(),
    };
    if rest.contains('/') {
        format!("{scheme}://{authority}/{path}")
    } else {
        format!("{scheme}://{authority}")
    }
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://user:secret@db:5432/keys"), "postgres://user:***@db:5432/keys");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
        assert_eq!(redact_url("sqlite://keysd.db"), "sqlite://keysd.db");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }

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
}
