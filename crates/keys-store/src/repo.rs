//! The statements: one SQL text for both backends, as plain functions over
//! [`Sql`], the little each backend provides (how a value is bound, how a
//! row is locked, which constraint an error names).
//!
//! Both databases accept `$1`-style parameters. What differs between them
//! stays in the backend modules: [`Sql::bind`]-level encoding of timestamps
//! (PostgreSQL `timestamptz`, SQLite integer microseconds) and of domain
//! lists (a `text[]`, a comma-joined text), [`Sql::ROW_LOCK`] (PostgreSQL
//! `FOR NO KEY UPDATE`; SQLite's `BEGIN IMMEDIATE` already excludes every
//! other writer) and [`Sql::violated`] (constraint names, or the columns
//! SQLite names).
//!
//! Per entity there is a lookup (by id, by digest, by value), a lock (the
//! aggregate roots: organisations and workspaces), an `insert_*` and a
//! `save_*` that writes every mutable column by id. A new keys-core
//! transition of an existing entity therefore needs no new SQL: the command
//! loads the entity, applies the transition and saves it.
//!
//! Saves filter on `deleted_at IS NULL` of the stored row: a deleted row is
//! never written again, whatever a command does, and a save that finds no
//! row is reported as [`StoreError::Inconsistent`] (every save follows a
//! load under the aggregate's lock, so a miss is a fault).

use std::future::Future;
use std::sync::LazyLock;

use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyLifecycle, Description, DomainPattern, ExternalId, KeyMeta, KeyPage, KeyScope,
    Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Page, Pagination, PublicKey, PublicKeyId,
    QuotaKind, SecretDigest, ServiceTokenId, ServiceTokenRecord, SigningKeyUid, Workspace, WorkspaceSigningKey,
    WorkspaceSlug, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::error::{database, Conflict, StoreError, StoreResult};
use crate::rows::{self, RowExt};

/// Which page of a workspace's keys, and whether deleted ones are in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listing {
    pub page: Pagination,
    pub include_deleted: bool,
}

impl Listing {
    pub fn new(page: Pagination, include_deleted: bool) -> Self {
        Self { page, include_deleted }
    }
}

/// One value to bind, in the domain's terms; each backend encodes it.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(Option<&'a str>),
    Bytes(&'a [u8]),
    Flag(bool),
    Integer(i64),
    Time(Option<OffsetDateTime>),
    /// `allowed_domains`: `None` for any origin.
    Domains(Option<&'a [DomainPattern]>),
    /// An API key's scopes (stored as `allowed_domains` are).
    Scopes(&'a [KeyScope]),
    /// A service token's workspaces (stored as `allowed_domains` are):
    /// `None` for all.
    Slugs(Option<&'a [WorkspaceSlug]>),
}

/// One SQL text and its parameters, in `$n` order.
#[derive(Debug)]
pub struct Statement<'a> {
    pub sql: &'a str,
    pub values: Vec<Value<'a>>,
}

/// A uniqueness rule of the schema that stands in for a rule of the domain
/// or of the store. Backends recognise them by constraint or index name
/// (PostgreSQL) or by the columns the error names (SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Constraint {
    /// `organisations_name_key`.
    OrganisationName,
    /// `workspaces_organisation_slug_key`.
    WorkspaceSlug,
    /// `workspace_signing_keys_one_active`.
    ActiveSigningKey,
    /// `public_keys_one_default`.
    DefaultPublicKey,
}

/// A connection of one backend: what it takes to run a [`Statement`].
pub trait Sql: Send {
    type Row: RowExt + Send;
    /// Appended to the `lock_*` lookups.
    const ROW_LOCK: &'static str;
    /// Lets this transaction delete the audit events of the organisation
    /// `$1` (the append-only triggers refuse every other delete).
    const OPEN_AUDIT_PRUNE: &'static str;
    /// Ends what [`Sql::OPEN_AUDIT_PRUNE`] allowed, before the commit.
    const CLOSE_AUDIT_PRUNE: &'static str;

    /// Which rule a unique violation is, if it is one of [`Constraint`].
    fn violated(unique_violation: &dyn sqlx::error::DatabaseError) -> Option<Constraint>;
    /// Every row a statement returns (lookups by a unique key return one
    /// or none).
    fn fetch_all<'a>(
        &'a mut self,
        statement: Statement<'a>,
    ) -> impl Future<Output = Result<Vec<Self::Row>, sqlx::Error>> + Send + 'a;
    /// Runs a statement and returns how many rows it touched.
    fn execute<'a>(
        &'a mut self,
        statement: Statement<'a>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'a;
}

