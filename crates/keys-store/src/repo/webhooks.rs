//! Webhooks: endpoints, warnings, deliveries and attempts (migration
//! 0011). The deliveries themselves are written by the database's
//! triggers on `audit_events` and `webhook_warnings`.

use keys_core::webhook::{
    EndpointSecret, EndpointSecrets, EndpointStatus, EventFilter, WebhookEndpoint, WebhookEndpointId, WebhookUrl,
};

use super::*;
use crate::webhooks::{AttemptOutcome, AttemptRow, ExpiringKey, FinishedAttempt, StoredEndpoint, Warning};

const ENDPOINT: &str = "id, organisation_id, url, events, workspaces, description, status, secret, previous_secret, \
                        previous_secret_until, failing_since, created_at, created_by_name, created_by_email, updated_at";
const ENDPOINT_MUTABLE: &str =
    "url, events, workspaces, description, status, secret, previous_secret, previous_secret_until, failing_since, \
     updated_at";

fn stored_workspaces(workspaces: Option<&[WorkspaceUid]>) -> Option<String> {
    workspaces.map(|uids| format!(" {} ", uids.iter().map(WorkspaceUid::as_str).collect::<Vec<_>>().join(" ")))
}

/// The mutable columns of an endpoint, in [`ENDPOINT_MUTABLE`]'s order,
/// after its owned texts (`events`, `workspaces`).
fn endpoint_mutable<'a>(stored: &'a StoredEndpoint, texts: &'a (String, Option<String>)) -> [Value<'a>; 10] {
    let (endpoint, secrets) = (&stored.endpoint, &stored.secrets);
    let previous = secrets.previous.as_ref();
    [
        text(endpoint.url.as_str()),
        text(&texts.0),
        Value::Text(texts.1.as_deref()),
        description(endpoint.description.as_ref()),
        text(endpoint.status.as_str()),
        text(secrets.current.expose()),
        Value::Text(previous.map(|(secret, _)| secret.expose())),
        Value::Time(previous.map(|(_, until)| *until)),
        Value::Time(endpoint.failing_since),
        time(endpoint.updated_at),
    ]
}

fn owned_texts(endpoint: &WebhookEndpoint) -> (String, Option<String>) {
    (endpoint.events.stored(), stored_workspaces(endpoint.workspaces.as_deref()))
}

pub async fn insert_webhook_endpoint<C: Sql + ?Sized>(sql: &mut C, stored: &StoredEndpoint) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        insert_sql(
            "webhook_endpoints",
            &format!("id, organisation_id, {ENDPOINT_MUTABLE}, created_at, created_by_name, created_by_email"),
        )
    });
    let endpoint = &stored.endpoint;
    let texts = owned_texts(endpoint);
    let head = [text(endpoint.id.as_str()), text(endpoint.organisation_id.as_str())];
    let tail = [time(endpoint.created_at)];
    insert(
        sql,
        statement(&SQL, &[&head, &endpoint_mutable(stored, &texts), &tail, &actor(endpoint.created_by.as_ref())]),
        "",
    )
    .await
}

pub async fn save_webhook_endpoint<C: Sql + ?Sized>(sql: &mut C, stored: &StoredEndpoint) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let assignments = ENDPOINT_MUTABLE
            .split(", ")
            .enumerate()
            .map(|(index, column)| format!("{column} = ${}", index + 2))
            .collect::<Vec<_>>();
        format!("UPDATE webhook_endpoints SET {} WHERE id = $1", assignments.join(", "))
    });
    let texts = owned_texts(&stored.endpoint);
    let head = [text(stored.endpoint.id.as_str())];
    save(sql, statement(&SQL, &[&head, &endpoint_mutable(stored, &texts)]), "webhook_endpoints").await
}

pub async fn delete_webhook_endpoint<C: Sql + ?Sized>(sql: &mut C, id: &WebhookEndpointId) -> StoreResult<u64> {
    const SQL: &str = "DELETE FROM webhook_endpoints WHERE id = $1";
    sql.execute(statement(SQL, &[&[text(id.as_str())]])).await.map_err(database)
}

