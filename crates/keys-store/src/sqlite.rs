//! SQLite: the embedded, zero-setup backend.
//!
//! Every write transaction starts with `BEGIN IMMEDIATE`, which takes the
//! database's write lock up front: writers, including those of other
//! processes on the same file, run one after the other (waiting up to the
//! busy timeout), so the ring a transition sees is the ring it changes.
//! Readers are not blocked (WAL mode). The partial unique indexes of the
//! schema hold the same invariants again.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keys_core::{DomainPattern, KeyScope, WorkspaceSlug};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

use crate::change::Change;
use crate::commands::WriteConnection;
use crate::error::{database, StoreError, StoreResult};
use crate::pipeline::{Backend, SqlStore};
use crate::repo::{Constraint, Sql, Statement, Value};
use crate::rows::{corrupt, RowExt};
use crate::schema::{self, Migrations, SchemaStatus};

/// The store on an SQLite file (or in memory).
pub type SqliteStore = SqlStore<Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another one before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// How many times `open` tries again when the file is busy (about 15 s).
const CONNECT_ATTEMPTS: u64 = 150;

/// Creates the database file, if missing, readable and writable by its
/// owner only (0600): it holds every key's digest and public material and
/// the audit trail. SQLite gives the `-wal` and `-shm` files it creates
/// beside it the mode of the database file, so they are 0600 too. A file
/// that exists is left as the operator made it, with a warning when others
/// may read it.
async fn create_private(path: &std::path::Path) -> StoreResult<()> {
    let mut open = tokio::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    open.mode(0o600);
    match open.open(path).await {
        Ok(_created) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            if let Ok(metadata) = tokio::fs::metadata(path).await {
                use std::os::unix::fs::PermissionsExt;
                if metadata.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                        "the SQLite database is accessible to other users; chmod 600 it (and its -wal and -shm)"
                    );
                }
            }
            Ok(())
        }
        Err(error) => Err(StoreError::database(
            format!("could not create SQLite database {}", path.display()),
            sqlx::Error::Io(error),
        )),
    }
}

/// `SQLITE_BUSY` and its extended codes (the low byte is 5).
fn is_busy(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|error| error.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

impl SqlStore<Sqlite> {
    /// Opens (creating it if missing) the database `url` names:
    /// `sqlite://path`, `sqlite:path` or `sqlite::memory:`; applies the
    /// migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        Self::open_with(url, Migrations::Apply).await
    }

    /// Like [`open`](Self::open), applying the pending migrations or
    /// refusing to open while one is pending, as `migrations` says.
    pub async fn open_with(url: &str, migrations: Migrations) -> StoreResult<Self> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::database("invalid SQLite url", source))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let target = options.get_filename().display().to_string();
        if !in_memory {
            create_private(options.get_filename()).await?;
        }
        let pool_options = if in_memory {
            // An in-memory database lives as long as its connection: keep
            // exactly one, forever, and let every caller share it.
            SqlitePoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let options = if in_memory {
            options
        } else {
            options.journal_mode(SqliteJournalMode::Wal).synchronous(SqliteSynchronous::Normal)
        };
        // Switching a new file to WAL takes an exclusive lock without
        // waiting on the busy handler, so processes that open the same new
        // file at once can see SQLITE_BUSY here: try again shortly.
        let mut attempt = 0u64;
        let pool = loop {
            match pool_options.clone().connect_with(options.clone()).await {
                Err(error) if is_busy(&error) && attempt < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(10 * attempt.min(10))).await;
                }
                result => break result,
            }
        }
        .map_err(|source| StoreError::database(format!("could not open SQLite database {target}"), source))?;
        Self::from_pool_with(pool, migrations).await
    }

    /// Wraps an existing pool and applies the migrations. The pool's
    /// connections should have foreign keys on (sqlx's default).
    pub async fn from_pool(pool: sqlx::SqlitePool) -> StoreResult<Self> {
        Self::from_pool_with(pool, Migrations::Apply).await
    }

    async fn from_pool_with(pool: sqlx::SqlitePool, migrations: Migrations) -> StoreResult<Self> {
        let status = migrate(&pool, migrations).await?;
        schema::report("SQLite", status);
        Ok(Self { pool, quotas: keys_core::Quotas::default(), schema: status })
    }
}

