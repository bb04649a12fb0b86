//! `keysd workspace create`.

use anyhow::anyhow;
use clap::Subcommand;
use keys_core::{Mode, Name, NewWorkspace, WorkspaceSlug};

use crate::database::{find_organisation, open_service, service_error};

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

/// `keysd workspace create`.
pub async fn run(url: &str, command: WorkspaceCommand) -> anyhow::Result<()> {
    match command {
        WorkspaceCommand::Create { org, slug, name, mode, description } => {
            let service = open_service(url).await?;
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
    }
}
