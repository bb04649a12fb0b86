//! The caps of keys-core's [`Quotas`], held where they can be held under
//! concurrency: [`admit`] runs inside a command's transaction, under its
//! lock and after it wrote (so a command refused for another reason, a key
//! not found or not active, says that first), and the count it reads cannot
//! change before the transaction commits (PostgreSQL: the row lock of the organisation
//! or workspace, which every create of the same kind takes first; SQLite:
//! `BEGIN IMMEDIATE`). Two processes on one database therefore never go
//! past a cap together.
//!
//! What a command adds is not decided here: each command says what it is
//! (`Command::mutation`) and keys-core's `Mutation::adds` decides what that
//! adds to which count.

use keys_core::{QuotaKind, Quotas};

use crate::commands::{Locked, Queued};
use crate::error::StoreResult;
use crate::repo::{self, Sql};

/// What a cap will count after `command`: its kind and the id of the
/// organisation or workspace the pipeline locked for it. Taken before the
/// command runs (it consumes both).
pub(crate) fn counted(command: &Queued, locked: &Locked) -> Option<(QuotaKind, String)> {
    let kind = command.adds()?;
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
