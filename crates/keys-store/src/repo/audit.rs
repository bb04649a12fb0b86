//! The audit trail: the row of an event, the keyset pages of a query, the
//! insert, and the prune (the one delete the triggers let through).

use super::*;

/// One audit event as the table holds it; [`crate::commands`] owns the
/// typed event and decodes rows back into it.
#[derive(Debug, Clone, Copy)]
pub struct AuditRow<'a> {
    pub organisation_id: &'a str,
    pub workspace_uid: Option<&'a str>,
    pub actor: Option<&'a Actor>,
    pub token_id: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub action: &'a str,
    pub target_id: &'a str,
    pub at: OffsetDateTime,
    pub detail: Option<&'a str>,
}

/// Which of an organisation's audit events a read keeps: each `Some` narrows
/// it. `since` is inclusive, `until` exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    pub organisation: OrganisationId,
    pub workspace: Option<WorkspaceUid>,
    pub action: Option<crate::AuditAction>,
    pub target_id: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl AuditFilter {
    /// Every event of the organisation.
    pub fn organisation(organisation: OrganisationId) -> Self {
        Self { organisation, workspace: None, action: None, target_id: None, since: None, until: None }
    }
}

/// A place in the trail's order, `(at, id)`: strictly ordered, since `id`
/// (the insertion sequence) is unique, and never reused, since events are
/// never updated. A page that continues after it (keyset pagination) sees
/// every older event exactly once, whatever is inserted meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditPosition {
    pub at: OffsetDateTime,
    pub id: i64,
}

/// Which way a read walks the trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOrder {
    /// The API's lists.
    NewestFirst,
    /// The export.
    OldestFirst,
}

/// One page of audit events: the filter, the order, where the previous page
/// ended (exclusive) and how many at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub order: AuditOrder,
    pub after: Option<AuditPosition>,
    pub limit: u32,
}

/// The `(SQL, values)` of an audit page: only the conditions the query
/// has, so each combination is its own statement with its own plan on the
/// indexes of migration 0006 (a generic `($2 IS NULL OR …)` would make
/// PostgreSQL's generic plan scan the whole organisation).
fn audit_page_statement(query: &AuditQuery) -> (String, Vec<Value<'_>>) {
    let filter = &query.filter;
    let mut values = vec![text(filter.organisation.as_str())];
    let mut sql = format!(
        "SELECT e.id, {}, w.slug AS workspace_slug FROM audit_events e \
         LEFT JOIN workspaces w ON w.uid = e.workspace_uid WHERE e.organisation_id = $1",
        qualified("e", AUDIT_EVENT)
    );
    fn condition<'a>(sql: &mut String, values: &mut Vec<Value<'a>>, clause: &str, value: Value<'a>) {
        values.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", values.len())));
    }
    if let Some(workspace) = &filter.workspace {
        condition(&mut sql, &mut values, " AND e.workspace_uid = ?", text(workspace.as_str()));
    }
    if let Some(action) = filter.action {
        condition(&mut sql, &mut values, " AND e.action = ?", text(action.as_str()));
    }
    if let Some(target_id) = &filter.target_id {
        condition(&mut sql, &mut values, " AND e.target_id = ?", text(target_id));
    }
    if let Some(since) = filter.since {
        condition(&mut sql, &mut values, " AND e.at >= ?", time(since));
    }
    if let Some(until) = filter.until {
        condition(&mut sql, &mut values, " AND e.at < ?", time(until));
    }
    let (beyond, direction) = match query.order {
        AuditOrder::NewestFirst => ("<", "DESC"),
        AuditOrder::OldestFirst => (">", "ASC"),
    };
    if let Some(after) = query.after {
        values.extend([time(after.at), Value::Integer(after.id)]);
        let (at, id) = (values.len() - 1, values.len());
        sql.push_str(&format!(" AND (e.at, e.id) {beyond} (${at}, ${id})"));
    }
    values.push(Value::Integer(i64::from(query.limit)));
    sql.push_str(&format!(" ORDER BY e.at {direction}, e.id {direction} LIMIT ${}", values.len()));
    (sql, values)
}

/// One page of audit events (see [`AuditQuery`]).
pub async fn audit_page<C: Sql + ?Sized, T>(
    sql: &mut C,
    query: &AuditQuery,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let (text, values) = audit_page_statement(query);
    all(sql, Statement { sql: &text, values }, decode).await
}

pub async fn insert_audit_event<C: Sql + ?Sized>(sql: &mut C, event: AuditRow<'_>) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("audit_events", AUDIT_EVENT));
    let head = [text(event.organisation_id), Value::Text(event.workspace_uid)];
    let attribution = [Value::Text(event.token_id), Value::Text(event.request_id)];
    let tail = [text(event.action), text(event.target_id), time(event.at), Value::Text(event.detail)];
    insert(sql, statement(&SQL, &[&head, &actor(event.actor), &attribution, &tail]), "").await
}

/// Deletes the organisation's events older than `before`, the one delete
/// the append-only triggers of migration 0006 let through: the backend's
/// [`Sql::OPEN_AUDIT_PRUNE`] first, [`Sql::CLOSE_AUDIT_PRUNE`] after, in
/// the caller's transaction. Returns how many went.
pub async fn prune_audit_events<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    before: OffsetDateTime,
) -> StoreResult<u64> {
    const DELETE: &str = "DELETE FROM audit_events WHERE organisation_id = $1 AND at < $2";
    sql.execute(statement(C::OPEN_AUDIT_PRUNE, &[&[text(organisation.as_str())]])).await.map_err(database)?;
    let pruned = sql.execute(statement(DELETE, &[&[text(organisation.as_str()), time(before)]])).await;
    let pruned = pruned.map_err(database)?;
    sql.execute(statement(C::CLOSE_AUDIT_PRUNE, &[])).await.map_err(database)?;
    Ok(pruned)
}
