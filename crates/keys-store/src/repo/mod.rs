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
//! One file per entity (`organisations`, `service_tokens`, `workspaces`,
//! `api_keys`, `public_keys`, `signing_keys`, `organisation_keys`, `audit`),
//! plus `last_used` and the caps' counts (`quotas`); this file holds what
//! they share: [`Sql`], the values and statements, the column lists of each
//! table and the helpers that run a statement. Every statement is
//! re-exported here, so a command names `repo::insert_api_key` whichever
//! file holds it.
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
    Actor, ApiKey, ApiKeyId, ApiKeyLifecycle, ApiKeyPrefix, Description, DomainPattern, ExternalId, KeyMeta, KeyPage,
    KeyScope, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, Page, Pagination, PublicKey,
    PublicKeyId, QuotaKind, SecretDigest, ServiceTokenId, ServiceTokenRecord, SigningKeyUid, Workspace,
    WorkspaceSigningKey, WorkspaceSlug, WorkspaceUid,
};
use time::OffsetDateTime;

use crate::error::{database, Conflict, StoreError, StoreResult};
use crate::rows::{self, RowExt};

/// Declares lookups, one per line: the function, its parameters (after
/// the connection), what it returns (`Option<T>`: the one row a unique key
/// finds, with [`one`]; `Vec<T>`: every row, with [`all`]), the SQL, built once, the values bound to
/// `$1`, `$2`, … and the decoder of a row. Table and column names are
/// constants of this module: the SQL never holds input.
///
/// `list name(workspace) -> Page<T> = table, COLUMNS, decode;` declares the
/// page of a workspace's keys that [`workspace_list`] makes, and
/// `by_id name(workspace, id: &Id) -> Option<T> = table, COLUMNS, decode;`
/// the key of a workspace by its id.
macro_rules! lookups {
    () => {};
    (
        $(#[$meta:meta])*
        by_id $name:ident(workspace, id: $id:ty) -> Option<$output:ty> = $table:literal, $columns:expr, $decode:expr;
        $($rest:tt)*
    ) => {
        lookups! {
            $(#[$meta])*
            $name(workspace: &WorkspaceUid, id: $id) -> Option<$output> =
                select($columns, concat!($table, " WHERE id = $1 AND workspace_uid = $2")),
                [text(id.as_str()), text(workspace.as_str())], $decode;
            $($rest)*
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident($($parameter:ident: $type:ty),*) -> $rows:ident<$output:ty> =
            $sql:expr, [$($value:expr),*], $decode:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        pub async fn $name<C: Sql + ?Sized>(sql: &mut C, $($parameter: $type),*) -> StoreResult<$rows<$output>> {
            static SQL: LazyLock<String> = LazyLock::new(|| $sql);
            lookups!(@fetch $rows)(sql, statement(&SQL, &[&[$($value),*]]), $decode).await
        }

        lookups!($($rest)*);
    };
    (@fetch Option) => { one };
    (@fetch Vec) => { all };
    (
        $(#[$meta:meta])*
        list $name:ident(workspace) -> Page<$output:ty> = $table:literal, $columns:expr, $decode:expr;
        $($rest:tt)*
    ) => {
        $(#[$meta])*
        pub async fn $name<C: Sql + ?Sized>(
            sql: &mut C,
            workspace: &WorkspaceUid,
            listing: Listing,
        ) -> StoreResult<Page<$output>> {
            static SQL: LazyLock<[String; 2]> = LazyLock::new(|| workspace_list($table, $columns));
            workspace_page(sql, &SQL, workspace, listing, $decode).await
        }

        lookups!($($rest)*);
    };
}

mod api_keys;
mod audit;
mod last_used;
mod meters;
mod organisation_keys;
mod organisations;
mod public_keys;
mod quotas;
mod service_tokens;
mod signing_keys;
mod usage;
mod webhooks;
mod workspaces;

pub use self::api_keys::*;
pub use self::audit::*;
pub use self::last_used::*;
pub use self::meters::*;
pub use self::organisation_keys::*;
pub use self::organisations::*;
pub use self::public_keys::*;
pub use self::quotas::*;
pub use self::service_tokens::*;
pub use self::signing_keys::*;
pub use self::usage::*;
pub use self::webhooks::*;
pub use self::workspaces::*;

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
    /// `api_keys_digest_key`: two imports of one key racing (a created
    /// key's digest is random).
    ApiKeyDigest,
}

/// A connection of one backend: what it takes to run a [`Statement`].
pub trait Sql: Send {
    type Row: RowExt + Send;
    /// Appended to the `lock_*` lookups.
    const ROW_LOCK: &'static str;
    /// How many live API keys the workspace `$1` has, read after a
    /// command's writes under its lock (`total`).
    const LIVE_API_KEYS: &'static str;
    /// Lets this transaction delete the audit events of the organisation
    /// `$1` (the append-only triggers refuse every other delete).
    const OPEN_AUDIT_PRUNE: &'static str;
    /// Ends what [`Sql::OPEN_AUDIT_PRUNE`] allowed, before the commit.
    const CLOSE_AUDIT_PRUNE: &'static str;
    /// Ends the subquery that picks the webhook deliveries a replica
    /// claims: PostgreSQL's `FOR UPDATE SKIP LOCKED`, so that two replicas
    /// never claim one delivery and neither waits for the other.
    const SKIP_LOCKED: &'static str;
    /// The function `f(haystack, needle)` that is the 1-based position of
    /// `needle` in `haystack`, 0 when absent (`strpos`, `instr`).
    const POSITION: &'static str;

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

/// [`text`] of each value, in order: the text columns an insert starts with.
fn texts<const N: usize>(values: [&str; N]) -> [Value<'_>; N] {
    values.map(text)
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
        // The import that inserted it names the entry (`ImportApiKeys`).
        Some(Constraint::ApiKeyDigest) => Conflict::DigestStored { index: 0 }.into(),
        // The domain has no refusal for this: the workspace lock makes it
        // unreachable, so seeing it is a fault, not a client error.
        Some(Constraint::DefaultPublicKey) | None => database(error),
    }
}

/// Every row `statement` returns, decoded.
async fn all<C: Sql + ?Sized, T>(
    sql: &mut C,
    statement: Statement<'_>,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    sql.fetch_all(statement).await.map_err(database)?.iter().map(decode).collect()
}

/// The row a unique key finds (or a count's one row), decoded: [`all`] of
/// a statement that returns one row or none.
async fn one<C: Sql + ?Sized, T>(
    sql: &mut C,
    statement: Statement<'_>,
    decode: impl Fn(&C::Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    Ok(all(sql, statement, decode).await?.into_iter().next())
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

/// A key of `table` (its `columns`, as `k`) with its workspace (as `w`,
/// each column prefixed `w_`), by a unique `column` bound to `$1`: the
/// verification path.
fn with_workspace(table: &str, columns: &str, column: &str) -> String {
    let columns = format!("{}, {}", qualified("k", columns), joined("w", WORKSPACE));
    select(&columns, &format!("{table} k JOIN workspaces w ON w.uid = k.workspace_uid WHERE k.{column} = $1"))
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
const WORKSPACE: &str = "uid, organisation_id, slug, name, description, mode, created_at, created_by_name, \
                         created_by_email, api_key_prefix, on_leak";
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
    "organisation_id, workspace_uid, actor_name, actor_email, token_id, request_id, action, target_id, at, detail";

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

/// A cheap round trip (readiness).
pub async fn ping<C: Sql + ?Sized>(sql: &mut C) -> StoreResult<()> {
    sql.execute(statement("SELECT 1", &[])).await.map_err(database)?;
    Ok(())
}