fn text(value: &str) -> Value<'_> {
    Value::Text(Some(value))
}

fn description(value: Option<&Description>) -> Value<'_> {
    Value::Text(value.map(Description::as_str))
}

fn time(value: OffsetDateTime) -> Value<'static> {
    Value::Time(Some(value))
}

fn domains(value: &Option<Vec<DomainPattern>>) -> Value<'_> {
    Value::Domains(value.as_deref())
}

/// The two columns of an actor (`…_name`, `…_email`).
fn actor(value: Option<&Actor>) -> [Value<'_>; 2] {
    [Value::Text(value.map(Actor::name)), Value::Text(value.map(Actor::email))]
}

/// A statement from its SQL and its values (each an array of one or two
/// columns, so an actor adds both of its columns at once).
fn statement<'a>(sql: &'a str, values: &[&[Value<'a>]]) -> Statement<'a> {
    Statement { sql, values: values.iter().flat_map(|group| group.iter().copied()).collect() }
}

/// Maps a failed write: a violated uniqueness rule that stands for a rule
/// becomes its refusal or conflict, anything else a database error.
pub(crate) fn write_error<C: Sql + ?Sized>(error: sqlx::Error, subject: &str) -> StoreError {
    let unique_violation = error.as_database_error().filter(|database_error| database_error.is_unique_violation());
    match unique_violation.and_then(C::violated) {
        Some(Constraint::OrganisationName) => Conflict::OrganisationNameTaken(subject.to_owned()).into(),
        Some(Constraint::WorkspaceSlug) => Conflict::SlugTaken(subject.to_owned()).into(),
        Some(Constraint::ActiveSigningKey) => keys_core::CoreError::OnlyOneActiveSigningKey.into(),
        // The domain has no refusal for this: the workspace lock makes it
        // unreachable, so seeing it is a fault, not a client error.
        Some(Constraint::DefaultPublicKey) | None => database(error),
    }
}

async fn one<C: Sql + ?Sized, T>(
    sql: &mut C,
    statement: Statement<'_>,
    decode: impl FnOnce(&C::Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    sql.fetch_all(statement).await.map_err(database)?.first().map(decode).transpose()
}

async fn all<C: Sql + ?Sized, T>(
    sql: &mut C,
    statement: Statement<'_>,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    sql.fetch_all(statement).await.map_err(database)?.iter().map(decode).collect()
}

async fn insert<C: Sql + ?Sized>(sql: &mut C, statement: Statement<'_>, subject: &str) -> StoreResult<()> {
    sql.execute(statement).await.map_err(|error| write_error::<C>(error, subject))?;
    Ok(())
}

/// Runs a `save_*`: exactly one live row must change.
async fn save<C: Sql + ?Sized>(sql: &mut C, statement: Statement<'_>, table: &str) -> StoreResult<()> {
    let touched = sql.execute(statement).await.map_err(|error| write_error::<C>(error, ""))?;
    if touched == 1 {
        Ok(())
    } else {
        Err(StoreError::Inconsistent(format!("save of {table} touched {touched} live rows instead of 1")))
    }
}

/// One page of a list: `count` counts every row the filter keeps, `select`
/// takes the same parameters followed by `LIMIT` and `OFFSET`.
async fn page<C: Sql + ?Sized, T>(
    sql: &mut C,
    (count, select): (&str, &str),
    values: &[Value<'_>],
    pagination: Pagination,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let total = one(sql, statement(count, &[values]), rows::count).await?.unwrap_or(0);
    // `Pagination` keeps the offset within `i64`.
    let (limit, offset) = (i64::from(pagination.limit()), i64::try_from(pagination.offset()).unwrap_or(i64::MAX));
    let items =
        all(sql, statement(select, &[values, &[Value::Integer(limit), Value::Integer(offset)]]), decode).await?;
    Ok(Page { items, total, pagination })
}

/// The two statements of a list of a workspace's keys (count, page), newest
/// first, deleted keys only when asked for.
fn workspace_list(table: &str, columns: &str) -> [String; 2] {
    let filter = "workspace_uid = $1 AND ($2 OR deleted_at IS NULL)";
    [
        format!("SELECT COUNT(*) AS total FROM {table} WHERE {filter}"),
        select(columns, &format!("{table} WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4")),
    ]
}

/// One page of the list [`workspace_list`] made.
async fn workspace_page<C: Sql + ?Sized, T>(
    sql: &mut C,
    [count, select]: &[String; 2],
    workspace: &WorkspaceUid,
    listing: Listing,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let values = [text(workspace.as_str()), Value::Flag(listing.include_deleted)];
    page(sql, (count, select), &values, listing.page, decode).await
}

/// `SELECT columns FROM table WHERE …`, built once per statement.
fn select(columns: &str, rest: &str) -> String {
    format!("SELECT {columns} FROM {rest}")
}

/// `columns` as they appear in a join: `w.uid AS w_uid, …`.
fn joined(alias: &str, columns: &str) -> String {
    columns.split(", ").map(|column| format!("{alias}.{column} AS {alias}_{column}")).collect::<Vec<_>>().join(", ")
}

/// `columns` qualified by a table alias: `k.id, k.name, …`.
fn qualified(alias: &str, columns: &str) -> String {
    columns.split(", ").map(|column| format!("{alias}.{column}")).collect::<Vec<_>>().join(", ")
}

const ORGANISATION: &str = "id, name, created_at";
const SERVICE_TOKEN: &str = "id, organisation_id, name, digest, actor_name, actor_email, created_at, revoked_at, \
                             masked_token, role, workspaces, expires_at, created_by_name, created_by_email, \
                             last_used_at, revoked_by_name, revoked_by_email";
const WORKSPACE: &str =
    "uid, organisation_id, slug, name, description, mode, created_at, created_by_name, created_by_email";
const API_KEY: &str = "id, workspace_uid, digest, masked_api_key, created_at, created_by_name, created_by_email, \
                       name, description, status, expires_at, scopes, external_id, meta, disabled_at, \
                       disabled_by_name, disabled_by_email, rolled_at, rolled_by_name, rolled_by_email, updated_at, \
                       updated_by_name, updated_by_email, deleted_at, deleted_by_name, deleted_by_email, last_used_at";
/// What a save writes: every column but the id, the secret's traces, the
/// creation and `last_used_at` (which only [`record_api_key_uses`] moves,
/// and only forwards).
const API_KEY_MUTABLE: &str = "name, description, status, expires_at, scopes, external_id, meta, disabled_at, \
                               disabled_by_name, disabled_by_email, rolled_at, rolled_by_name, rolled_by_email, \
                               updated_at, updated_by_name, updated_by_email, deleted_at, deleted_by_name, \
                               deleted_by_email";
const PUBLIC_KEY: &str = "id, workspace_uid, value, name, description, allowed_domains, is_secure_mode_enabled, \
                          is_default, created_at, created_by_name, created_by_email, rotated_at, rotated_by_name, \
                          rotated_by_email, updated_at, updated_by_name, updated_by_email, deleted_at, \
                          deleted_by_name, deleted_by_email";
const SIGNING_KEY: &str = "id, uid, workspace_uid, public_key_pem, status, allowed_domains, expiry_at, created_at, \
                           created_by_name, created_by_email, rolled_at, rolled_by_name, rolled_by_email, \
                           deleted_at, deleted_by_name, deleted_by_email";
const ORGANISATION_KEY: &str = "id, organisation_id, name, public_key_pem, created_at, created_by_name, \
                                created_by_email, deleted_at, deleted_by_name, deleted_by_email";
const AUDIT_EVENT: &str =
    "organisation_id, workspace_uid, actor_name, actor_email, token_id, request_id, action, target_id, at";

/// `INSERT INTO table (columns) VALUES ($1, …)` with one parameter per column.
fn insert_sql(table: &str, columns: &str) -> String {
    let parameters = (1..=columns.split(", ").count()).map(|index| format!("${index}")).collect::<Vec<_>>();
    format!("INSERT INTO {table} ({columns}) VALUES ({})", parameters.join(", "))
}

/// `UPDATE table SET column = $2, … WHERE id = $1 AND deleted_at IS NULL`.
fn save_sql(table: &str, columns: &str) -> String {
    let assignments =
        columns.split(", ").enumerate().map(|(index, column)| format!("{column} = ${}", index + 2)).collect::<Vec<_>>();
    format!("UPDATE {table} SET {} WHERE id = $1 AND deleted_at IS NULL", assignments.join(", "))
}

// Organisations and service tokens.

pub async fn organisation<C: Sql + ?Sized>(sql: &mut C, id: &OrganisationId) -> StoreResult<Option<Organisation>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(ORGANISATION, "organisations WHERE id = $1"));
    one(sql, statement(&SQL, &[&[text(id.as_str())]]), rows::organisation).await
}

/// The organisation, locked until the transaction ends.
pub async fn lock_organisation<C: Sql + ?Sized>(sql: &mut C, id: &OrganisationId) -> StoreResult<Option<Organisation>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(ORGANISATION, "organisations WHERE id = $1"));
    let locked = format!("{}{}", *SQL, C::ROW_LOCK);
    one(sql, statement(&locked, &[&[text(id.as_str())]]), rows::organisation).await
}

