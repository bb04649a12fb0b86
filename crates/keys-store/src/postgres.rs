//! PostgreSQL: the production backend.
//!
//! Writers of one aggregate serialize on its row (`SELECT … FOR NO KEY
//! UPDATE` on the workspace or organisation, which still lets foreign-key
//! checks of other transactions through), so the ring a transition sees is
//! the ring it changes; the partial unique indexes of the schema hold the
//! same invariants again should any path forget the lock.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keys_core::ApiKey;
use sqlx::migrate::{Migrate, MigrateError};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, PgConnection, Postgres, Row, Transaction};
use time::OffsetDateTime;

use crate::change::{Change, ChangeFeed, Heard, CHANGES_CHANNEL};
use crate::commands::{AuditAction, WriteConnection};
use crate::error::{database, StoreError, StoreResult};
use crate::mutations::Attribution;
use crate::pipeline::{Backend, SqlStore};
use crate::repo::{self, Constraint, Sql, Statement, Value};
use crate::rows::{corrupt, RowExt};
use crate::schema::{self, Migrations, SchemaStatus};

/// The store on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock key of the bootstrap (the bytes of "keysd-bs").
const BOOTSTRAP_LOCK: i64 = 0x6b65_7973_642d_6273;

impl SqlStore<Postgres> {
    /// Connects to `url` (`postgres://…`) and applies the migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with_migrations(url, Migrations::Apply).await
    }

    /// Like [`connect`](Self::connect), applying the pending migrations or
    /// refusing to open while one is pending, as `migrations` says.
    pub async fn connect_with_migrations(url: &str, migrations: Migrations) -> StoreResult<Self> {
        let options =
            PgConnectOptions::from_str(url).map_err(|source| StoreError::database("invalid PostgreSQL url", source))?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        let unreachable =
            |source: sqlx::Error| StoreError::database(format!("could not connect to PostgreSQL at {target}"), source);
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
        Self::from_pool_with(pool, migrations).await
    }

    /// Wraps an existing pool and applies the migrations.
    pub async fn from_pool(pool: sqlx::PgPool) -> StoreResult<Self> {
        Self::from_pool_with(pool, Migrations::Apply).await
    }

    async fn from_pool_with(pool: sqlx::PgPool, migrations: Migrations) -> StoreResult<Self> {
        let status = migrate(&pool, migrations).await?;
        schema::report("PostgreSQL", status);
        Ok(Self { pool, quotas: keys_core::Quotas::default(), schema: status })
    }
}

/// This backend's migrations, as this binary knows them.
#[cfg(test)]
pub(crate) fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

/// Checks the schema against this binary ([`schema::judge`]) and applies
/// the pending migrations, under sqlx's advisory lock, which serializes the
/// migrators of every process on the database: the check sees the schema
/// the migrations then change. Boxed as `Send` here, where every lifetime
/// is concrete: left to inference, sqlx's higher-ranked `Acquire` bounds
/// make the compiler unable to prove `open`'s future `Send`, and callers
/// spawn it.
fn migrate(
    pool: &sqlx::PgPool,
    migrations: Migrations,
) -> Pin<Box<dyn Future<Output = StoreResult<SchemaStatus>> + Send + '_>> {
    Box::pin(async move {
        let mut connection = pool.acquire().await.map_err(|source| migration_failed(source.into()))?;
        connection.lock().await.map_err(migration_failed)?;
        let outcome = check_and_apply(&mut connection, migrations).await;
        let unlocked = connection.unlock().await.map_err(migration_failed);
        let status = outcome?;
        unlocked?;
        Ok(status)
    })
}

async fn check_and_apply(connection: &mut PgConnection, migrations: Migrations) -> StoreResult<SchemaStatus> {
    let failed = |source| StoreError::database("PostgreSQL migrations", source);
    let recorded: bool =
        sqlx::query_scalar(schema::HAS_APPLIED_POSTGRES).fetch_one(&mut *connection).await.map_err(failed)?;
    let applied = if recorded {
        schema::applied(&sqlx::query(schema::APPLIED).fetch_all(&mut *connection).await.map_err(failed)?)
            .map_err(failed)?
    } else {
        Vec::new()
    };
    let status = schema::judge(&schema::known(&MIGRATOR), &applied, migrations)?;
    if status.pending > 0 {
        schema::tolerant(&MIGRATOR).run_direct(connection).await.map_err(migration_failed)?;
    }
    Ok(status)
}

fn migration_failed(source: MigrateError) -> StoreError {
    StoreError::Migration { backend: "PostgreSQL", source }
}

/// A connection of its own that `LISTEN`s on [`CHANGES_CHANNEL`]: the
/// `ChangeFeed` of [`crate::CachedStore::following`].
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
            .map_err(database)?;
        let mut listener = PgListener::connect_with(&pool).await.map_err(database)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(database)?;
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
            Err(error) => Err(database(error)),
        }
    }

    async fn reopen(&self) -> StoreResult<Self> {
        Self::connect(&self.options).await
    }
}