fn decode_endpoint(row: &impl RowExt) -> StoreResult<StoredEndpoint> {
    let workspaces = row
        .optional_text("workspaces")?
        .map(|stored| {
            stored
                .split_whitespace()
                .map(|uid| rows::parsed(WorkspaceUid::parse(uid), "workspaces"))
                .collect::<StoreResult<Vec<_>>>()
        })
        .transpose()?;
    let previous = match (row.optional_text("previous_secret")?, row.optional_time("previous_secret_until")?) {
        (Some(secret), Some(until)) => Some((EndpointSecret::new(secret), until)),
        _ => None,
    };
    let endpoint = WebhookEndpoint {
        id: rows::parsed(WebhookEndpointId::parse(&row.text("id")?), "id")?,
        organisation_id: rows::parsed(OrganisationId::parse(&row.text("organisation_id")?), "organisation_id")?,
        url: WebhookUrl::restore(&row.text("url")?),
        events: rows::parsed(EventFilter::restore(&row.text("events")?), "events")?,
        workspaces,
        description: rows::parsed(Description::restore(row.optional_text("description")?.as_deref()), "description")?,
        status: rows::parsed(EndpointStatus::parse(&row.text("status")?), "status")?,
        failing_since: row.optional_time("failing_since")?,
        created_at: row.time("created_at")?,
        created_by: rows::actor(row, "created_by")?,
        updated_at: row.time("updated_at")?,
    };
    Ok(StoredEndpoint {
        endpoint,
        secrets: EndpointSecrets { current: EndpointSecret::new(row.text("secret")?), previous },
    })
}

lookups! {
    /// The organisation's endpoints, newest first.
    webhook_endpoints(organisation: &OrganisationId) -> Vec<StoredEndpoint> =
        select(ENDPOINT, "webhook_endpoints WHERE organisation_id = $1 ORDER BY created_at DESC, id DESC"),
        [text(organisation.as_str())], decode_endpoint;

    /// One endpoint of the organisation.
    webhook_endpoint(organisation: &OrganisationId, id: &WebhookEndpointId) -> Option<StoredEndpoint> =
        select(ENDPOINT, "webhook_endpoints WHERE id = $1 AND organisation_id = $2"),
        [text(id.as_str()), text(organisation.as_str())], decode_endpoint;

    /// An enabled endpoint by id (the deliverer's).
    enabled_webhook_endpoint(id: &WebhookEndpointId) -> Option<StoredEndpoint> =
        select(ENDPOINT, "webhook_endpoints WHERE id = $1 AND status = 'enabled'"),
        [text(id.as_str())], decode_endpoint;

    /// Enabled endpoints with a delivery due that nobody holds: one probe
    /// of `webhook_deliveries_due_idx` per enabled endpoint, whatever the
    /// backlog (a disabled endpoint's pending rows are never read).
    due_webhook_endpoints(now: OffsetDateTime, limit: u32) -> Vec<WebhookEndpointId> =
        "SELECT ep.id AS endpoint_id FROM webhook_endpoints ep WHERE ep.status = 'enabled' AND EXISTS (\
             SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = ep.id AND d.state = 'pending' \
             AND d.next_attempt_at <= $1 AND (d.claimed_until IS NULL OR d.claimed_until < $1)) LIMIT $2".to_owned(),
        [time(now), Value::Integer(i64::from(limit))],
        |row| rows::parsed(WebhookEndpointId::parse(&row.text("endpoint_id")?), "endpoint_id");

    /// The endpoints of the organisation (counted under its lock).
    count_webhook_endpoints(organisation: &OrganisationId) -> Option<u64> =
        "SELECT COUNT(*) AS total FROM webhook_endpoints WHERE organisation_id = $1".to_owned(),
        [text(organisation.as_str())], rows::count;
}

/// A delivery row a claim took, with what it sends (an audit event's
/// or a warning's id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRow {
    pub id: i64,
    pub message_id: String,
    pub kind: String,
    pub attempts: u32,
    pub created_at: OffsetDateTime,
    pub audit_event_id: Option<i64>,
    pub warning_id: Option<i64>,
}

