//! The caps of keys-core's [`Quotas`], held where they can be held under
//! concurrency: [`admit`] runs inside a command's transaction, under its
//! lock and after it wrote (so a command refused for another reason, a key
//! not found or not active, says that first), and the count it reads cannot
//! change before the transaction commits (PostgreSQL: the row lock of the organisation
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

/// What a cap will count after `command`: its kind and the id of the
/// organisation or workspace the pipeline locked for it. Taken before the
/// command runs (it consumes both).
pub(crate) fn counted(command: &Command, locked: &Locked) -> Option<(QuotaKind, String)> {
    let kind = adds(command)?;
    let holder = match locked {
        Locked::Organisation(organisation) => organisation.id.as_str(),
        Locked::Workspace(workspace) => workspace.uid.as_str(),
        // Every command that adds what a cap counts locks its holder.
        Locked::Nothing => return None,
    };
    Some((kind, holder.to_owned()))
}

/// Refuses, with `CoreError::QuotaReached`, a command that has just written
/// one more of `kind` into `holder` past its cap; the caller holds the
/// holder's lock and rolls the transaction back on the refusal.
pub(crate) async fn admit<C: Sql + ?Sized>(
    sql: &mut C,
    quotas: &Quotas,
    (kind, holder): &(QuotaKind, String),
) -> StoreResult<()> {
    let live = repo::count_live(sql, *kind, holder).await?;
    Ok(quotas.admit(*kind, live)?)
}
