//! Metering: the meter rows of keys and identities, the credit pools that
//! replicas reserve slices of, and the shared rate-limit counters (see
//! [`crate::meters`]).

use keys_core::meter::{CreditPool, CreditRule, Meter, RateLimitState};

use super::*;
use crate::meters::{decode_rate_limits, decode_refill, encode_rate_limits, encode_refill, MeterOf, StoredMeter};

const METER: &str =
    "workspace_uid, subject, ratelimits, metered, refill, unleased, debt, epoch, debt_at, refilled_at, \
                     meta, created_at, updated_at";

fn stored_meter(row: &impl RowExt) -> StoreResult<StoredMeter> {
    let number = |column: &str| -> StoreResult<u64> {
        u64::try_from(row.integer(column)?).map_err(|_| rows::corrupt("negative number", column))
    };
    let refill = decode_refill(row.optional_text("refill")?.as_deref())?;
    let credits = row.flag("metered")?.then_some(CreditRule { refill });
    let pool = CreditPool::restore(number("unleased")?, number("debt")?, number("epoch")?, row.time("refilled_at")?)
        .map_err(|_| rows::corrupt("credit pool", "unleased"))?
        .with_debt_at(row.time("debt_at")?);
    let meta = match row.optional_text("meta")? {
        Some(text) => Some(KeyMeta::parse(&text).map_err(|_| rows::corrupt("meta", "meta"))?),
        None => None,
    };
    Ok(StoredMeter {
        workspace: rows::parsed(WorkspaceUid::parse(&row.text("workspace_uid")?), "workspace_uid")?,
        of: MeterOf::from_column(&row.text("subject")?)?,
        meter: Meter { rate_limits: decode_rate_limits(&row.text("ratelimits")?)?, credits },
        pool,
        meta,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn integer(value: u64) -> Value<'static> {
    Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
}

/// The id of the first key of this key's roll chain (its own, unless a
/// roll made it), when the key exists in the workspace.
pub async fn meter_root<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    key: &ApiKeyId,
) -> StoreResult<Option<ApiKeyId>> {
    const SQL: &str = "SELECT COALESCE(meter_root, id) AS root FROM api_keys WHERE id = $1 AND workspace_uid = $2";
    one(sql, statement(SQL, &[&[text(key.as_str()), text(workspace.as_str())]]), |row| {
        rows::parsed(ApiKeyId::parse(&row.text("root")?), "meter_root")
    })
    .await
}

/// Gives a key made by a roll the root of the key it replaces.
pub async fn inherit_meter_root<C: Sql + ?Sized>(sql: &mut C, fresh: &ApiKeyId, rolled: &ApiKeyId) -> StoreResult<()> {
    const SQL: &str =
        "UPDATE api_keys SET meter_root = (SELECT COALESCE(meter_root, id) FROM api_keys WHERE id = $2) WHERE id = $1";
    sql.execute(statement(SQL, &[&[text(fresh.as_str()), text(rolled.as_str())]])).await.map_err(database)?;
    Ok(())
}

/// The meters of these subjects of a workspace that exist.
pub async fn meters<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    of: &[&MeterOf],
) -> StoreResult<Vec<StoredMeter>> {
    let subjects: Vec<String> = of.iter().map(|of| of.column()).collect();
    let placeholders: Vec<String> = (0..subjects.len()).map(|index| format!("${}", index + 2)).collect();
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    let sql_text =
        select(METER, &format!("meters WHERE workspace_uid = $1 AND subject IN ({})", placeholders.join(", ")));
    let mut values = vec![text(workspace.as_str())];
    values.extend(subjects.iter().map(|subject| text(subject)));
    all(sql, Statement { sql: &sql_text, values }, stored_meter).await
}

/// One subject's meter, its row locked until the transaction ends.
pub async fn lock_meter<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    of: &MeterOf,
) -> StoreResult<Option<StoredMeter>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(METER, "meters WHERE workspace_uid = $1 AND subject = $2"));
    let locked = format!("{}{}", *SQL, C::ROW_LOCK);
    let subject = of.column();
    one(sql, statement(&locked, &[&[text(workspace.as_str()), text(&subject)]]), stored_meter).await
}

