//! `keysd token create | list | revoke`: service tokens from the command
//! line, on the database.

use anyhow::anyhow;
use clap::Subcommand;
use keys_core::{CoreError, Name, NewServiceToken, Pagination, Role, TokenWorkspaces, WorkspaceSlug};
use keys_http::ServiceTokenDto;
use keys_service::ServiceError;
use keys_store::StoreError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::database::{find_organisation, open_service, service_error};

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

/// `keysd token create | list | revoke`.
pub async fn run(database_url: &str, command: TokenCommand) -> anyhow::Result<()> {
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
