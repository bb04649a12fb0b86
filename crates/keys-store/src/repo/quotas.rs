//! The counts the caps read: what is live where a command holds its lock.

use super::*;

/// How many of what a cap counts live where the lock of a command is held:
/// every workspace of an organisation, or the live (not deleted) keys of
/// one kind of a workspace or an organisation.
pub async fn count_live<C: Sql + ?Sized>(sql: &mut C, kind: QuotaKind, holder: &str) -> StoreResult<u64> {
    let sql_text = match kind {
        QuotaKind::Workspaces => "SELECT COUNT(*) AS total FROM workspaces WHERE organisation_id = $1",
        QuotaKind::ApiKeys => C::LIVE_API_KEYS,
        QuotaKind::PublicKeys => {
            "SELECT COUNT(*) AS total FROM public_keys WHERE workspace_uid = $1 AND deleted_at IS NULL"
        }
        QuotaKind::SigningKeys => {
            "SELECT COUNT(*) AS total FROM workspace_signing_keys WHERE workspace_uid = $1 AND deleted_at IS NULL"
        }
        QuotaKind::OrganisationKeys => {
            "SELECT COUNT(*) AS total FROM organisation_keys WHERE organisation_id = $1 AND deleted_at IS NULL"
        }
        QuotaKind::Identities => {
            "SELECT COUNT(*) AS total FROM meters WHERE workspace_uid = $1 AND subject LIKE 'identity:%'"
        }
    };
    Ok(one(sql, statement(sql_text, &[&[text(holder)]]), rows::count).await?.unwrap_or(0))
}
