//! `keysd org create`.

use anyhow::anyhow;
use clap::Subcommand;
use keys_core::Name;

use crate::database::{open_service, service_error};

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation (no workspaces) and print its id.
    Create {
        /// The organisation's unique name.
        name: String,
    },
}

/// `keysd org create`.
pub async fn run(url: &str, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name } => {
            let service = open_service(url).await?;
            let name = Name::parse(&name).map_err(|error| anyhow!("{error}"))?;
            let organisation = service.create_organisation(name).await.map_err(service_error)?;
            println!("{}", organisation.id);
            Ok(())
        }
    }
}
