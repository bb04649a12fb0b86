//! A fresh database per test, on either backend.

use std::path::Path;
use std::sync::Arc;

use keys_store::{CacheConfig, CachedStore, PgStore, SqliteStore, Store};
use rand_core::RngCore;
use sqlx::{Connection, Executor, Row};

/// The server the PostgreSQL tests create their databases on, unless
/// `KEYSD_TEST_DATABASE_URL` names another.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A time to live no test outlives.
pub const LONG_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Which backend a [`TestDb`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database that exists for one test: a SQLite file in a temporary
/// directory, or a `keysd_test_<random>` PostgreSQL database dropped by
/// [`TestDb::cleanup`] or, failing that, when this is dropped. Either way
/// the test also gets a temporary directory of its own ([`TestDb::dir`])
/// for logs and key files.
#[derive(Debug)]
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    /// When set, [`TestDb::store`] opens stores behind the verification
    /// cache with this configuration.
    cache: Option<CacheConfig>,
    directory: tempfile::TempDir,
    /// The admin url and the name of the PostgreSQL database to drop.
    postgres: Option<(String, String)>,
}

fn admin_url() -> String {
    std::env::var("KEYSD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let server = match base[authority_start..].find('/') {
        Some(index) => &base[..authority_start + index],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut connection) = sqlx::PgConnection::connect(admin).await {
        let _ = connection.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await;
    }
}