/// Claims due deliveries of one endpoint (see `Webhooks::claim_webhook_deliveries`).
pub async fn claim_webhook_deliveries<C: Sql + ?Sized>(
    sql: &mut C,
    endpoint: &WebhookEndpointId,
    (now, until): (OffsetDateTime, OffsetDateTime),
    claim: &str,
    limit: u32,
) -> StoreResult<Vec<ClaimedRow>> {
    let sql_text = {
        format!(
            "UPDATE webhook_deliveries SET claimed_until = $3, claim = $4 WHERE id IN (\
                 SELECT id FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'pending' \
                 AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2) \
                 ORDER BY next_attempt_at, id LIMIT $5{}) \
             RETURNING id, message_id, type, audit_event_id, warning_id, attempts, created_at",
            C::SKIP_LOCKED
        )
    };
    let values = [text(endpoint.as_str()), time(now), time(until), text(claim), Value::Integer(i64::from(limit))];
    let mut claimed = all(sql, statement(&sql_text, &[&values]), |row| {
        Ok(ClaimedRow {
            id: row.integer("id")?,
            message_id: row.text("message_id")?,
            kind: row.text("type")?,
            attempts: u32::try_from(row.integer("attempts")?).map_err(|_| rows::corrupt("count", "attempts"))?,
            created_at: row.time("created_at")?,
            audit_event_id: optional_integer(row, "audit_event_id")?,
            warning_id: optional_integer(row, "warning_id")?,
        })
    })
    .await?;
    claimed.sort_by_key(|row| row.id);
    Ok(claimed)
}

fn optional_integer(row: &impl RowExt, column: &str) -> StoreResult<Option<i64>> {
    row.optional_integer(column)
}

/// One audit event by its sequence number, with its workspace's slug, as
/// `decode` reads it (the caller owns the event type, as for
/// [`audit_page`]).
pub async fn audit_event_by_id<C: Sql + ?Sized, T>(
    sql: &mut C,
    id: i64,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT e.id, {}, w.slug AS workspace_slug FROM audit_events e \
             LEFT JOIN workspaces w ON w.uid = e.workspace_uid WHERE e.id = $1",
            qualified("e", AUDIT_EVENT)
        )
    });
    one(sql, statement(&SQL, &[&[Value::Integer(id)]]), decode).await
}

/// One warning's data and time.
pub async fn warning_by_id<C: Sql + ?Sized>(sql: &mut C, id: i64) -> StoreResult<Option<(String, OffsetDateTime)>> {
    const SQL: &str = "SELECT data, at FROM webhook_warnings WHERE id = $1";
    one(sql, statement(SQL, &[&[Value::Integer(id)]]), |row| Ok((row.text("data")?, row.time("at")?))).await
}