/// This backend's migrations, as this binary knows them.
pub(crate) fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

/// Checks the schema against this binary ([`schema::judge`]) and applies
/// the pending migrations, inside one `BEGIN IMMEDIATE` transaction. sqlx
/// takes no lock while migrating SQLite, so two processes opening a new file
/// at once would both try to create the tables; holding the write lock makes
/// the second wait, then find the migrations applied. (The migrator's own
/// transactions become savepoints of this one.)
///
/// Boxed as `Send` here, where every lifetime is concrete: left to
/// inference, sqlx's higher-ranked `Acquire` bounds make the compiler unable
/// to prove `open`'s future `Send`, and callers spawn it.
fn migrate(
    pool: &sqlx::SqlitePool,
    migrations: Migrations,
) -> Pin<Box<dyn Future<Output = StoreResult<SchemaStatus>> + Send + '_>> {
    Box::pin(async move {
        let failed = |source| StoreError::database("SQLite migrations", source);
        let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
        let recorded: bool =
            sqlx::query_scalar(schema::HAS_APPLIED_SQLITE).fetch_one(&mut *transaction).await.map_err(failed)?;
        let applied = if recorded {
            schema::applied(&sqlx::query(schema::APPLIED).fetch_all(&mut *transaction).await.map_err(failed)?)
                .map_err(failed)?
        } else {
            Vec::new()
        };
        let status = schema::judge(&schema::known(&MIGRATOR), &applied, migrations)?;
        if status.pending > 0 {
            schema::tolerant(&MIGRATOR).run_direct(&mut *transaction).await.map_err(migration_failed)?;
        }
        transaction.commit().await.map_err(failed)?;
        Ok(status)
    })
}

fn migration_failed(source: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Migration { backend: "SQLite", source }
}

/// Microseconds since the Unix epoch: what the INTEGER columns hold.
fn encode_time(time: OffsetDateTime) -> i64 {
    // i64 microseconds reach past the year 292000; `OffsetDateTime` stops at
    // 9999, so the conversion cannot overflow.
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

fn decode_time(micros: i64, column: &str) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).map_err(|_| corrupt("timestamp", column))
}

/// `NULL` for any origin; else the patterns joined by commas (a pattern
/// never contains one), the empty string for an empty list.
fn encode_domains(domains: &[DomainPattern]) -> String {
    domains.iter().map(DomainPattern::as_str).collect::<Vec<_>>().join(",")
}

/// A statement with its values bound as SQLite takes them: timestamps as
/// integer microseconds, domain lists as comma-joined text.
fn bind(statement: Statement<'_>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    let mut query = sqlx::query(statement.sql);
    for value in statement.values {
        query = match value {
            Value::Text(text) => query.bind(text),
            Value::Bytes(bytes) => query.bind(bytes),
            Value::Flag(flag) => query.bind(flag),
            Value::Integer(integer) => query.bind(integer),
            Value::Time(time) => query.bind(time.map(encode_time)),
            Value::Domains(domains) => query.bind(domains.map(encode_domains)),
            Value::Scopes(scopes) => query.bind(scopes.iter().map(KeyScope::as_str).collect::<Vec<_>>().join(",")),
            Value::Slugs(slugs) => {
                query.bind(slugs.map(|list| list.iter().map(WorkspaceSlug::as_str).collect::<Vec<_>>().join(",")))
            }
        };
    }
    query
}