pub async fn organisation_by_name<C: Sql + ?Sized>(sql: &mut C, name: &str) -> StoreResult<Option<Organisation>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(ORGANISATION, "organisations WHERE name = $1"));
    one(sql, statement(&SQL, &[&[text(name)]]), rows::organisation).await
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

/// The authentication lookup: unrevoked tokens only (expiry is decided at
/// each use, by the clock: see `ServiceTokenRecord::authenticates`).
pub async fn service_token_by_digest<C: Sql + ?Sized>(
    sql: &mut C,
    digest: &SecretDigest,
) -> StoreResult<Option<ServiceTokenRecord>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| select(SERVICE_TOKEN, "service_tokens WHERE digest = $1 AND revoked_at IS NULL"));
    one(sql, statement(&SQL, &[&[Value::Bytes(&digest.as_bytes()[..])]]), rows::service_token).await
}

/// A token of the organisation by id, revoked or not.
pub async fn service_token<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    id: &ServiceTokenId,
) -> StoreResult<Option<ServiceTokenRecord>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| select(SERVICE_TOKEN, "service_tokens WHERE organisation_id = $1 AND id = $2"));
    one(sql, statement(&SQL, &[&[text(organisation.as_str()), text(id.as_str())]]), rows::service_token).await
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

/// How many admin tokens of the organisation other than `except`
/// authenticate at `now` (unrevoked, unexpired): what a revocation must
/// leave at least one of. Read under the organisation's lock.
pub async fn other_live_admin_tokens<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    except: &ServiceTokenId,
    now: OffsetDateTime,
) -> StoreResult<u64> {
    const SQL: &str = "SELECT COUNT(*) AS total FROM service_tokens WHERE organisation_id = $1 AND id <> $2 \
                       AND role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)";
    let values = [text(organisation.as_str()), text(except.as_str()), time(now)];
    Ok(one(sql, statement(SQL, &[&values]), rows::count).await?.unwrap_or(0))
}

