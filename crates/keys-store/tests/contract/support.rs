//! The harness of the contract suite: a fresh database per test on either
//! backend, and a deterministic world (seeded randomness, a hand-driven
//! clock) to fill it with.

use std::sync::Arc;

use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyProfile, CoreError, Description, Mode, Name, NewSigningKey,
    NewWorkspace, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, PublicKeyId, SecretDigest,
    ServiceTokenId, ServiceTokenRecord, SigningKeyId, SigningKeyUid, Workspace, WorkspaceSlug,
};
use keys_store::{Bootstrap, CacheConfig, CachedStore, Conflict, PgStore, SqliteStore, Store, StoreError, StoreResult};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use sqlx::{Connection, Executor, Row};
use time::{Duration, OffsetDateTime};

/// A time to live no test outlives.
pub const LONG_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The server the PostgreSQL half of the suite creates its databases on.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database that exists for one test: a temporary SQLite file, or a
/// `keysd_test_<random>` PostgreSQL database dropped when this is dropped.
#[derive(Debug)]
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    /// When set, [`TestDb::store`] opens stores behind the verification
    /// cache with this configuration.
    cache: Option<CacheConfig>,
    directory: Option<tempfile::TempDir>,
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

impl TestDb {
    pub async fn new(kind: Kind) -> Self {
        match kind {
            Kind::Sqlite => {
                let directory = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", directory.path().join("keysd.db").display());
                Self { kind, url, cache: None, directory: Some(directory), postgres: None }
            }
            Kind::Postgres => {
                let admin = admin_url();
                let name = format!("keysd_test_{:016x}", rand_core::OsRng.next_u64());
                // No silent skip: CI must run these. An unreachable server
                // fails the test and says how to point it elsewhere.
                let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|error| {
                    panic!(
                        "PostgreSQL for the contract suite is unreachable at {admin} ({error}); \
                         start it or set KEYSD_TEST_DATABASE_URL to an admin url"
                    )
                });
                connection
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
                connection.close().await.ok();
                let url = with_database(&admin, &name);
                Self { kind, url, cache: None, directory: None, postgres: Some((admin, name)) }
            }
        }
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
            Kind::Sqlite => Arc::new(CachedStore::new(self.sqlite_store().await, config)),
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

    /// Every value of every column of every table, as bytes (text as UTF-8,
    /// blobs raw), listed from the database's own catalog.
    pub async fn every_value(&self) -> Vec<(String, Vec<u8>)> {
        let mut values = Vec::new();
        match self.kind {
            Kind::Sqlite => {
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
            }
            Kind::Postgres => {
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
            }
        }
        values
    }

    /// The raw bytes of the SQLite database and its WAL (empty for
    /// PostgreSQL), for a scan below the SQL level.
    pub fn raw_files(&self) -> Vec<Vec<u8>> {
        let Some(directory) = &self.directory else { return Vec::new() };
        std::fs::read_dir(directory.path())
            .expect("read temporary directory")
            .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else { return };
        // Best effort, and on a thread of its own: `Drop` cannot await, and
        // the test's runtime may be shutting down.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut connection = sqlx::PgConnection::connect(&admin).await.ok()?;
                connection.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await.ok()
            })
        });
        let _ = dropper.join();
    }
}

