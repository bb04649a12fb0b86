//! `last_used_at` of API keys and service tokens: moved forwards only, by
//! the usage flusher, outside the command pipeline.

use super::*;

/// What has a `last_used_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    /// A live (not deleted) API key.
    ApiKey,
    ServiceToken,
}

/// Moves the `last_used_at` of the row `id` forwards to `at`, never
/// backwards (an older use, from a replica that flushed late, changes
/// nothing). Returns whether it moved.
pub async fn record_use<C: Sql + ?Sized>(sql: &mut C, used: Used, id: &str, at: OffsetDateTime) -> StoreResult<bool> {
    let statement_text = match used {
        Used::ApiKey => {
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND deleted_at IS NULL \
             AND (last_used_at IS NULL OR last_used_at < $2)"
        }
        Used::ServiceToken => {
            "UPDATE service_tokens SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < $2)"
        }
    };
    let touched = sql.execute(statement(statement_text, &[&[text(id), time(at)]])).await;
    Ok(touched.map_err(database)? > 0)
}
