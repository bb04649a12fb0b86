//! Organisation signing keys (dialect 2): the lookup by id, the list and
//! its keyset pages, the insert and the save.

use super::*;

lookups! {
    /// By id, deleted keys included.
    organisation_key(id: &OrganisationKeyId) -> Option<OrganisationSigningKey> =
        select(ORGANISATION_KEY, "organisation_keys WHERE id = $1"), [text(id.as_str())], rows::organisation_key;
    /// Live keys of the organisation, newest first.
    list_organisation_keys(organisation: &OrganisationId) -> Vec<OrganisationSigningKey> =
        select(
            ORGANISATION_KEY,
            "organisation_keys WHERE organisation_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
        ),
        [text(organisation.as_str())], rows::organisation_key;
}

/// One page of the live keys of the organisation, newest first, after the
/// page's position: up to `limit + 1` keys (the last only tells that more
/// follow; keys-core's `KeyPage::slice` makes the page).
pub async fn organisation_keys_page<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    page: &KeyPage,
) -> StoreResult<Vec<OrganisationSigningKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        select(
            ORGANISATION_KEY,
            "organisation_keys WHERE organisation_id = $1 AND deleted_at IS NULL \
             AND ($2 OR created_at < $3 OR (created_at = $3 AND id < $4)) \
             ORDER BY created_at DESC, id DESC LIMIT $5",
        )
    });
    let after = page.after();
    let values = [
        text(organisation.as_str()),
        Value::Flag(after.is_none()),
        Value::Time(after.map(|position| position.created_at)),
        Value::Text(after.map(|position| position.id.as_str())),
        Value::Integer(i64::from(page.limit()) + 1),
    ];
    all(sql, statement(&SQL, &[&values]), rows::organisation_key).await
}

pub async fn insert_organisation_key<C: Sql + ?Sized>(sql: &mut C, key: &OrganisationSigningKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("organisation_keys", ORGANISATION_KEY));
    let texts = texts([key.id.as_str(), key.organisation_id.as_str(), key.name.as_str(), key.public_key_pem.as_str()]);
    let (created, deleted) = ([time(key.created_at)], [Value::Time(key.deleted_at)]);
    let groups: [&[Value<'_>]; 5] =
        [&texts, &created, &actor(key.created_by.as_ref()), &deleted, &actor(key.deleted_by.as_ref())];
    insert(sql, statement(&SQL, &groups), "").await
}

/// Writes every mutable column of a live organisation signing key.
pub async fn save_organisation_key<C: Sql + ?Sized>(sql: &mut C, key: &OrganisationSigningKey) -> StoreResult<()> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| save_sql("organisation_keys", "name, deleted_at, deleted_by_name, deleted_by_email"));
    let values = [text(key.id.as_str()), text(key.name.as_str()), Value::Time(key.deleted_at)];
    save(sql, statement(&SQL, &[&values, &actor(key.deleted_by.as_ref())]), "organisation_keys").await
}
