//! API keys: the verification lookup by digest, the list, the insert, the
//! save, and PostgreSQL's one-statement create.

use super::*;

lookups! {
    by_id api_key(workspace, id: &ApiKeyId) -> Option<ApiKey> = "api_keys", API_KEY, rows::api_key;
    list list_api_keys(workspace) -> Page<ApiKey> = "api_keys", API_KEY, rows::api_key;
}

lookups! {
    /// The verification path: one index lookup by digest, deleted keys too.
    api_key_by_digest(digest: &SecretDigest) -> Option<(ApiKey, Workspace)> =
        with_workspace("api_keys", API_KEY, "digest"), [Value::Bytes(&digest.as_bytes()[..])],
        |row| Ok((rows::api_key(row)?, rows::workspace(row, "w_")?));
}

/// The mutable columns of a key, in [`API_KEY_MUTABLE`] order.
fn api_key_mutable(key: &ApiKey) -> Vec<Value<'_>> {
    let (disabled, rolled) = match &key.lifecycle {
        ApiKeyLifecycle::Active => ((None, None), (None, None)),
        ApiKeyLifecycle::Disabled { at, by } => ((Some(*at), by.as_ref()), (None, None)),
        ApiKeyLifecycle::Rolled { at, by } => ((None, None), (Some(*at), by.as_ref())),
    };
    let deletion = (key.deleted_at(), key.deletion.as_ref().and_then(|deletion| deletion.by.as_ref()));
    let head = [
        text(key.name.as_str()),
        description(key.description.as_ref()),
        text(key.status().as_str()),
        Value::Time(key.expires_at),
        Value::Scopes(key.scopes.as_slice()),
        Value::Text(key.external_id.as_ref().map(ExternalId::as_str)),
        Value::Text(key.meta.as_ref().map(KeyMeta::as_str)),
    ];
    let mut values = head.to_vec();
    for (at, by) in [disabled, rolled, (Some(key.updated_at), key.updated_by.as_ref()), deletion] {
        values.push(Value::Time(at));
        values.extend(actor(by));
    }
    values
}

pub async fn insert_api_key<C: Sql + ?Sized>(sql: &mut C, key: &ApiKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("api_keys", API_KEY));
    insert(sql, statement(&SQL, &[&api_key_columns(key)]), "").await
}

/// Keys per statement of [`insert_api_keys`]: 27 parameters each, under
/// SQLite's 32,766 and PostgreSQL's 65,535.
const KEYS_PER_INSERT: usize = 500;

/// Inserts `keys` in statements of up to [`KEYS_PER_INSERT`] rows each (an
/// import's batch: one round trip per 500 keys instead of one per key).
/// A digest stored already fails the statement ([`Conflict::DigestStored`]
/// with index 0: the caller, which looked the digests up first under the
/// workspace's lock, names the entry).
pub async fn insert_api_keys<C: Sql + ?Sized>(sql: &mut C, keys: &[ApiKey]) -> StoreResult<()> {
    let columns = API_KEY.split(", ").count();
    for chunk in keys.chunks(KEYS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|row| {
                let parameters: Vec<String> =
                    (1..=columns).map(|column| format!("${}", row * columns + column)).collect();
                format!("({})", parameters.join(", "))
            })
            .collect();
        let sql_text = format!("INSERT INTO api_keys ({API_KEY}) VALUES {}", rows.join(", "));
        let values: Vec<Value<'_>> = chunk.iter().flat_map(api_key_columns).collect();
        insert(sql, Statement { sql: &sql_text, values }, "").await?;
    }
    Ok(())
}

/// Marks the transaction's state, to go back to with
/// [`rollback_to_savepoint`] after a statement that failed (PostgreSQL
/// refuses every statement of a transaction after a failed one, until
/// then).
pub async fn savepoint<C: Sql + ?Sized>(sql: &mut C, name: &'static str) -> StoreResult<()> {
    let text = format!("SAVEPOINT {name}");
    sql.execute(Statement { sql: &text, values: Vec::new() }).await.map_err(database).map(|_| ())
}

pub async fn rollback_to_savepoint<C: Sql + ?Sized>(sql: &mut C, name: &'static str) -> StoreResult<()> {
    let text = format!("ROLLBACK TO SAVEPOINT {name}");
    sql.execute(Statement { sql: &text, values: Vec::new() }).await.map_err(database).map(|_| ())
}

