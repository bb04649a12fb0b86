//! PostgreSQL: the production backend.
//!
//! Writers of one aggregate serialize on its row (`SELECT … FOR NO KEY
//! UPDATE` on the workspace or organisation, which still lets foreign-key
//! checks of other transactions through), so the ring a transition sees is
//! the ring it changes; the partial unique indexes of the schema hold the
//! same invariants again should any path forget the lock.

use std::future::Future;
use std::ops::DerefMut;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keys_core::DomainPattern;
use sqlx::migrate::MigrateError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};
use time::OffsetDateTime;

use crate::cache::{ChangeFeed, Heard};
use crate::engine::{Backend, SqlStore};
use crate::repo::{Constraint, Writer};
use crate::rows::{corrupt, RowExt};
use crate::{Change, StoreError, StoreResult, CHANGES_CHANNEL};

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock key of the bootstrap (the bytes of "keysd-bs").
const BOOTSTRAP_LOCK: i64 = 0x6b65_7973_642d_6273;

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://…`) and applies the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|error| StoreError::Database(format!("invalid PostgreSQL url: {}", redact(&error))))?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        let unreachable = |error: sqlx::Error| {
            StoreError::Database(format!("could not connect to PostgreSQL at {target}: {}", redact(&error)))
        };
        // One plain connection first: the pool retries failed connections
        // until its acquire timeout, which would turn "server down" or
        // "wrong password" into a long wait instead of a prompt answer.
        PgConnection::connect_with(&options).await.map_err(unreachable)?.close().await.map_err(unreachable)?;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(unreachable)?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations.
    pub async fn from_pool(pool: sqlx::PgPool) -> StoreResult<Self> {
        migrate(&pool).await.map_err(|error| StoreError::Database(format!("PostgreSQL migrations failed: {error}")))?;
        Ok(Self { pool })
    }
}

/// Applies the migrations (sqlx serializes concurrent migrators with an
/// advisory lock). Boxed as `Send` here, where every lifetime is concrete:
/// left to inference, sqlx's higher-ranked `Acquire` bounds make the
/// compiler unable to prove `open`'s future `Send`, and callers spawn it.
fn migrate(pool: &sqlx::PgPool) -> Pin<Box<dyn Future<Output = Result<(), MigrateError>> + Send + '_>> {
    Box::pin(MIGRATOR.run(pool))
}

/// The text of an error without the URL it may quote (which could carry a
/// password): sqlx's configuration errors can include it.
fn redact(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    if text.contains("://") {
        "the url could not be parsed or used".to_owned()
    } else {
        text
    }
}

/// A connection of its own that `LISTEN`s on [`CHANGES_CHANNEL`]: the
/// [`ChangeFeed`] of [`crate::CachedStore::following`].
pub(crate) struct ChangeListener {
    listener: PgListener,
    options: PgConnectOptions,
}

impl std::fmt::Debug for ChangeListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeListener")
    }
}

impl ChangeListener {
    /// Connects with `options` (the store pool's) and starts listening:
    /// every change committed after this returns will be heard (or a
    /// [`Heard::Reconnected`] will say it may not have been).
    pub(crate) async fn connect(options: &PgConnectOptions) -> StoreResult<Self> {
        // A pool of one connection of its own, kept for good: the listener
        // must not take one of the store's, and sqlx reconnects through it.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(database_error)?;
        let mut listener = PgListener::connect_with(&pool).await.map_err(database_error)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(database_error)?;
        Ok(Self { listener, options: options.clone() })
    }
}

impl ChangeFeed for ChangeListener {
    async fn next(&mut self) -> StoreResult<Heard> {
        match self.listener.try_recv().await {
            Ok(Some(notification)) => Ok(Heard::Change(Change::from_payload(notification.payload()))),
            // sqlx has already reconnected and listened again (eager
            // reconnection, its default) when it says the connection was lost.
            Ok(None) => Ok(Heard::Reconnected),
            Err(error) => Err(database_error(error)),
        }
    }

