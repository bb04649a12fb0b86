//! Workspace signing keys: the live keys of a workspace (what
//! `SigningKeyRing` holds), the lookup by uid (the JWT `kid`), the list, the
//! insert and the save.

use super::*;

lookups! {
    /// The live keys of a workspace, newest first: what `SigningKeyRing` holds.
    live_signing_keys(workspace: &WorkspaceUid) -> Vec<WorkspaceSigningKey> =
        select(
            SIGNING_KEY,
            "workspace_signing_keys WHERE workspace_uid = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
        ),
        [text(workspace.as_str())], rows::signing_key;
    list list_signing_keys(workspace) -> Page<WorkspaceSigningKey> =
        "workspace_signing_keys", SIGNING_KEY, rows::signing_key;
    /// By `uid` (the JWT `kid`), deleted keys included.
    signing_key_by_uid(uid: &SigningKeyUid) -> Option<WorkspaceSigningKey> =
        select(SIGNING_KEY, "workspace_signing_keys WHERE uid = $1"), [text(uid.as_str())], rows::signing_key;
}

/// The columns after `id, uid, workspace_uid, public_key_pem` that a
/// signing key's save writes (`created_*` come last on insert).
const SIGNING_KEY_MUTABLE: &str = "status, allowed_domains, expiry_at, rolled_at, rolled_by_name, rolled_by_email, \
                                   deleted_at, deleted_by_name, deleted_by_email";

fn signing_key_mutable(key: &WorkspaceSigningKey) -> Vec<Value<'_>> {
    let head = [text(key.status().as_str()), domains(&key.allowed_domains), Value::Time(key.expiry_at())];
    let (rolled, deleted) = ([Value::Time(key.rolled_at())], [Value::Time(key.deleted_at())]);
    let groups: [&[Value<'_>]; 5] = [&head, &rolled, &actor(key.rolled_by()), &deleted, &actor(key.deleted_by())];
    groups.iter().flat_map(|group| group.iter().copied()).collect()
}

pub async fn insert_signing_key<C: Sql + ?Sized>(sql: &mut C, key: &WorkspaceSigningKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        insert_sql(
            "workspace_signing_keys",
            &format!(
                "id, uid, workspace_uid, public_key_pem, {SIGNING_KEY_MUTABLE}, created_at, created_by_name, \
                 created_by_email"
            ),
        )
    });
    let head = [
        text(key.id.as_str()),
        text(key.uid.as_str()),
        text(key.workspace.as_str()),
        text(key.public_key_pem.as_str()),
    ];
    let created = [time(key.created_at)];
    let groups: [&[Value<'_>]; 4] = [&head, &signing_key_mutable(key), &created, &actor(key.created_by.as_ref())];
    insert(sql, statement(&SQL, &groups), "").await
}

/// Writes every mutable column of a live signing key.
pub async fn save_signing_key<C: Sql + ?Sized>(sql: &mut C, key: &WorkspaceSigningKey) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| save_sql("workspace_signing_keys", SIGNING_KEY_MUTABLE));
    save(sql, statement(&SQL, &[&[text(key.id.as_str())], &signing_key_mutable(key)]), "workspace_signing_keys").await
}