impl Sql for SqliteConnection {
    type Row = SqliteRow;
    /// Nothing: `BEGIN IMMEDIATE` already excludes every other writer.
    const ROW_LOCK: &'static str = "";
    /// No count table (one writer at a time): the rows themselves.
    const LIVE_API_KEYS: &'static str =
        "SELECT COUNT(*) AS total FROM api_keys WHERE workspace_uid = $1 AND deleted_at IS NULL";
    /// A guard row the trigger of migration 0006 looks for; no other
    /// connection sees it (uncommitted, under `BEGIN IMMEDIATE`).
    const OPEN_AUDIT_PRUNE: &'static str = "INSERT INTO audit_prune_guard (organisation_id) VALUES ($1)";
    const CLOSE_AUDIT_PRUNE: &'static str = "DELETE FROM audit_prune_guard";
    /// The write transaction already excludes every other claimer.
    const SKIP_LOCKED: &'static str = "";
    const POSITION: &'static str = "instr";

    /// Which rule a unique violation stands for. SQLite names the columns of
    /// the violated index, not the index (`UNIQUE constraint failed:
    /// workspace_signing_keys.workspace_uid`); each rule below is the only
    /// unique index on its columns.
    fn violated(unique_violation: &dyn sqlx::error::DatabaseError) -> Option<Constraint> {
        match unique_violation.message().strip_prefix("UNIQUE constraint failed: ")? {
            "organisations.name" => Some(Constraint::OrganisationName),
            "workspaces.organisation_id, workspaces.slug" => Some(Constraint::WorkspaceSlug),
            "workspace_signing_keys.workspace_uid" => Some(Constraint::ActiveSigningKey),
            "public_keys.workspace_uid" => Some(Constraint::DefaultPublicKey),
            "api_keys.digest" => Some(Constraint::ApiKeyDigest),
            _ => None,
        }
    }

    fn fetch_all<'a>(
        &'a mut self,
        statement: Statement<'a>,
    ) -> impl Future<Output = Result<Vec<SqliteRow>, sqlx::Error>> + Send + 'a {
        bind(statement).fetch_all(self)
    }

    fn execute<'a>(
        &'a mut self,
        statement: Statement<'a>,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'a {
        let query = bind(statement);
        async move { Ok(query.execute(self).await?.rows_affected()) }
    }
}

#[async_trait]
impl Backend for Sqlite {
    fn connection(connection: &mut SqliteConnection) -> WriteConnection<'_> {
        WriteConnection::Sqlite(connection)
    }

    async fn writer(pool: &sqlx::Pool<Self>) -> StoreResult<Transaction<'static, Self>> {
        pool.begin_with("BEGIN IMMEDIATE").await.map_err(database)
    }

    async fn lock_bootstrap(_connection: &mut SqliteConnection) -> StoreResult<()> {
        // `BEGIN IMMEDIATE` already holds the database's write lock.
        Ok(())
    }

    async fn announce(_connection: &mut SqliteConnection, _change: &Change) -> StoreResult<()> {
        // No notification channel between processes on one file: a cache in
        // another process sees the change when its entry expires.
        Ok(())
    }
}

/// One typed column of a row.
fn get<'r, T>(row: &'r SqliteRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|source| StoreError::database(format!("reading column '{column}'"), source))
}

impl RowExt for SqliteRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        get(self, column)
    }

    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        get(self, column)
    }

    fn time(&self, column: &str) -> StoreResult<OffsetDateTime> {
        decode_time(get(self, column)?, column)
    }

    fn optional_time(&self, column: &str) -> StoreResult<Option<OffsetDateTime>> {
        get::<Option<i64>>(self, column)?.map(|micros| decode_time(micros, column)).transpose()
    }

    fn flag(&self, column: &str) -> StoreResult<bool> {
        get(self, column)
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        get(self, column)
    }

    fn domains(&self, column: &str) -> StoreResult<Option<Vec<String>>> {
        let Some(joined) = get::<Option<String>>(self, column)? else { return Ok(None) };
        if joined.is_empty() {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(joined.split(',').map(str::to_owned).collect()))
    }

    fn integer(&self, column: &str) -> StoreResult<i64> {
        get(self, column)
    }

    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        get(self, column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_round_trips_through_microseconds() {
        for time in [
            time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
            time::macros::datetime!(1969-12-31 23:59:59.999999 UTC),
            OffsetDateTime::UNIX_EPOCH,
        ] {
            assert_eq!(decode_time(encode_time(time), "t").ok(), Some(time));
        }
    }
}
