//! Organisations: lookups by id and name, the lock of an organisation (the
//! aggregate root of its workspaces, tokens, organisation keys and trail),
//! the bootstrap's count and the insert.

use super::*;

lookups! {
    organisation(id: &OrganisationId) -> Option<Organisation> =
        select(ORGANISATION, "organisations WHERE id = $1"), [text(id.as_str())], rows::organisation;
    organisation_by_name(name: &str) -> Option<Organisation> =
        select(ORGANISATION, "organisations WHERE name = $1"), [text(name)], rows::organisation;
}

/// The organisation, locked until the transaction ends.
pub async fn lock_organisation<C: Sql + ?Sized>(sql: &mut C, id: &OrganisationId) -> StoreResult<Option<Organisation>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(ORGANISATION, "organisations WHERE id = $1"));
    let locked = format!("{}{}", *SQL, C::ROW_LOCK);
    one(sql, statement(&locked, &[&[text(id.as_str())]]), rows::organisation).await
}

pub async fn count_organisations<C: Sql + ?Sized>(sql: &mut C) -> StoreResult<u64> {
    let total = one(sql, statement("SELECT COUNT(*) AS total FROM organisations", &[]), rows::count).await?;
    Ok(total.unwrap_or(0))
}

pub async fn insert_organisation<C: Sql + ?Sized>(sql: &mut C, organisation: &Organisation) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("organisations", ORGANISATION));
    let values = [text(organisation.id.as_str()), text(organisation.name.as_str()), time(organisation.created_at)];
    insert(sql, statement(&SQL, &[&values]), organisation.name.as_str()).await
}