/// A deterministic source of entities: seeded randomness and a clock that
/// only moves when told to.
#[derive(Debug)]
pub struct World {
    pub rng: ChaCha8Rng,
    pub now: OffsetDateTime,
    pub actor: Actor,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
            actor: Actor::new("Ada Lovelace", "ada@example.com"),
        }
    }

    /// Moves the clock by `micros` microseconds and returns the new time.
    pub fn tick(&mut self, micros: i64) -> OffsetDateTime {
        self.now += Duration::microseconds(micros);
        self.now
    }

    pub fn digest(&mut self) -> SecretDigest {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        SecretDigest::from_bytes(bytes)
    }

    /// `len` base64url characters.
    pub fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len).map(|_| ALPHABET[(self.rng.next_u32() % 64) as usize] as char).collect()
    }

    pub fn organisation(&mut self, name: &str) -> Organisation {
        let now = self.tick(1);
        Organisation::create(OrganisationId::generate(now, &mut self.rng), name_of(name), now)
    }

    pub fn workspace(&mut self, organisation: &Organisation, slug: &str) -> Workspace {
        let now = self.tick(1);
        let new = NewWorkspace {
            name: name_of(&format!("Workspace {slug}")),
            slug: Some(WorkspaceSlug::parse(slug).expect("slug")),
            description: Description::parse(Some("for tests")).expect("description"),
            mode: Some(Mode::Production),
        };
        Workspace::create(organisation.id.clone(), new, Some(&organisation.system_actor()), now, &mut self.rng)
            .expect("workspace")
    }

    pub fn service_token(&mut self, organisation: &Organisation) -> ServiceTokenRecord {
        let now = self.tick(1);
        let digest = self.digest();
        ServiceTokenRecord::create(
            ServiceTokenId::generate(now, &mut self.rng),
            organisation,
            name_of("ci"),
            digest,
            now,
        )
    }

    pub fn bootstrap(&mut self, name: &str) -> Bootstrap {
        let organisation = self.organisation(name);
        let workspaces = vec![self.workspace(&organisation, "staging"), self.workspace(&organisation, "production")];
        let token = self.service_token(&organisation);
        Bootstrap { organisation, workspaces, token }
    }

    pub fn api_key(&mut self, workspace: &Workspace, name: &str) -> ApiKey {
        self.api_key_with(workspace, ApiKeyProfile::named(name_of(name)))
    }

    /// A new active key of `workspace` with this profile.
    pub fn api_key_with(&mut self, workspace: &Workspace, profile: ApiKeyProfile) -> ApiKey {
        let material = self.api_key_material();
        let new = keys_core::NewApiKey { workspace: workspace.uid.clone(), material, profile };
        ApiKey::create(new, &self.actor, self.now).expect("a valid key")
    }

    /// Fresh traces of a secret: an id, a digest, a masked prefix.
    pub fn api_key_material(&mut self) -> ApiKeyMaterial {
        let (now, digest) = (self.now, self.digest());
        let masked_api_key = format!("SS.{}*****", self.text(7));
        ApiKeyMaterial { id: ApiKeyId::generate(now, &mut self.rng), digest, masked_api_key }
    }

    pub fn public_key_id(&mut self) -> PublicKeyId {
        PublicKeyId::generate(self.now, &mut self.rng)
    }

    pub fn public_key_value(&mut self) -> String {
        format!("SS.PUBK.{}", self.text(43))
    }

    /// A new public key of `workspace` named `name`, with a fresh id and value.
    pub fn new_public_key(&mut self, workspace: &keys_core::WorkspaceUid, name: &str) -> keys_core::NewPublicKey {
        let (id, value) = (self.public_key_id(), self.public_key_value());
        keys_core::NewPublicKey { id, workspace: workspace.clone(), value, name: name_of(name), description: None }
    }

    /// Key material with a stand-in public key PEM (the store never looks
    /// inside it).
    pub fn signing_key(&mut self) -> NewSigningKey {
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", self.text(64));
        self.signing_key_with_pem(pem)
    }

    pub fn signing_key_with_pem(&mut self, public_key_pem: String) -> NewSigningKey {
        NewSigningKey {
            id: SigningKeyId::generate(self.now, &mut self.rng),
            uid: SigningKeyUid::generate(self.now, &mut self.rng),
            public_key_pem,
        }
    }

    pub fn organisation_key(&mut self, organisation: &Organisation, name: &str) -> OrganisationSigningKey {
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", self.text(64));
        self.organisation_key_with_pem(organisation, name, pem)
    }

    pub fn organisation_key_with_pem(
        &mut self,
        organisation: &Organisation,
        name: &str,
        pem: String,
    ) -> OrganisationSigningKey {
        OrganisationSigningKey::create(
            OrganisationKeyId::generate(self.now, &mut self.rng),
            organisation.id.clone(),
            name_of(name),
            pem,
            &self.actor,
            self.now,
        )
    }
}

pub fn name_of(text: &str) -> Name {
    Name::parse(text).expect("name")
}

/// A client error a store call is expected to fail with: a refusal of the
/// domain, something missing, or a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Refused(CoreError),
    NotFound(&'static str),
    Conflict(Conflict),
}

impl From<CoreError> for Expected {
    fn from(refusal: CoreError) -> Self {
        Self::Refused(refusal)
    }
}

impl From<Conflict> for Expected {
    fn from(conflict: Conflict) -> Self {
        Self::Conflict(conflict)
    }
}

/// The store's "not found" for `kind`.
pub fn not_found(kind: &'static str) -> Expected {
    Expected::NotFound(kind)
}

impl Expected {
    /// The client error `error` is, if it is one.
    pub fn of(error: &StoreError) -> Option<Self> {
        match error {
            StoreError::Refused(refusal) => Some(Self::Refused(refusal.clone())),
            StoreError::NotFound { kind } => Some(Self::NotFound(kind)),
            StoreError::Conflict(conflict) => Some(Self::Conflict(conflict.clone())),
            _ => None,
        }
    }
}

/// Asserts that a store call failed with the client error `expected`.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: StoreResult<T>, expected: impl Into<Expected>) {
    let expected = expected.into();
    match &result {
        Err(error) if Expected::of(error).as_ref() == Some(&expected) => {}
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}
