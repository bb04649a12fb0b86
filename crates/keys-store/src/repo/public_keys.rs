//! Public keys: the live keys of a workspace (what `PublicKeyRing` holds),
//! the verification lookup by value, the list, the insert and the save.

use super::*;

lookups! {
    /// The live keys of a workspace, oldest first: what `PublicKeyRing` holds.
    live_public_keys(workspace: &WorkspaceUid) -> Vec<PublicKey> =
        select(PUBLIC_KEY, "public_keys WHERE workspace_uid = $1 AND deleted_at IS NULL ORDER BY created_at, id"),
        [text(workspace.as_str())], rows::public_key;
    by_id public_key(workspace, id: &PublicKeyId) -> Option<PublicKey> = "public_keys", PUBLIC_KEY, rows::public_key;
    list list_public_keys(workspace) -> Page<PublicKey> = "public_keys", PUBLIC_KEY, rows::public_key;
}

lookups! {
    /// The verification path: by the `SS.PUBK.` value (unique index).
    public_key_by_value(value: &str) -> Option<(PublicKey, Workspace)> =
        with_workspace("public_keys", PUBLIC_KEY, "value"), [text(value)],
        |row| Ok((rows::public_key(row)?, rows::workspace(row, "w_")?));
}

/// The columns after `id, workspace_uid` that a public key's save writes.
const PUBLIC_KEY_MUTABLE: &str = "value, name, description, allowed_domains, is_secure_mode_enabled, is_default, \
                                  rotated_at, rotated_by_name, rotated_by_email, updated_at, updated_by_name, \
                                  updated_by_email, deleted_at, deleted_by_name, deleted_by_email";

/// The values of [`PUBLIC_KEY_MUTABLE`], in order.
fn public_key_mutable(key: &PublicKey) -> Vec<Value<'_>> {
    let head = [
        text(key.api_key.as_str()),
        text(key.name.as_str()),
        description(key.description.as_ref()),
        domains(&key.allowed_domains),
        Value::Flag(key.is_secure_mode_enabled),
        Value::Flag(key.is_default),
        Value::Time(key.rotated_at),
    ];
    let (updated, deleted) = ([time(key.updated_at)], [Value::Time(key.deleted_at)]);
    let groups: [&[Value<'_>]; 6] = [
        &head,
        &actor(key.rotated_by.as_ref()),
        &updated,
        &actor(key.updated_by.as_ref()),
        &deleted,
        &actor(key.deleted_by.as_ref()),
    ];
    groups.iter().flat_map(|group| group.iter().copied()).collect()
}

pub async fn insert_public_key<C: Sql + ?Sized>(sql: &mut C, key: &PublicKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        insert_sql(
            "public_keys",
            &format!("id, workspace_uid, created_at, created_by_name, created_by_email, {PUBLIC_KEY_MUTABLE}"),
        )
    });
    let head = [text(key.id.as_str()), text(key.workspace.as_str()), time(key.created_at)];
    let created_by = actor(key.created_by.as_ref());
    insert(sql, statement(&SQL, &[&head, &created_by, &public_key_mutable(key)]), "").await
}

/// Writes every mutable column of a live public key.
pub async fn save_public_key<C: Sql + ?Sized>(sql: &mut C, key: &PublicKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| save_sql("public_keys", PUBLIC_KEY_MUTABLE));
    save(sql, statement(&SQL, &[&[text(key.id.as_str())], &public_key_mutable(key)]), "public_keys").await
}