pub async fn insert_service_token<C: Sql + ?Sized>(sql: &mut C, token: &ServiceTokenRecord) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| insert_sql("service_tokens", SERVICE_TOKEN));
    let values = [
        text(token.id.as_str()),
        text(token.organisation_id.as_str()),
        text(token.name.as_str()),
        Value::Bytes(&token.digest.as_bytes()[..]),
    ];
    let times = [time(token.created_at), Value::Time(token.revoked_at)];
    let limits = [
        text(&token.masked_token),
        text(token.role.as_str()),
        Value::Slugs(token.workspaces.slugs()),
        Value::Time(token.expires_at),
    ];
    let used = [Value::Time(token.last_used_at)];
    let parts: [&[Value<'_>]; 7] = [
        &values,
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

// Workspaces.

pub async fn workspace<C: Sql + ?Sized>(sql: &mut C, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(WORKSPACE, "workspaces WHERE uid = $1"));
    one(sql, statement(&SQL, &[&[text(uid.as_str())]]), |row| rows::workspace(row, "")).await
}

/// The workspace, locked until the transaction ends: concurrent mutations
/// of one workspace's keys run one after the other.
pub async fn lock_workspace<C: Sql + ?Sized>(sql: &mut C, uid: &WorkspaceUid) -> StoreResult<Option<Workspace>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(WORKSPACE, "workspaces WHERE uid = $1"));
    let locked = format!("{}{}", *SQL, C::ROW_LOCK);
    one(sql, statement(&locked, &[&[text(uid.as_str())]]), |row| rows::workspace(row, "")).await
}

