//! `keysd`: the command line of keysd. `serve` runs the HTTP server of
//! keys-http; the operator commands create organisations, workspaces and
//! service tokens directly in the database (they work while a `keysd
//! serve` runs on the same database); `sign` mints tokens locally.
//!
//! Output contract (docs/CLI.md): `org create` prints the new id alone,
//! `token create` the token alone, `workspace create` the new workspace uid
//! alone; `sign user-token` / `sign jwt` print the token alone (no
//! database); `serve` prints the bootstrap token (only when this process
//! bootstrapped) and a `keysd listening on http://ADDR` line to stdout.
//! Logs go to stderr. Errors are one line on stderr and a non-zero exit.
//! `import` reads NDJSON of API keys made elsewhere and prints `imported N,
//! skipped M` alone.
//! `audit export` writes NDJSON (one event a line, as `GET
//! /v1/audit_event/` renders it, oldest first), reading the trail in
//! batches so memory stays flat whatever its size; `audit prune` prints how
//! many events it deleted; `backup` prints the copy's path and size.
//!
//! One module per command group: [`serve`] (its flags, the `--max-…` caps
//! among them, with [`process`], what `serve` asks of the OS), [`org`],
//! [`workspace`], [`token`], [`import`], [`audit`], [`sign`]; [`database`] opens the
//! store and turns service errors into one-line messages; [`config`] reads
//! `--config FILE` into the flags' defaults before clap parses; [`output`]
//! writes the logs, `serve`'s announced lines and the final error in the
//! `--log-format` chosen.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod backup;
mod config;
mod database;
mod import;
mod org;
mod output;
mod process;
mod serve;
mod sign;
mod token;
mod workspace;

/// keysd: API keys, publishable keys and signing keys as a service.
#[derive(Debug, Parser)]
#[command(name = "keysd", version = version_text(), about)]
pub struct Cli {
    /// Database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(long, global = true, env = "KEYSD_DATABASE_URL", default_value = "sqlite://keysd.db")]
    pub database_url: String,
    /// A TOML file of settings: the long name of any global flag or flag of
    /// `serve`, without its dashes, as a key (`cache-ttl-ms = 250`). A flag
    /// beats its environment variable, which beats the file.
    #[arg(long, global = true, env = "KEYSD_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// `text`, or `json`: one JSON object a line on stderr, and on stdout
    /// for the lines `serve` announces (its service token included).
    #[arg(long, global = true, env = "KEYSD_LOG_FORMAT", value_name = "FORMAT", value_enum)]
    #[arg(default_value_t = output::LogFormat::Text)]
    pub log_format: output::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(Box<serve::ServeArgs>),
    /// Manage organisations.
    #[command(subcommand)]
    Org(org::OrgCommand),
    /// Manage workspaces.
    #[command(subcommand)]
    Workspace(workspace::WorkspaceCommand),
    /// Manage service tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Sign tokens locally with a private key keysd returned (no database).
    #[command(subcommand)]
    Sign(sign::SignCommand),
    /// Import API keys made by another system from NDJSON (one entry a
    /// line, as the API's import takes them), in batches of 1,000; keys
    /// the workspace holds already are skipped, so a rerun resumes.
    Import(import::ImportArgs),
    /// Export or prune the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a consistent copy of the SQLite database, while `serve` runs.
    Backup(backup::BackupArgs),
    /// Apply the pending migrations of the database and exit.
    Migrate,
}

/// What `keysd --version` prints after the name: the release, and the
/// schema it writes and serves (docs/OPERATIONS.md, "Upgrading").
fn version_text() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| format!("{} ({})", env!("CARGO_PKG_VERSION"), keys_store::schema_support()))
}

/// Runs the command line; the exit code is non-zero on any error.
fn main() -> ExitCode {
    let arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match config::parse(arguments.clone()) {
        Ok(cli) => cli,
        // `--help` and `--version` (on stdout), and usage errors in text
        // mode, as clap prints them.
        Err(config::Failure::Usage(error))
            if !error.use_stderr() || config::requested_log_format(&arguments) == output::LogFormat::Text =>
        {
            error.exit()
        }
        Err(config::Failure::Usage(error)) => {
            output::init(output::LogFormat::Json);
            output::error(&anyhow::anyhow!("{}", output::one_line(&error.to_string())));
            return ExitCode::from(2);
        }
        Err(config::Failure::Settings { error, log_format }) => {
            output::init(log_format);
            output::error(&error);
            return ExitCode::FAILURE;
        }
    };
    output::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            output::error(&anyhow::anyhow!("cannot start the runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::error(&error);
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = &cli.database_url;
    match cli.command {
        Command::Sign(command) => {
            println!("{}", sign::sign(command)?);
            Ok(())
        }
        Command::Serve(args) => serve::run(url, *args).await,
        Command::Org(command) => org::run(url, command).await,
        Command::Workspace(command) => workspace::run(url, command).await,
        Command::Token(command) => token::run(url, command).await,
        Command::Import(args) => import::run(url, args).await,
        Command::Audit(command) => audit::run(url, command).await,
        Command::Backup(args) => backup::run(url, args).await,
        Command::Migrate => {
            let status = database::migrate(url).await?;
            println!("schema {} ({} migration(s) applied)", status.database.max(status.binary), status.pending);
            Ok(())
        }
    }
}