    async fn reopen(&self) -> StoreResult<Self> {
        Self::connect(&self.options).await
    }
}

/// A [`crate::repo::Repo`] on a PostgreSQL connection: pooled (reads) or a
/// transaction (writes).
pub struct PgRepo<C>(C);

impl<C> std::fmt::Debug for PgRepo<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgRepo")
    }
}

fn encode_time(time: OffsetDateTime) -> OffsetDateTime {
    time
}

fn encode_optional_time(time: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    time
}

fn encode_domains(domains: &Option<Vec<DomainPattern>>) -> Option<Vec<String>> {
    domains.as_ref().map(|list| list.iter().map(|pattern| pattern.as_str().to_owned()).collect())
}

fn database_error(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// Which domain rule a unique violation stands for, by constraint name.
fn violated(error: &sqlx::Error) -> Option<Constraint> {
    let database_error = error.as_database_error()?;
    if !database_error.is_unique_violation() {
        return None;
    }
    match database_error.constraint()? {
        "organisations_name_key" => Some(Constraint::OrganisationName),
        "workspaces_organisation_slug_key" => Some(Constraint::WorkspaceSlug),
        "workspace_signing_keys_one_active" => Some(Constraint::ActiveSigningKey),
        "public_keys_one_default" => Some(Constraint::DefaultPublicKey),
        _ => None,
    }
}

sql_repo!(PgRepo, PgConnection, " FOR NO KEY UPDATE");

#[async_trait]
impl Writer for PgRepo<Transaction<'static, Postgres>> {
    async fn lock_bootstrap(&mut self) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(self.0.deref_mut())
            .await
            .map_err(database_error)?;
        Ok(())
    }

    async fn announce(&mut self, change: &Change) -> StoreResult<()> {
        // PostgreSQL queues the notification with the transaction: listeners
        // hear it only after the commit, never after a rollback.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES_CHANNEL)
            .bind(change.to_payload())
            .execute(self.0.deref_mut())
            .await
            .map_err(database_error)?;
        Ok(())
    }

    async fn commit(self) -> StoreResult<()> {
        self.0.commit().await.map_err(database_error)
    }
}

#[async_trait]
impl Backend for Postgres {
    type Reader = PgRepo<PoolConnection<Postgres>>;
    type Writer = PgRepo<Transaction<'static, Postgres>>;

    async fn reader(pool: &sqlx::Pool<Self>) -> StoreResult<Self::Reader> {
        Ok(PgRepo(pool.acquire().await.map_err(database_error)?))
    }

    async fn writer(pool: &sqlx::Pool<Self>) -> StoreResult<Self::Writer> {
        Ok(PgRepo(pool.begin().await.map_err(database_error)?))
    }

    async fn ping(pool: &sqlx::Pool<Self>) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(pool).await.map_err(database_error)?;
        Ok(())
    }
}

fn get<'r, T>(row: &'r PgRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|error| StoreError::Database(format!("reading column '{column}': {error}")))
}

impl RowExt for PgRow {
    fn text(&self, column: &str) -> StoreResult<String> {
        get(self, column)
    }

    fn optional_text(&self, column: &str) -> StoreResult<Option<String>> {
        get(self, column)
    }

    fn time(&self, column: &str) -> StoreResult<OffsetDateTime> {
        get(self, column)
    }

    fn optional_time(&self, column: &str) -> StoreResult<Option<OffsetDateTime>> {
        get(self, column)
    }

    fn flag(&self, column: &str) -> StoreResult<bool> {
        get(self, column)
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        get(self, column)
    }

    fn domains(&self, column: &str) -> StoreResult<Option<Vec<String>>> {
        get(self, column)
    }

    fn integer(&self, column: &str) -> StoreResult<i64> {
        get(self, column).map_err(|_| corrupt("integer", column))
    }
}