pub async fn workspace_by_slug<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
    slug: &str,
) -> StoreResult<Option<Workspace>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| select(WORKSPACE, "workspaces WHERE organisation_id = $1 AND slug = $2"));
    one(sql, statement(&SQL, &[&[text(organisation.as_str()), text(slug)]]), |row| rows::workspace(row, "")).await
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
    let values = [
        text(workspace.uid.as_str()),
        text(workspace.organisation_id.as_str()),
        text(workspace.slug.as_str()),
        text(workspace.name.as_str()),
        description(workspace.description.as_ref()),
        text(workspace.mode.as_str()),
        time(workspace.created_at),
    ];
    insert(sql, statement(&SQL, &[&values, &actor(workspace.created_by.as_ref())]), workspace.slug.as_str()).await
}

// API keys.

pub async fn api_key<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    id: &ApiKeyId,
) -> StoreResult<Option<ApiKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(API_KEY, "api_keys WHERE id = $1 AND workspace_uid = $2"));
    one(sql, statement(&SQL, &[&[text(id.as_str()), text(workspace.as_str())]]), rows::api_key).await
}

pub async fn list_api_keys<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    listing: Listing,
) -> StoreResult<Page<ApiKey>> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| workspace_list("api_keys", API_KEY));
    workspace_page(sql, &SQL, workspace, listing, rows::api_key).await
}

/// The verification path: one index lookup by digest, deleted keys too.
pub async fn api_key_by_digest<C: Sql + ?Sized>(
    sql: &mut C,
    digest: &SecretDigest,
) -> StoreResult<Option<(ApiKey, Workspace)>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let columns = format!("{}, {}", qualified("k", API_KEY), joined("w", WORKSPACE));
        select(&columns, "api_keys k JOIN workspaces w ON w.uid = k.workspace_uid WHERE k.digest = $1")
    });
    let decode = |row: &C::Row| Ok((rows::api_key(row)?, rows::workspace(row, "w_")?));
    one(sql, statement(&SQL, &[&[Value::Bytes(&digest.as_bytes()[..])]]), decode).await
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
                        ${token}, ${request}, ${action}, created.id, $5 \
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

