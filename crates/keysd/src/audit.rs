//! `keysd audit export | prune`: the audit trail from the command line.

use clap::Subcommand;

use crate::database::{find_organisation, open_service, service_error};

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
    service: &keys_service::Service,
    organisation: &keys_core::Organisation,
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
                let mut line = serde_json::to_vec(&keys_http::AuditEventDto::from(event))?;
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

/// `keysd audit export | prune`.
pub async fn run(url: &str, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Export { org, since, until } => {
            let service = open_service(url).await?;
            let organisation = find_organisation(&service, &org).await?;
            export_audit(&service, &organisation, since, until).await
        }
        AuditCommand::Prune { org, before } => {
            let service = open_service(url).await?;
            let organisation = find_organisation(&service, &org).await?;
            let pruned = service.prune_audit_events(&organisation, before).await.map_err(service_error)?;
            println!("{pruned}");
            Ok(())
        }
    }
}
