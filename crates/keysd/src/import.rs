//! `keysd import --org ORG --workspace SLUG FILE`: API keys made by another
//! system, from NDJSON (one entry a line, in the format of an entry of
//! `POST /v1/{ws}/ws_api_key/import/`), stored in batches of 1,000 through
//! the same use case, on the database. Resumable and idempotent: a key
//! this workspace already holds is skipped and counted, so a rerun over the
//! same file imports only what is missing. A bad line stops the import
//! with its line number once every line before it is stored.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, Context};
use clap::Args;
use keys_core::{Name, Role, TokenWorkspaces};
use keys_service::api_keys::{ImportEntry, MAX_IMPORT_BATCH};
use keys_service::workspaces::InWorkspace;
use keys_service::{Caller, ServiceError};
use keys_store::{Conflict, StoreError, StoredDigests};
use zeroize::Zeroize;

use crate::database::{find_organisation, open_service_with, service_error};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Organisation id or name.
    #[arg(long)]
    pub org: String,
    /// The slug of the workspace the keys go into.
    #[arg(long, value_name = "SLUG")]
    pub workspace: String,
    /// The NDJSON file to read; `-` reads standard input.
    pub file: String,
    /// The caps the import is held to, as `serve`'s (a workspace's key cap
    /// counts every imported key).
    #[command(flatten)]
    pub quotas: crate::serve::QuotaArgs,
}

/// What has been stored so far, and how the current batch maps back to
/// the file's lines.
struct Progress {
    imported: usize,
    skipped: usize,
    /// Whether to draw a progress line on stderr (a terminal only).
    drawn: bool,
}

impl Progress {
    fn draw(&self) {
        if self.drawn {
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "\rimported {}, skipped {}", self.imported, self.skipped);
            let _ = stderr.flush();
        }
    }

    fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

/// `keysd import`.
pub async fn run(database_url: &str, args: ImportArgs) -> anyhow::Result<()> {
    let quotas = args.quotas.quotas().map_err(|error| anyhow!("{error}"))?;
    let service = open_service_with(database_url, quotas).await?;
    let organisation = find_organisation(&service, &args.org).await?;
    // The operator acts as a `manage` caller of the organisation, so the
    // import runs the very use case the API runs, with its checks.
    let actor = Name::parse("keysd import").map_err(|error| anyhow!("{error}"))?;
    let caller = Caller::embedded(organisation.id.clone(), Role::Manage, TokenWorkspaces::all(), actor)
        .map_err(|error| anyhow!("{error}"))?;
    let workspace = service.in_workspace(&caller, &args.workspace).await.map_err(|error| match error {
        ServiceError::WorkspaceNotFound => anyhow!("workspace '{}' not found", args.workspace),
        other => service_error(other),
    })?;
    let mut reader: Box<dyn BufRead> = if args.file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.file).with_context(|| format!("cannot open {}", args.file))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut progress = Progress { imported: 0, skipped: 0, drawn: std::io::stderr().is_terminal() };
    let mut batch: Vec<ImportEntry> = Vec::with_capacity(MAX_IMPORT_BATCH);
    let mut lines: Vec<usize> = Vec::with_capacity(MAX_IMPORT_BATCH);
    // The line holds a key's text: zeroed after each line, and on the way out.
    let mut line = zeroize::Zeroizing::new(String::new());
    let mut number = 0;
    loop {
        line.zeroize();
        number += 1;
        let read = reader.read_line(&mut line);
        let read = read.map_err(|error| anyhow!("line {number}: cannot be read ({})", error.kind()));
        let parsed = match read {
            Ok(0) => break,
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => {
                keys_http::import_entry(line.trim_end().as_bytes()).map_err(|problem| anyhow!("line {number}{problem}"))
            }
            Err(error) => Err(error),
        };
        match parsed {
            Ok(entry) => {
                batch.push(entry);
                lines.push(number);
                if batch.len() == MAX_IMPORT_BATCH {
                    store(&workspace, &mut batch, &mut lines, &mut progress).await?;
                }
            }
            Err(error) => {
                // Every line before the bad one is stored first, so that a
                // rerun after the fix skips them.
                store(&workspace, &mut batch, &mut lines, &mut progress).await?;
                progress.finish();
                return Err(error.context(format!(
                    "stopped; the lines before it are stored (imported {}, skipped {}): fix the line and run the \
                     same command again",
                    progress.imported, progress.skipped
                )));
            }
        }
    }
    store(&workspace, &mut batch, &mut lines, &mut progress).await?;
    progress.finish();
    println!("imported {}, skipped {}", progress.imported, progress.skipped);
    Ok(())
}

/// Stores the pending batch (if any) in one transaction and counts it.
async fn store(
    workspace: &InWorkspace<'_>,
    batch: &mut Vec<ImportEntry>,
    lines: &mut Vec<usize>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let entries = std::mem::replace(batch, Vec::with_capacity(MAX_IMPORT_BATCH));
    let result = workspace.import_api_keys(entries, StoredDigests::SkipInWorkspace).await;
    let line_of = |index: usize| lines.get(index).copied().unwrap_or_default();
    let stored = result.map_err(|error| {
        progress.finish();
        let first_line = line_of(0);
        let refused = match error {
            ServiceError::Store(StoreError::Conflict(Conflict::DigestStored { index })) => {
                anyhow!("line {}: this key is already stored in another workspace", line_of(index))
            }
            ServiceError::Invalid(message) => anyhow!("{}", on_line(&message, line_of)),
            other => service_error(other),
        };
        // Whatever stopped it, say what is stored: a rerun starts over and
        // skips it.
        refused.context(format!(
            "stopped at the batch from line {first_line}; the lines before it are stored (imported {}, skipped {})",
            progress.imported, progress.skipped
        ))
    })?;
    progress.imported += stored.imported.len();
    progress.skipped += stored.skipped.len();
    lines.clear();
    progress.draw();
    Ok(())
}

/// The use case's `keys[3]: …` as `line N: …` of the file.
fn on_line(message: &str, line_of: impl Fn(usize) -> usize) -> String {
    let indexed = message.strip_prefix("keys[").and_then(|rest| rest.split_once(']'));
    match indexed.and_then(|(index, rest)| Some((index.parse::<usize>().ok()?, rest))) {
        Some((index, rest)) => format!("line {}{rest}", line_of(index)),
        None => message.to_owned(),
    }
}