/// What has a `last_used_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    /// A live (not deleted) API key.
    ApiKey,
    ServiceToken,
}

/// Moves the `last_used_at` of the row `id` forwards to `at`, never
/// backwards (an older use, from a replica that flushed late, changes
/// nothing). Returns whether it moved.
pub async fn record_use<C: Sql + ?Sized>(sql: &mut C, used: Used, id: &str, at: OffsetDateTime) -> StoreResult<bool> {
    let statement_text = match used {
        Used::ApiKey => {
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND deleted_at IS NULL \
             AND (last_used_at IS NULL OR last_used_at < $2)"
        }
        Used::ServiceToken => {
            "UPDATE service_tokens SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < $2)"
        }
    };
    let touched = sql.execute(statement(statement_text, &[&[text(id), time(at)]])).await;
    Ok(touched.map_err(database)? > 0)
}

// Public keys.

/// The live keys of a workspace, oldest first: what `PublicKeyRing` holds.
pub async fn live_public_keys<C: Sql + ?Sized>(sql: &mut C, workspace: &WorkspaceUid) -> StoreResult<Vec<PublicKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        select(PUBLIC_KEY, "public_keys WHERE workspace_uid = $1 AND deleted_at IS NULL ORDER BY created_at, id")
    });
    all(sql, statement(&SQL, &[&[text(workspace.as_str())]]), rows::public_key).await
}

pub async fn public_key<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    id: &PublicKeyId,
) -> StoreResult<Option<PublicKey>> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| select(PUBLIC_KEY, "public_keys WHERE id = $1 AND workspace_uid = $2"));
    one(sql, statement(&SQL, &[&[text(id.as_str()), text(workspace.as_str())]]), rows::public_key).await
}

pub async fn list_public_keys<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    listing: Listing,
) -> StoreResult<Page<PublicKey>> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| workspace_list("public_keys", PUBLIC_KEY));
    workspace_page(sql, &SQL, workspace, listing, rows::public_key).await
}

/// The verification path: by the `SS.PUBK.` value (unique index).
pub async fn public_key_by_value<C: Sql + ?Sized>(
    sql: &mut C,
    value: &str,
) -> StoreResult<Option<(PublicKey, Workspace)>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let columns = format!("{}, {}", qualified("k", PUBLIC_KEY), joined("w", WORKSPACE));
        select(&columns, "public_keys k JOIN workspaces w ON w.uid = k.workspace_uid WHERE k.value = $1")
    });
    let decode = |row: &C::Row| Ok((rows::public_key(row)?, rows::workspace(row, "w_")?));
    one(sql, statement(&SQL, &[&[text(value)]]), decode).await
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

// Workspace signing keys.

/// The live keys of a workspace, newest first: what `SigningKeyRing` holds.
pub async fn live_signing_keys<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
) -> StoreResult<Vec<WorkspaceSigningKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        select(
            SIGNING_KEY,
            "workspace_signing_keys WHERE workspace_uid = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
        )
    });
    all(sql, statement(&SQL, &[&[text(workspace.as_str())]]), rows::signing_key).await
}

pub async fn list_signing_keys<C: Sql + ?Sized>(
    sql: &mut C,
    workspace: &WorkspaceUid,
    listing: Listing,
) -> StoreResult<Page<WorkspaceSigningKey>> {
    static SQL: LazyLock<[String; 2]> = LazyLock::new(|| workspace_list("workspace_signing_keys", SIGNING_KEY));
    workspace_page(sql, &SQL, workspace, listing, rows::signing_key).await
}

