//! The caps of keys-core's [`Quotas`], held where they can be held under
//! concurrency: [`admit`] runs inside a command's transaction, after its
//! lock is taken and before it writes, so the count it reads cannot change
//! before the insert commits (PostgreSQL: the row lock of the organisation
//! or workspace, which every create of the same kind takes first; SQLite:
//! `BEGIN IMMEDIATE`). Two processes on one database therefore never go
//! past a cap together.
//!
//! Which command adds what is said here, once, so the commands of
//! `commands.rs` stay as they are: a create adds one of its kind, and so
//! does a roll (the rolled key keeps its place until it is deleted).

use keys_core::{QuotaKind, Quotas};

use crate::commands::{ApiKeyChange, Command, Locked};
use crate::error::StoreResult;
use crate::repo::{self, Sql};

/// What a command adds that a cap counts, if anything.
fn adds(command: &Command) -> Option<QuotaKind> {
    match command {
        Command::CreateWorkspace(_) => Some(QuotaKind::Workspaces),
        Command::CreateApiKey(_) | Command::ChangeApiKey { change: ApiKeyChange::Roll { .. }, .. } => {
            Some(QuotaKind::ApiKeys)
        }
        Command::CreatePublicKey { .. } => Some(QuotaKind::PublicKeys),
        Command::CreateSigningKey { .. } | Command::RollSigningKey { .. } => Some(QuotaKind::SigningKeys),
        Command::CreateOrganisationKey(_) => Some(QuotaKind::OrganisationKeys),
        // The bootstrap writes a fixed, small state into an empty database.
        _ => None,
    }
}

/// Refuses the command with `CoreError::QuotaReached` when what it adds is
/// at its cap in what the pipeline locked; the caller holds that lock.
pub(crate) async fn admit<C: Sql + ?Sized>(
    sql: &mut C,
    quotas: &Quotas,
    command: &Command,
    locked: &Locked,
) -> StoreResult<()> {
    let Some(kind) = adds(command) else { return Ok(()) };
    let holder = match locked {
        Locked::Organisation(organisation) => organisation.id.as_str(),
        Locked::Workspace(workspace) => workspace.uid.as_str(),
        // Every command that adds what a cap counts locks its holder.
        Locked::Nothing => return Ok(()),
    };
    let live = repo::count_live(sql, kind, holder).await?;
    Ok(quotas.admit(kind, live)?)
}