/// Of these digests, the ones stored already, with the uid of the
/// workspace that holds each: one statement per 1,000 digests.
pub async fn stored_digests<C: Sql + ?Sized>(
    sql: &mut C,
    digests: &[&SecretDigest],
) -> StoreResult<Vec<([u8; 32], String)>> {
    let mut found = Vec::new();
    for chunk in digests.chunks(1_000) {
        let parameters: Vec<String> = (1..=chunk.len()).map(|index| format!("${index}")).collect();
        let sql_text =
            format!("SELECT digest, workspace_uid FROM api_keys WHERE digest IN ({})", parameters.join(", "));
        let values = chunk.iter().map(|digest| Value::Bytes(&digest.as_bytes()[..])).collect();
        let rows = all(sql, Statement { sql: &sql_text, values }, |row| {
            let digest: [u8; 32] = row.bytes("digest")?.try_into().map_err(|_| rows::corrupt("digest", "digest"))?;
            Ok((digest, row.text("workspace_uid")?))
        })
        .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Every column of [`API_KEY`] of `key`, in that order.
fn api_key_columns(key: &ApiKey) -> Vec<Value<'_>> {
    let head = [
        text(key.id.as_str()),
        text(key.workspace.as_str()),
        Value::Bytes(&key.digest.as_bytes()[..]),
        text(key.masked_api_key.as_str()),
        time(key.created_at),
    ];
    let groups: [&[Value<'_>]; 4] =
        [&head, &actor(key.created_by.as_ref()), &api_key_mutable(key), &[Value::Time(key.last_used_at)]];
    groups.iter().flat_map(|group| group.iter().copied()).collect()
}

/// PostgreSQL's API-key create in one statement, run outside a
/// transaction (migration 0007): admit the key under `limit` by locking its
/// workspace's row of `workspace_api_key_counts` only if `live < limit`
/// (`FOR UPDATE` re-reads the newest version after waiting, so concurrent
/// creates, on any replica, see each other's count; this restates
/// `Quotas::admit`'s rule, live after the create ≤ limit), insert the key
/// (its trigger counts it), its audit event and its announcement. The row
/// lock lasts for this statement and its commit. Returns
/// `created, logged, announced`: all 1 when admitted, all 0 when not (no
/// such workspace, or its cap reached), for the caller to tell which.
pub fn create_api_key_at_once<'a>(
    key: &'a ApiKey,
    limit: u32,
    (token_id, request_id, action): (Option<&'a str>, Option<&'a str>, &'a str),
    (channel, payload): (&'a str, &'a str),
) -> Statement<'a> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let columns = API_KEY.split(", ").count();
        let parameters = (1..=columns).map(|index| format!("${index}")).collect::<Vec<_>>().join(", ");
        let (actor_name, actor_email, token, request, action, limit, channel, payload) =
            (columns + 1, columns + 2, columns + 3, columns + 4, columns + 5, columns + 6, columns + 7, columns + 8);
        format!(
            "WITH admitted AS (\
                 SELECT counts.workspace_uid, workspaces.organisation_id \
                 FROM workspace_api_key_counts counts JOIN workspaces ON workspaces.uid = counts.workspace_uid \
                 WHERE counts.workspace_uid = $2 AND counts.live < ${limit} FOR UPDATE OF counts), \
             created AS (INSERT INTO api_keys ({API_KEY}) SELECT {parameters} FROM admitted RETURNING id), \
             logged AS (INSERT INTO audit_events ({AUDIT_EVENT}) \
                 SELECT admitted.organisation_id, admitted.workspace_uid, ${actor_name}, ${actor_email}, \
                        ${token}, ${request}, ${action}, created.id, $5, NULL \
                 FROM admitted, created RETURNING 1) \
             SELECT (SELECT COUNT(*) FROM created) AS created, (SELECT COUNT(*) FROM logged) AS logged, \
                    (SELECT COUNT(*) FROM (SELECT pg_notify(${channel}, ${payload}) FROM created) notified) AS announced"
        )
    });
    let attribution = [Value::Text(token_id), Value::Text(request_id), text(action)];
    let tail = [Value::Integer(i64::from(limit)), text(channel), text(payload)];
    // The event's actor is the key's creator, as `Scope::event` makes it.
    let groups: [&[Value<'_>]; 4] = [&api_key_columns(key), &actor(key.created_by.as_ref()), &attribution, &tail];
    statement(&SQL, &groups)
}

/// Writes every mutable column of a live API key.
pub async fn save_api_key<C: Sql + ?Sized>(sql: &mut C, key: &ApiKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| save_sql("api_keys", API_KEY_MUTABLE));
    save(sql, statement(&SQL, &[&[text(key.id.as_str())], &api_key_mutable(key)]), "api_keys").await
}
