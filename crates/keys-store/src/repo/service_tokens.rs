//! Service tokens: the authentication lookup by digest, the organisation's
//! list, the count of live admin tokens a revocation must leave one of
//! (keys-core's `LiveAdmin`, restated in SQL), the insert and the
//! revocation.

use keys_core::LiveAdmin;

use super::*;

lookups! {
    /// The authentication lookup: unrevoked tokens only (expiry is decided at
    /// each use, by the clock: see `ServiceTokenRecord::authenticates`).
    service_token_by_digest(digest: &SecretDigest) -> Option<ServiceTokenRecord> =
        select(SERVICE_TOKEN, "service_tokens WHERE digest = $1 AND revoked_at IS NULL"),
        [Value::Bytes(&digest.as_bytes()[..])], rows::service_token;
    /// A token of the organisation by id, revoked or not.
    service_token(organisation: &OrganisationId, id: &ServiceTokenId) -> Option<ServiceTokenRecord> =
        select(SERVICE_TOKEN, "service_tokens WHERE organisation_id = $1 AND id = $2"),
        [text(organisation.as_str()), text(id.as_str())], rows::service_token;
}

/// One page of the organisation's tokens, newest first; revoked ones only
/// when asked for.
pub async fn service_tokens<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    listing: Listing,
) -> StoreResult<Page<ServiceTokenRecord>> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| {
        let filter = "organisation_id = $1 AND ($2 OR revoked_at IS NULL)";
        [
            format!("SELECT COUNT(*) AS total FROM service_tokens WHERE {filter}"),
            select(
                SERVICE_TOKEN,
                &format!("service_tokens WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"),
            ),
        ]
    });
    let values = [text(organisation.as_str()), Value::Flag(listing.include_deleted)];
    page(sql, (&SQL[0], &SQL[1]), &values, listing.page, rows::service_token).await
}

/// How many live admin tokens the organisation has other than `except`:
/// what a revocation must leave at least one of. Read under the
/// organisation's lock. The database half of keys-core's [`LiveAdmin`]
/// (the half that applies to a record is `ServiceTokenRecord::is_live_admin`):
/// its role, bound as [`LiveAdmin::ROLE`], unrevoked, and no expiry or one
/// strictly after `now`, the three conditions of [`LiveAdmin::holds`] in
/// order. `crate::tests` checks that both halves agree on the edges.
pub async fn other_live_admin_tokens<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    except: &ServiceTokenId,
    now: OffsetDateTime,
) -> StoreResult<u64> {
    const SQL: &str = "SELECT COUNT(*) AS total FROM service_tokens WHERE organisation_id = $1 AND id <> $2 \
                       AND role = $3 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)";
    let values = [text(organisation.as_str()), text(except.as_str()), text(LiveAdmin::ROLE.as_str()), time(now)];
    Ok(one(sql, statement(SQL, &[&values]), rows::count).await?.unwrap_or(0))
}

pub async fn insert_service_token<C: Sql + ?Sized>(sql: &mut C, token: &ServiceTokenRecord) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("service_tokens", SERVICE_TOKEN));
    let texts = texts([token.id.as_str(), token.organisation_id.as_str(), token.name.as_str()]);
    let digest = [Value::Bytes(&token.digest.as_bytes()[..])];
    let times = [time(token.created_at), Value::Time(token.revoked_at)];
    let limits = [
        text(&token.masked_token),
        text(token.role.as_str()),
        Value::Slugs(token.workspaces.slugs()),
        Value::Time(token.expires_at),
    ];
    let used = [Value::Time(token.last_used_at)];
    let parts: [&[Value<'_>]; 8] = [
        &texts,
        &digest,
        &actor(Some(&token.actor)),
        &times,
        &limits,
        &actor(token.created_by.as_ref()),
        &used,
        &actor(token.revoked_by.as_ref()),
    ];
    insert(sql, statement(&SQL, &parts), "").await
}

/// Writes a revocation: only an unrevoked row changes.
pub async fn save_service_token_revocation<C: Sql + ?Sized>(
    sql: &mut C,
    token: &ServiceTokenRecord,
) -> StoreResult<()> {
    const SQL: &str = "UPDATE service_tokens SET revoked_at = $2, revoked_by_name = $3, revoked_by_email = $4 \
                       WHERE id = $1 AND revoked_at IS NULL";
    let values = [text(token.id.as_str()), Value::Time(token.revoked_at)];
    save(sql, statement(SQL, &[&values, &actor(token.revoked_by.as_ref())]), "service_tokens").await
}