/// By `uid` (the JWT `kid`), deleted keys included.
pub async fn signing_key_by_uid<C: Sql + ?Sized>(
    sql: &mut C,
    uid: &SigningKeyUid,
) -> StoreResult<Option<WorkspaceSigningKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(SIGNING_KEY, "workspace_signing_keys WHERE uid = $1"));
    one(sql, statement(&SQL, &[&[text(uid.as_str())]]), rows::signing_key).await
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

// Organisation signing keys.

/// By id, deleted keys included.
pub async fn organisation_key<C: Sql + ?Sized>(
    sql: &mut C,
    id: &OrganisationKeyId,
) -> StoreResult<Option<OrganisationSigningKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| select(ORGANISATION_KEY, "organisation_keys WHERE id = $1"));
    one(sql, statement(&SQL, &[&[text(id.as_str())]]), rows::organisation_key).await
}

/// Live keys of the organisation, newest first.
pub async fn list_organisation_keys<C: Sql + ?Sized>(
    sql: &mut C,
    organisation: &OrganisationId,
) -> StoreResult<Vec<OrganisationSigningKey>> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        select(
            ORGANISATION_KEY,
            "organisation_keys WHERE organisation_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
        )
    });
    all(sql, statement(&SQL, &[&[text(organisation.as_str())]]), rows::organisation_key).await
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
    let values = [
        text(key.id.as_str()),
        text(key.organisation_id.as_str()),
        text(key.name.as_str()),
        text(key.public_key_pem.as_str()),
        time(key.created_at),
    ];
    let deleted = [Value::Time(key.deleted_at)];
    let groups: [&[Value<'_>]; 4] =
        [&values, &actor(key.created_by.as_ref()), &deleted, &actor(key.deleted_by.as_ref())];
    insert(sql, statement(&SQL, &groups), "").await
}

/// Writes every mutable column of a live organisation signing key.
pub async fn save_organisation_key<C: Sql + ?Sized>(sql: &mut C, key: &OrganisationSigningKey) -> StoreResult<()> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| save_sql("organisation_keys", "name, deleted_at, deleted_by_name, deleted_by_email"));
    let values = [text(key.id.as_str()), text(key.name.as_str()), Value::Time(key.deleted_at)];
    save(sql, statement(&SQL, &[&values, &actor(key.deleted_by.as_ref())]), "organisation_keys").await
}

// Quotas.

/// How many of what a cap counts live where the lock of a command is held:
/// every workspace of an organisation, or the live (not deleted) keys of
/// one kind of a workspace or an organisation.
pub async fn count_live<C: Sql + ?Sized>(sql: &mut C, kind: QuotaKind, holder: &str) -> StoreResult<u64> {
    let sql_text = match kind {
        QuotaKind::Workspaces => "SELECT COUNT(*) AS total FROM workspaces WHERE organisation_id = $1",
        QuotaKind::ApiKeys => "SELECT COUNT(*) AS total FROM api_keys WHERE workspace_uid = $1 AND deleted_at IS NULL",
        QuotaKind::PublicKeys => {
            "SELECT COUNT(*) AS total FROM public_keys WHERE workspace_uid = $1 AND deleted_at IS NULL"
        }
        QuotaKind::SigningKeys => {
            "SELECT COUNT(*) AS total FROM workspace_signing_keys WHERE workspace_uid = $1 AND deleted_at IS NULL"
        }
        QuotaKind::OrganisationKeys => {
            "SELECT COUNT(*) AS total FROM organisation_keys WHERE organisation_id = $1 AND deleted_at IS NULL"
        }
    };
    Ok(one(sql, statement(sql_text, &[&[text(holder)]]), rows::count).await?.unwrap_or(0))
}

// Audit.

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
    let tail = [text(event.action), text(event.target_id), time(event.at)];
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

/// A cheap round trip (readiness).
pub async fn ping<C: Sql + ?Sized>(sql: &mut C) -> StoreResult<()> {
    sql.execute(statement("SELECT 1", &[])).await.map_err(database)?;
    Ok(())
}