/// Writes a subject's meter, whole (insert or replace).
pub async fn put_meter<C: Sql + ?Sized>(sql: &mut C, meter: &StoredMeter) -> StoreResult<()> {
    const SQL: &str =
        "INSERT INTO meters (workspace_uid, subject, ratelimits, metered, refill, unleased, debt, epoch, \
                       refilled_at, meta, created_at, updated_at, debt_at) \
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                       ON CONFLICT (workspace_uid, subject) DO UPDATE SET ratelimits = excluded.ratelimits, \
                       metered = excluded.metered, refill = excluded.refill, unleased = excluded.unleased, \
                       debt = excluded.debt, epoch = excluded.epoch, refilled_at = excluded.refilled_at, \
                       meta = excluded.meta, updated_at = excluded.updated_at, debt_at = excluded.debt_at";
    let subject = meter.of.column();
    let limits = encode_rate_limits(&meter.meter.rate_limits);
    let refill = encode_refill(meter.meter.credits.as_ref().and_then(|rule| rule.refill.as_ref()));
    let values = [
        text(meter.workspace.as_str()),
        text(&subject),
        text(&limits),
        Value::Flag(meter.meter.credits.is_some()),
        Value::Text(refill.as_deref()),
        integer(meter.pool.unleased()),
        integer(meter.pool.debt()),
        integer(meter.pool.epoch()),
        time(meter.pool.refilled_at()),
        Value::Text(meter.meta.as_ref().map(KeyMeta::as_str)),
        time(meter.created_at),
        time(meter.updated_at),
        time(meter.pool.debt_at()),
    ];
    sql.execute(statement(SQL, &[&values])).await.map_err(database)?;
    Ok(())
}

/// Writes a locked subject's balance.
pub async fn save_pool<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    of: &MeterOf,
    pool: &CreditPool,
) -> StoreResult<()> {
    const SQL: &str = "UPDATE meters SET unleased = $3, debt = $4, epoch = $5, refilled_at = $6, debt_at = $7 \
                       WHERE workspace_uid = $1 AND subject = $2";
    let subject = of.column();
    let values = [
        text(workspace.as_str()),
        text(&subject),
        integer(pool.unleased()),
        integer(pool.debt()),
        integer(pool.epoch()),
        time(pool.refilled_at()),
        time(pool.debt_at()),
    ];
    save(sql, statement(SQL, &[&values]), "meters").await
}

/// Deletes a subject's meter and its counters; whether it existed.
pub async fn delete_meter<C: Sql + ?Sized>(sql: &mut C, workspace: &WorkspaceUid, of: &MeterOf) -> StoreResult<bool> {
    let subject = of.column();
    let values = [text(workspace.as_str()), text(&subject)];
    const COUNTERS: &str = "DELETE FROM ratelimit_counters WHERE workspace_uid = $1 AND subject = $2";
    sql.execute(statement(COUNTERS, &[&values])).await.map_err(database)?;
    const METERS: &str = "DELETE FROM meters WHERE workspace_uid = $1 AND subject = $2";
    Ok(sql.execute(statement(METERS, &[&values])).await.map_err(database)? == 1)
}

/// A subject's counter of one limit (read under the subject's lock).
pub async fn counter<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    of: &MeterOf,
    name: &str,
) -> StoreResult<Option<RateLimitState>> {
    const SQL: &str = "SELECT tat_nanos, remainder, denominator FROM ratelimit_counters \
                       WHERE workspace_uid = $1 AND subject = $2 AND name = $3";
    let subject = of.column();
    one(sql, statement(SQL, &[&[text(workspace.as_str()), text(&subject), text(name)]]), |row| {
        let part = |column: &str| -> StoreResult<u32> {
            u32::try_from(row.integer(column)?).map_err(|_| rows::corrupt("counter", column))
        };
        RateLimitState::restore(row.integer("tat_nanos")?, part("remainder")?, part("denominator")?)
            .map_err(|_| rows::corrupt("counter", "remainder"))
    })
    .await
}

pub async fn save_counter<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    of: &MeterOf,
    name: &str,
    state: &RateLimitState,
) -> StoreResult<()> {
    const SQL: &str = "INSERT INTO ratelimit_counters (workspace_uid, subject, name, tat_nanos, remainder, denominator) \
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_uid, subject, name) DO UPDATE SET \
                       tat_nanos = excluded.tat_nanos, remainder = excluded.remainder, denominator = excluded.denominator";
    let subject = of.column();
    let values = [
        text(workspace.as_str()),
        text(&subject),
        text(name),
        Value::Integer(state.tat_nanos()),
        Value::Integer(i64::from(state.remainder())),
        Value::Integer(i64::from(state.denominator())),
    ];
    sql.execute(statement(SQL, &[&values])).await.map_err(database)?;
    Ok(())
}

/// The ids of the live keys of an identity, oldest first.
pub async fn identity_key_ids<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    external_id: &str,
) -> StoreResult<Vec<ApiKeyId>> {
    const SQL: &str = "SELECT id FROM api_keys WHERE workspace_uid = $1 AND external_id = $2 AND deleted_at IS NULL \
                       ORDER BY created_at, id LIMIT 1000";
    all(sql, statement(SQL, &[&[text(workspace.as_str()), text(external_id)]]), |row| {
        rows::parsed(ApiKeyId::parse(&row.text("id")?), "id")
    })
    .await
}