/// Records an attempt, moves its delivery on, and keeps the endpoint's
/// run of failures; returns the endpoint's `failing_since`.
pub async fn finish_webhook_attempt<C: Sql + ?Sized>(
    sql: &mut C,
    attempt: &FinishedAttempt,
) -> StoreResult<Option<OffsetDateTime>> {
    // Only while the delivery exists: its endpoint may have been deleted
    // during the attempt (the delete took its deliveries with it).
    const RECORD: &str =
        "INSERT INTO webhook_attempts (delivery_id, endpoint_id, at, status_code, error, duration_ms) \
         SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1)";
    const MOVE: &str = "UPDATE webhook_deliveries SET attempts = attempts + 1, state = $2, next_attempt_at = $3, \
                        finished_at = $4, claimed_until = NULL, claim = NULL WHERE id = $1 AND claim = $5";
    // Only when the run of failures starts or ends: a healthy endpoint's
    // row is not written (nor locked) by every attempt, which would
    // serialise the attempts of every replica to it.
    const SUCCEEDED: &str =
        "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL";
    const FAILED: &str = "UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL";
    const SINCE: &str = "SELECT failing_since FROM webhook_endpoints WHERE id = $1";
    let delivery = Value::Integer(attempt.delivery_id);
    let endpoint = text(attempt.endpoint_id.as_str());
    // The endpoint's row first, then the delivery's: the order a delete of
    // the endpoint takes them in (its row, then the cascade), so that the
    // two never wait for each other in a circle.
    let run = match attempt.outcome {
        AttemptOutcome::Delivered => statement(SUCCEEDED, &[&[endpoint]]),
        _ => statement(FAILED, &[&[endpoint, time(attempt.at)]]),
    };
    sql.execute(run).await.map_err(database)?;
    let duration = Value::Integer(i64::try_from(attempt.duration.whole_milliseconds()).unwrap_or(i64::MAX).max(0));
    let status = Value::Integer(attempt.status_code.map_or(-1, i64::from));
    let error = Value::Text(attempt.error.as_deref());
    let record = [delivery, endpoint, time(attempt.at), status, error, duration];
    // The status code is NULL when there is none: bound as -1, and mapped
    // back by the statement below (one statement text for both backends).
    let record_sql = RECORD.replace("$4", "NULLIF($4, -1)");
    sql.execute(statement(&record_sql, &[&record])).await.map_err(database)?;
    let (state, next, finished) = match attempt.outcome {
        AttemptOutcome::Delivered => ("delivered", None, Some(attempt.at)),
        AttemptOutcome::RetryAt(at) => ("pending", Some(at), None),
        AttemptOutcome::Failed => ("failed", None, Some(attempt.at)),
    };
    let moved = [delivery, text(state), Value::Time(next), Value::Time(finished), text(&attempt.claim)];
    sql.execute(statement(MOVE, &[&moved])).await.map_err(database)?;
    let since = one(sql, statement(SINCE, &[&[endpoint]]), |row| row.optional_time("failing_since")).await?;
    Ok(since.flatten())
}

/// A page of the endpoint's attempts, newest first.
pub async fn webhook_attempts<C: Sql + ?Sized>(
    sql: &mut C,
    endpoint: &WebhookEndpointId,
    pagination: Pagination,
) -> StoreResult<Page<AttemptRow>> {
    const COUNT: &str = "SELECT COUNT(*) AS total FROM webhook_attempts WHERE endpoint_id = $1";
    const SELECT: &str = "SELECT a.id, a.at, a.status_code, a.error, a.duration_ms, d.message_id, d.type, d.state, \
                          d.next_attempt_at FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id \
                          WHERE a.endpoint_id = $1 ORDER BY a.id DESC LIMIT $2 OFFSET $3";
    page(sql, (COUNT, SELECT), &[text(endpoint.as_str())], pagination, |row| {
        let status = optional_integer(row, "status_code")?;
        Ok(AttemptRow {
            id: row.integer("id")?,
            message_id: row.text("message_id")?,
            kind: row.text("type")?,
            at: row.time("at")?,
            status_code: status.and_then(|code| u16::try_from(code).ok()),
            error: row.optional_text("error")?,
            duration_ms: u64::try_from(row.integer("duration_ms")?).unwrap_or(0),
            state: row.text("state")?,
            next_attempt_at: row.optional_time("next_attempt_at")?,
        })
    })
    .await
}

/// Makes one delivery due again.
pub async fn retry_webhook_delivery<C: Sql + ?Sized>(
    sql: &mut C,
    endpoint: &WebhookEndpointId,
    message_id: &str,
    now: OffsetDateTime,
) -> StoreResult<bool> {
    const SQL: &str = "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $3, finished_at = NULL \
                       WHERE endpoint_id = $1 AND message_id = $2";
    let touched = sql.execute(statement(SQL, &[&[text(endpoint.as_str()), text(message_id), time(now)]])).await;
    Ok(touched.map_err(database)? > 0)
}