/// A statement with its values bound as PostgreSQL takes them: timestamps
/// as `timestamptz`, domain lists as `text[]`.
fn bind(statement: Statement<'_>) -> Query<'_, Postgres, PgArguments> {
    let mut query = sqlx::query(statement.sql);
    for value in statement.values {
        query = match value {
            Value::Text(text) => query.bind(text),
            Value::Bytes(bytes) => query.bind(bytes),
            Value::Flag(flag) => query.bind(flag),
            Value::Integer(integer) => query.bind(integer),
            Value::Time(time) => query.bind(time),
            Value::Domains(domains) => query
                .bind(domains.map(|list| list.iter().map(|pattern| pattern.as_str().to_owned()).collect::<Vec<_>>())),
            Value::Scopes(scopes) => {
                query.bind(scopes.iter().map(|scope| scope.as_str().to_owned()).collect::<Vec<_>>())
            }
            Value::Slugs(slugs) => {
                query.bind(slugs.map(|list| list.iter().map(|slug| slug.as_str().to_owned()).collect::<Vec<_>>()))
            }
        };
    }
    query
}

impl Sql for PgConnection {
    type Row = PgRow;
    /// Lets foreign-key checks of other transactions through, unlike
    /// `FOR UPDATE`, while excluding every other writer of the row.
    const ROW_LOCK: &'static str = " FOR NO KEY UPDATE";
    /// The count migration 0007's triggers keep: a command that adds API
    /// keys has written them by then, so its own trigger holds this row's
    /// lock and its newest version (concurrent one-statement creates
    /// included). Counting the rows instead cost a scan of the workspace's
    /// keys per command: O(n^2) over an import of n keys.
    const LIVE_API_KEYS: &'static str = "SELECT live AS total FROM workspace_api_key_counts WHERE workspace_uid = $1";
    /// A transaction-local setting the trigger of migration 0006 reads.
    const OPEN_AUDIT_PRUNE: &'static str = "SELECT set_config('keysd.audit_prune', $1, true)";
    const CLOSE_AUDIT_PRUNE: &'static str = "SELECT set_config('keysd.audit_prune', '', true)";
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const POSITION: &'static str = "strpos";

    /// Which rule a unique violation stands for, by constraint name.
    fn violated(unique_violation: &dyn sqlx::error::DatabaseError) -> Option<Constraint> {
        match unique_violation.constraint()? {
            "organisations_name_key" => Some(Constraint::OrganisationName),
            "workspaces_organisation_slug_key" => Some(Constraint::WorkspaceSlug),
            "workspace_signing_keys_one_active" => Some(Constraint::ActiveSigningKey),
            "public_keys_one_default" => Some(Constraint::DefaultPublicKey),
            "api_keys_digest_key" => Some(Constraint::ApiKeyDigest),
            _ => None,
        }
    }

    fn fetch_all<'a>(
        &'a mut self,
        statement: Statement<'a>,
    ) -> impl Future<Output = Result<Vec<PgRow>, sqlx::Error>> + Send + 'a {
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
impl Backend for Postgres {
    fn connection(connection: &mut PgConnection) -> WriteConnection<'_> {
        WriteConnection::Postgres(connection)
    }

    async fn writer(pool: &sqlx::Pool<Self>) -> StoreResult<Transaction<'static, Self>> {
        pool.begin().await.map_err(database)
    }

    async fn lock_bootstrap(connection: &mut PgConnection) -> StoreResult<()> {
        let statement =
            Statement { sql: "SELECT pg_advisory_xact_lock($1)", values: vec![Value::Integer(BOOTSTRAP_LOCK)] };
        connection.execute(statement).await.map_err(database)?;
        Ok(())
    }

    async fn announce(connection: &mut PgConnection, change: &Change) -> StoreResult<()> {
        // PostgreSQL queues the notification with the transaction: listeners
        // hear it only after the commit, never after a rollback.
        let payload = change.to_payload();
        let values = vec![Value::Text(Some(CHANGES_CHANNEL)), Value::Text(Some(&payload))];
        connection.execute(Statement { sql: "SELECT pg_notify($1, $2)", values }).await.map_err(database)?;
        Ok(())
    }

    async fn create_api_key_at_once(
        pool: &sqlx::Pool<Self>,
        key: &ApiKey,
        limit: u32,
        attribution: &Attribution,
    ) -> Option<StoreResult<bool>> {
        Some(create_api_key_at_once(pool, key, limit, attribution).await)
    }
}

/// See [`Backend::create_api_key_at_once`]: one statement in autocommit, on
/// a task of its own (a cancelled caller cannot stop it half way; there is
/// no half way, but the connection goes back to the pool clean).
async fn create_api_key_at_once(
    pool: &sqlx::Pool<Postgres>,
    key: &ApiKey,
    limit: u32,
    attribution: &Attribution,
) -> StoreResult<bool> {
    let (pool, key, attribution) = (pool.clone(), key.clone(), attribution.clone());
    crate::pipeline::detached(async move {
        let payload = Change::ApiKey(key.digest).to_payload();
        let token_id = attribution.token_id.as_ref().map(keys_core::ServiceTokenId::as_str);
        let request_id = attribution.request_id.as_ref().map(keys_core::RequestId::as_str);
        let action = AuditAction::ApiKeyGenerated.as_str();
        let statement =
            repo::create_api_key_at_once(&key, limit, (token_id, request_id, action), (CHANGES_CHANNEL, &payload));
        let mut connection = pool.acquire().await.map_err(database)?;
        let rows =
            connection.fetch_all(statement).await.map_err(|error| repo::write_error::<PgConnection>(error, ""))?;
        let row = rows.first().ok_or_else(|| StoreError::Inconsistent("the API-key create returned no row".into()))?;
        let (created, logged, announced) = (row.integer("created")?, row.integer("logged")?, row.integer("announced")?);
        match (created, logged, announced) {
            (1, 1, 1) => Ok(true),
            (0, 0, 0) => Ok(false),
            other => Err(StoreError::Inconsistent(format!("the API-key create wrote {other:?}"))),
        }
    })
    .await
}

/// One typed column of a row.
fn get<'r, T>(row: &'r PgRow, column: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|source| StoreError::database(format!("reading column '{column}'"), source))
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

    fn optional_integer(&self, column: &str) -> StoreResult<Option<i64>> {
        get(self, column).map_err(|_| corrupt("integer", column))
    }
}
