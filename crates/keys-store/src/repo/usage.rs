//! Usage counts: the additive write of a batch, the pages of a query, and
//! the prune (see [`crate::usage`]).

use std::collections::BTreeMap;

use keys_core::usage::Granularity;

use super::*;
use crate::usage::{UsageBatch, UsageOf, UsageQuery, UsageRow};

/// Rows per `INSERT`: 6 parameters each, well under SQLite's 32,766 and
/// PostgreSQL's 65,535.
const ROWS_PER_STATEMENT: usize = 500;

/// Records `batch.id`; `false` when it is recorded already (the batch was
/// written before, its answer lost).
pub async fn claim_usage_batch<C: Sql + ?Sized>(sql: &mut C, batch: &UsageBatch) -> StoreResult<bool> {
    const SQL: &str = "INSERT INTO usage_batches (id, written_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING";
    let touched = sql.execute(statement(SQL, &[&[text(&batch.id), time(batch.written_at)]])).await.map_err(database)?;
    Ok(touched == 1)
}

/// Adds the batch's counts to their minute, hour and day buckets. Rows are
/// summed first, so no statement names one row twice, and written in key
/// order, so that two replicas writing at once take row locks in the same
/// order.
pub async fn add_usage<C: Sql + ?Sized>(sql: &mut C, batch: &UsageBatch) -> StoreResult<()> {
    let mut sums: BTreeMap<(&str, &str, Granularity, OffsetDateTime, &str), i64> = BTreeMap::new();
    for count in &batch.counts {
        let added = i64::try_from(count.count).unwrap_or(i64::MAX);
        for granularity in Granularity::ALL {
            let key = (
                count.workspace.as_str(),
                count.key_id.as_str(),
                granularity,
                granularity.bucket(count.minute),
                count.outcome,
            );
            let sum = sums.entry(key).or_default();
            *sum = sum.saturating_add(added);
        }
    }
    let rows: Vec<_> = sums.into_iter().collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut values = Vec::with_capacity(chunk.len() * 6);
        let mut tuples = Vec::with_capacity(chunk.len());
        for ((workspace, key_id, granularity, bucket, outcome), count) in chunk {
            let base = values.len();
            tuples.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${})",
                base + 1,
                base + 2,
                base + 3,
                base + 4,
                base + 5,
                base + 6
            ));
            values.extend([
                text(granularity.as_str()),
                time(*bucket),
                text(workspace),
                text(key_id),
                text(outcome),
                Value::Integer(*count),
            ]);
        }
        let sql_text = format!(
            "INSERT INTO usage_counts (granularity, bucket, workspace_uid, key_id, outcome, count) VALUES {} \
             ON CONFLICT (workspace_uid, key_id, granularity, bucket, outcome) \
             DO UPDATE SET count = usage_counts.count + excluded.count",
            tuples.join(", ")
        );
        sql.execute(Statement { sql: &sql_text, values }).await.map_err(database)?;
    }
    Ok(())
}

/// One page of a usage query, newest bucket first, then key id, then
/// outcome. Only the conditions the query has are in the statement.
pub async fn usage_page<C: Sql + ?Sized>(sql: &mut C, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
    let mut values =
        vec![text(query.workspace.as_str()), text(query.granularity.as_str()), time(query.since), time(query.until)];
    let (select, group) = match &query.of {
        UsageOf::Workspace => (
            "SELECT c.bucket, '' AS key_id, c.outcome, CAST(SUM(c.count) AS BIGINT) AS count",
            " GROUP BY c.bucket, c.outcome",
        ),
        UsageOf::Key(_) | UsageOf::ExternalId(_) => ("SELECT c.bucket, c.key_id, c.outcome, c.count", ""),
    };
    let mut from = String::from(
        " FROM usage_counts c WHERE c.workspace_uid = $1 AND c.granularity = $2 AND c.bucket >= $3 AND c.bucket < $4",
    );
    match &query.of {
        UsageOf::Workspace => {}
        UsageOf::Key(id) => {
            values.push(text(id));
            from.push_str(&format!(" AND c.key_id = ${}", values.len()));
        }
        UsageOf::ExternalId(external_id) => {
            values.push(text(external_id));
            from.push_str(&format!(
                " AND c.key_id IN (SELECT id FROM api_keys WHERE workspace_uid = $1 AND external_id = ${})",
                values.len()
            ));
        }
    }
    let inner = format!("{select}{from}{group}");
    let mut sql_text = format!("SELECT bucket, key_id, outcome, count FROM ({inner}) page");
    if let Some(after) = &query.after {
        values.extend([time(after.at), text(&after.key_id), text(&after.outcome)]);
        let (at, key, outcome) = (values.len() - 2, values.len() - 1, values.len());
        sql_text.push_str(&format!(
            " WHERE bucket < ${at} OR (bucket = ${at} AND (key_id > ${key} OR (key_id = ${key} AND outcome > ${outcome})))"
        ));
    }
    values.push(Value::Integer(i64::from(query.limit)));
    sql_text.push_str(&format!(" ORDER BY bucket DESC, key_id, outcome LIMIT ${}", values.len()));
    let workspace_totals = query.of == UsageOf::Workspace;
    all(sql, Statement { sql: &sql_text, values }, |row| {
        let key_id = row.text("key_id")?;
        Ok(UsageRow {
            at: row.time("bucket")?,
            key_id: (!workspace_totals).then_some(key_id),
            outcome: row.text("outcome")?,
            count: u64::try_from(row.integer("count")?).unwrap_or(0),
        })
    })
    .await
}

/// Deletes at most `limit` count rows of `granularity` whose bucket starts
/// before `cutoff`; returns how many went. Bounded, so that a prune never
/// holds a long transaction; the caller repeats it.
pub async fn prune_usage_counts<C: Sql + ?Sized>(
    sql: &mut C,
    granularity: Granularity,
    cutoff: OffsetDateTime,
    limit: u32,
) -> StoreResult<u64> {
    const SQL: &str = "DELETE FROM usage_counts WHERE (workspace_uid, key_id, granularity, bucket, outcome) IN \
                       (SELECT workspace_uid, key_id, granularity, bucket, outcome FROM usage_counts \
                        WHERE granularity = $1 AND bucket < $2 LIMIT $3)";
    let values = [text(granularity.as_str()), time(cutoff), Value::Integer(i64::from(limit))];
    sql.execute(statement(SQL, &[&values])).await.map_err(database)
}

/// Deletes at most `limit` batch ids recorded before `cutoff`.
pub async fn prune_usage_batches<C: Sql + ?Sized>(sql: &mut C, cutoff: OffsetDateTime, limit: u32) -> StoreResult<u64> {
    const SQL: &str =
        "DELETE FROM usage_batches WHERE id IN (SELECT id FROM usage_batches WHERE written_at < $1 LIMIT $2)";
    sql.execute(statement(SQL, &[&[time(cutoff), Value::Integer(i64::from(limit))]])).await.map_err(database)
}
