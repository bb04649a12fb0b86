//! Workspaces: lookups, the lock of a workspace (the aggregate root of its
//! keys), the list and the insert.

use super::*;

lookups! {
    workspace(uid: &WorkspaceUid) -> Option<Workspace> =
        select(WORKSPACE, "workspaces WHERE uid = $1"), [text(uid.as_str())], |row| rows::workspace(row, "");
    workspace_by_slug(organisation: &OrganisationId, slug: &str) -> Option<Workspace> =
        select(WORKSPACE, "workspaces WHERE organisation_id = $1 AND slug = $2"),
        [text(organisation.as_str()), text(slug)], |row| rows::workspace(row, "");
}

/// The workspace, locked until the transaction ends: concurrent mutations
/// of one workspace's keys run one after the other.
pub async fn lock_workspace<C: Sql + ?Sized>(sql: &mut C, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(WORKSPACE, "workspaces WHERE uid = $1"));
    let locked = format!("{}{}", *SQL, C::ROW_LOCK);
    one(sql, statement(&locked, &[&[text(uid.as_str())]]), |row| rows::workspace(row, "")).await
}

pub async fn list_workspaces<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    pagination: Pagination,
) -> StoreResult<Page<Workspace>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        select(WORKSPACE, "workspaces WHERE organisation_id = $1 ORDER BY created_at DESC, uid DESC LIMIT $2 OFFSET $3")
    });
    let count = "SELECT COUNT(*) AS total FROM workspaces WHERE organisation_id = $1";
    page(sql, (count, &SQL), &[text(organisation.as_str())], pagination, |row| rows::workspace(row, "")).await
}

pub async fn insert_workspace<C: Sql + ?Sized>(sql: &mut C, workspace: &Workspace) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("workspaces", WORKSPACE));
    let (uid, organisation, slug) =
        (workspace.uid.as_str(), workspace.organisation_id.as_str(), workspace.slug.as_str());
    let texts = texts([uid, organisation, slug, workspace.name.as_str()]);
    let rest = [description(workspace.description.as_ref()), text(workspace.mode.as_str()), time(workspace.created_at)];
    let leaks = leak_columns(workspace);
    insert(sql, statement(&SQL, &[&texts, &rest, &actor(workspace.created_by.as_ref()), &leaks]), slug).await
}

/// Saves what a patch may change: name, description, prefix, leak policy.
pub async fn save_workspace<C: Sql + ?Sized>(sql: &mut C, workspace: &Workspace) -> StoreResult<()> {
    const SQL: &str =
        "UPDATE workspaces SET name = $1, description = $2, api_key_prefix = $3, on_leak = $4 WHERE uid = $5";
    let [prefix, on_leak] = leak_columns(workspace);
    let values = [text(workspace.name.as_str()), description(workspace.description.as_ref()), prefix, on_leak];
    save(sql, statement(SQL, &[&values, &[text(workspace.uid.as_str())]]), "workspaces").await
}

fn leak_columns(workspace: &Workspace) -> [Value<'_>; 2] {
    [Value::Text(workspace.api_key_prefix.as_ref().map(ApiKeyPrefix::as_str)), text(workspace.on_leak.as_str())]
}