impl TestDb {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => Self::sqlite(),
            Kind::Postgres => Self::postgres().await,
        }
    }

    /// A fresh SQLite database (the file is made when a store opens it).
    pub fn sqlite() -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", directory.path().join("keysd.db").display());
        Self { kind: Kind::Sqlite, url, cache: None, directory, postgres: None }
    }

    /// A fresh, empty PostgreSQL database.
    pub async fn postgres() -> Self {
        let admin = admin_url();
        let name = format!("keysd_test_{:016x}", rand_core::OsRng.next_u64());
        // No silent skip: CI must run these. An unreachable server fails
        // the test and says how to point it elsewhere.
        let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|error| {
            panic!(
                "PostgreSQL for the tests is unreachable at {admin} ({error}); \
                 start it or set KEYSD_TEST_DATABASE_URL to an admin url"
            )
        });
        connection
            .execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
        connection.close().await.ok();
        let url = with_database(&admin, &name);
        let directory = tempfile::tempdir().expect("temporary directory");
        Self { kind: Kind::Postgres, url, cache: None, directory, postgres: Some((admin, name)) }
    }

    /// A fresh database whose [`TestDb::store`]s sit behind the verification
    /// cache, with entries that never expire during a test: whatever such a
    /// store reads after its own mutation is fresh only because the
    /// mutation invalidated it.
    pub async fn new_cached(kind: Kind) -> Self {
        let mut db = Self::new(kind).await;
        db.cache = Some(CacheConfig { ttl: LONG_TTL, ..CacheConfig::default() });
        db
    }

    /// The database url, as `keysd --database-url` takes it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A temporary directory of this test's own, removed with it.
    pub fn dir(&self) -> &Path {
        self.directory.path()
    }

    /// A new store (its own connection pool) on this database, as another
    /// process would open it.
    pub async fn store(&self) -> Arc<dyn Store> {
        match self.cache {
            Some(config) => self.cached_store(config).await,
            None => match self.kind {
                Kind::Sqlite => Arc::new(self.sqlite_store().await),
                Kind::Postgres => Arc::new(self.postgres_store().await),
            },
        }
    }

    /// A new store behind the verification cache, as `keysd serve` opens
    /// it: on PostgreSQL it follows the changes other stores announce.
    pub async fn cached_store(&self, config: CacheConfig) -> Arc<dyn Store> {
        match self.kind {
            Kind::Sqlite => Arc::new(CachedStore::new(self.sqlite_store().await, config).sole_writer()),
            Kind::Postgres => {
                Arc::new(CachedStore::following(self.postgres_store().await, config).await.expect("listen for changes"))
            }
        }
    }

    pub async fn sqlite_store(&self) -> SqliteStore {
        assert_eq!(self.kind, Kind::Sqlite);
        SqliteStore::open(&self.url).await.expect("open SQLite store")
    }

    pub async fn postgres_store(&self) -> PgStore {
        assert_eq!(self.kind, Kind::Postgres);
        PgStore::connect(&self.url).await.expect("connect PostgreSQL store")
    }

    /// Runs hand-written SQL `statement` on this database below any store
    /// (as another version of keysd or an operator's script would), with
    /// `$1`, `$2`, … bound to `values`: how many rows it changed, or the
    /// database's refusal.
    pub async fn execute(&self, statement: &str, values: &[&str]) -> Result<u64, String> {
        // The same steps on either backend's own connection type.
        macro_rules! execute_on {
            ($connection:ty) => {{
                let mut connection = <$connection>::connect(&self.url).await.expect("connect");
                let query = values.iter().fold(sqlx::query(statement), |query, value| query.bind(*value));
                query.execute(&mut connection).await.map(|done| done.rows_affected())
            }};
        }
        let done = match self.kind {
            Kind::Sqlite => execute_on!(sqlx::SqliteConnection),
            Kind::Postgres => execute_on!(sqlx::PgConnection),
        };
        done.map_err(|error| error.to_string())
    }

    /// Every value of every column of every table, as bytes (text as UTF-8,
    /// blobs raw), listed from the database's own catalog.
    pub async fn every_value(&self) -> Vec<(String, Vec<u8>)> {
        match self.kind {
            Kind::Sqlite => self.every_sqlite_value().await,
            Kind::Postgres => self.every_postgres_value().await,
        }
    }

    async fn every_sqlite_value(&self) -> Vec<(String, Vec<u8>)> {
        let mut values = Vec::new();
        let mut connection = sqlx::SqliteConnection::connect(&self.url).await.expect("connect");
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&mut connection)
                .await
                .expect("tables");
        assert!(tables.iter().any(|table| table == "api_keys"), "no schema found: {tables:?}");
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(&table)
                .fetch_all(&mut connection)
                .await
                .expect("columns");
            for column in columns {
                let rows = sqlx::query(&format!("SELECT CAST(\"{column}\" AS BLOB) AS v FROM \"{table}\""))
                    .fetch_all(&mut connection)
                    .await
                    .expect("values");
                for row in rows {
                    if let Some(value) = row.get::<Option<Vec<u8>>, _>("v") {
                        values.push((format!("{table}.{column}"), value));
                    }
                }
            }
        }
        values
    }

    async fn every_postgres_value(&self) -> Vec<(String, Vec<u8>)> {
        let mut values = Vec::new();
        let mut connection = sqlx::PgConnection::connect(&self.url).await.expect("connect");
        let columns = sqlx::query(
            "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS d \
             FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
        )
        .fetch_all(&mut connection)
        .await
        .expect("columns");
        assert!(columns.iter().any(|row| row.get::<String, _>("t") == "api_keys"), "no schema found");
        for column in columns {
            let (table, name, data_type): (String, String, String) =
                (column.get("t"), column.get("c"), column.get("d"));
            let (query, is_bytes) = if data_type == "bytea" {
                (format!("SELECT \"{name}\" AS v FROM \"{table}\""), true)
            } else {
                (format!("SELECT \"{name}\"::text AS v FROM \"{table}\""), false)
            };
            for row in sqlx::query(&query).fetch_all(&mut connection).await.expect("values") {
                let value = if is_bytes {
                    row.get::<Option<Vec<u8>>, _>("v")
                } else {
                    row.get::<Option<String>, _>("v").map(String::into_bytes)
                };
                if let Some(value) = value {
                    values.push((format!("{table}.{name}"), value));
                }
            }
        }
        values
    }

    /// The raw bytes of the SQLite database and its WAL (empty for
    /// PostgreSQL), for a scan below the SQL level.
    pub fn raw_files(&self) -> Vec<Vec<u8>> {
        if self.kind != Kind::Sqlite {
            return Vec::new();
        }
        std::fs::read_dir(self.directory.path())
            .expect("read temporary directory")
            .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
            .collect()
    }

    /// Drops the PostgreSQL database now (every server using it must be
    /// stopped first); the temporary directory goes with `self`.
    pub async fn cleanup(mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            drop_database(&admin, &name).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else { return };
        // Best effort, and on a thread of its own: `Drop` cannot await, and
        // the test's runtime may be shutting down.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(drop_database(&admin, &name));
            Some(())
        });
        let _ = dropper.join();
    }
}

/// Instantiates each `journey(TestDb)` as two tests, one on a fresh SQLite
/// file and one on a fresh PostgreSQL database, named as given: the one way
/// the suites run a test on both backends.
///
/// ```ignore
/// keys_testkit::on_both_backends! {
///     gateway_journey => sqlite_gateway, postgres_gateway;
/// }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($($journey:path => $sqlite:ident, $postgres:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $sqlite() {
                $journey($crate::TestDb::new($crate::Kind::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $postgres() {
                $journey($crate::TestDb::new($crate::Kind::Postgres).await).await;
            }
        )*
    };
}