/// Stores one warning if an enabled endpoint subscribes to it and it is
/// not stored already; the trigger writes its deliveries.
pub async fn insert_webhook_warning<C: Sql + ?Sized>(sql: &mut C, warning: &Warning) -> StoreResult<u64> {
    let sql_text = {
        let position = C::POSITION;
        format!(
            "INSERT INTO webhook_warnings (organisation_id, workspace_uid, type, dedupe, data, at) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM webhook_endpoints ep \
                 WHERE ep.organisation_id = $1 AND ep.status = 'enabled' \
                 AND (ep.events = ' * ' OR {position}(ep.events, ' ' || $3 || ' ') > 0) \
                 AND (ep.workspaces IS NULL OR {position}(ep.workspaces, ' ' || $2 || ' ') > 0)) \
             ON CONFLICT (dedupe) DO NOTHING"
        )
    };
    let values = [
        text(warning.organisation_id.as_str()),
        Value::Text(warning.workspace.as_ref().map(WorkspaceUid::as_str)),
        text(warning.kind),
        text(&warning.dedupe),
        text(&warning.data),
        time(warning.at),
    ];
    sql.execute(statement(&sql_text, &[&values])).await.map_err(database)
}

/// The keys `Webhooks::expiring_api_keys` names.
pub async fn expiring_api_keys<C: Sql + ?Sized>(
    sql: &mut C,
    now: OffsetDateTime,
    horizon: OffsetDateTime,
    covered: &[i64],
    limit: u32,
) -> StoreResult<Vec<ExpiringKey>> {
    // The leads are whole numbers of the configuration, not input.
    let dedupes = covered.iter().map(|lead| format!("'api_key.expiring:' || k.id || ':{lead}'")).collect::<Vec<_>>();
    let unwarned = if dedupes.is_empty() {
        String::new()
    } else {
        format!(" AND NOT EXISTS (SELECT 1 FROM webhook_warnings ww WHERE ww.dedupe IN ({}))", dedupes.join(", "))
    };
    // Only the keys whose warning an endpoint would take (the condition of
    // `insert_webhook_warning`): a key no endpoint takes the warning of
    // is never warned of, so it would be found by every scan, ahead of
    // the keys that can be.
    let position = C::POSITION;
    let sql_text = format!(
        "SELECT k.id, k.workspace_uid, k.name, k.expires_at, w.organisation_id, w.slug FROM api_keys k \
         JOIN workspaces w ON w.uid = k.workspace_uid \
         WHERE k.deleted_at IS NULL AND k.expires_at IS NOT NULL AND k.expires_at > $1 AND k.expires_at <= $2 \
           AND k.status = 'active' \
           AND EXISTS (SELECT 1 FROM webhook_endpoints ep WHERE ep.organisation_id = w.organisation_id \
                       AND ep.status = 'enabled' \
                       AND (ep.events = ' * ' OR {position}(ep.events, ' api_key.expiring ') > 0) \
                       AND (ep.workspaces IS NULL OR {position}(ep.workspaces, ' ' || k.workspace_uid || ' ') > 0)\
                      ){unwarned} \
         ORDER BY k.expires_at LIMIT $3"
    );
    let values = [time(now), time(horizon), Value::Integer(i64::from(limit))];
    all(sql, statement(&sql_text, &[&values]), |row| {
        Ok(ExpiringKey {
            organisation_id: rows::parsed(OrganisationId::parse(&row.text("organisation_id")?), "organisation_id")?,
            workspace: rows::parsed(WorkspaceUid::parse(&row.text("workspace_uid")?), "workspace_uid")?,
            workspace_slug: row.text("slug")?,
            key_id: row.text("id")?,
            name: row.text("name")?,
            expires_at: row.time("expires_at")?,
        })
    })
    .await
}

/// Deletes what `Webhooks::prune_webhooks` names.
pub async fn prune_webhooks<C: Sql + ?Sized>(sql: &mut C, before: OffsetDateTime, limit: u32) -> StoreResult<u64> {
    const DELIVERIES: &str = "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries \
                              WHERE state <> 'pending' AND finished_at < $1 LIMIT $2)";
    const WARNINGS: &str = "DELETE FROM webhook_warnings WHERE id IN (SELECT id FROM webhook_warnings \
                            WHERE at < $1 LIMIT $2)";
    let values = [time(before), Value::Integer(i64::from(limit))];
    let deliveries = sql.execute(statement(DELIVERIES, &[&values])).await.map_err(database)?;
    let warnings = sql.execute(statement(WARNINGS, &[&values])).await.map_err(database)?;
    Ok(deliveries + warnings)
}
