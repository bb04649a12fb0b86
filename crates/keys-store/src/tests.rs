//! Belt and braces: the schema's unique indexes refuse what the domain
//! refuses, and their violations come back as the domain's refusals. The
//! store's own paths never reach them (the domain refuses first, under the
//! aggregate's lock), so these tests write through the statements of
//! [`crate::repo`] directly, bypassing the commands and their rings.

#![allow(clippy::unwrap_used)]

use keys_core::{
    Actor, CoreError, Mode, Name, NewSigningKey, NewWorkspace, Organisation, OrganisationId, PublicKeyId,
    PublicKeyRing, SigningKeyId, SigningKeyRing, SigningKeyUid, Workspace, WorkspaceSlug,
};
// Only the kit's databases, by url: its stores belong to the keys-store the
// kit links, not to the one these unit tests are compiled into.
use keys_testkit::{Kind, TestDb};
use rand_chacha::rand_core::SeedableRng;
use time::macros::datetime;

use crate::commands::AuditAction;
use crate::error::Conflict;
use crate::pipeline::{Backend, SqlStore};
use crate::repo;
use crate::{Management, StoreError};

struct Fixture {
    organisation: Organisation,
    workspace: Workspace,
    actor: Actor,
    rng: rand_chacha::ChaCha8Rng,
}

fn fixture() -> Fixture {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let now = datetime!(2026-04-21 12:00 UTC);
    let organisation = Organisation::create(OrganisationId::generate(now, &mut rng), Name::parse("acme").unwrap(), now);
    let new = NewWorkspace {
        name: Name::parse("Demo").unwrap(),
        slug: Some(WorkspaceSlug::parse("demo").unwrap()),
        description: None,
        mode: Some(Mode::Sandbox),
    };
    let workspace = Workspace::create(organisation.id.clone(), new, None, now, &mut rng).unwrap();
    Fixture { organisation, workspace, actor: Actor::new("Ada", "ada@example.com"), rng }
}

impl Fixture {
    /// A public key of the fixture's workspace named `name`, with the value
    /// `SS.PUBK.{name}`, as `ring` creates it.
    fn public_key(&mut self, ring: &mut PublicKeyRing, name: &str, now: time::OffsetDateTime) -> keys_core::PublicKey {
        let id = PublicKeyId::generate(now, &mut self.rng);
        let value = format!("SS.PUBK.{name}");
        ring.create(
            keys_core::NewPublicKey {
                id,
                workspace: self.workspace.uid.clone(),
                value,
                name: Name::parse(name).unwrap(),
                description: None,
            },
            &self.actor,
            now,
        )
        .clone()
    }
}

fn expect_refused(result: Result<(), StoreError>, expected: CoreError) {
    match result {
        Err(StoreError::Refused(refusal)) => assert_eq!(refusal, expected),
        other => panic!("expected Refused({expected:?}), got {other:?}"),
    }
}

fn expect_conflict(result: Result<(), StoreError>, expected: Conflict) {
    match result {
        Err(StoreError::Conflict(conflict)) => assert_eq!(conflict, expected),
        other => panic!("expected Conflict({expected:?}), got {other:?}"),
    }
}

async fn unique_violations_become_refusals<DB: Backend>(store: &SqlStore<DB>) {
    let mut fixture = fixture();
    let now = datetime!(2026-04-21 12:00:01 UTC);
    let mut writer = DB::writer(&store.pool).await.unwrap();
    repo::insert_organisation(&mut *writer, &fixture.organisation).await.unwrap();
    repo::insert_workspace(&mut *writer, &fixture.workspace).await.unwrap();
    let mut ring = SigningKeyRing::restore(fixture.workspace.uid.clone(), Vec::new());
    let material = |rng: &mut rand_chacha::ChaCha8Rng| NewSigningKey {
        id: SigningKeyId::generate(now, rng),
        uid: SigningKeyUid::generate(now, rng),
        public_key_pem: "-----BEGIN PUBLIC KEY-----\nstand-in\n-----END PUBLIC KEY-----\n".to_owned(),
    };
    let active = ring.create(material(&mut fixture.rng), &fixture.actor, now).unwrap().clone();
    repo::insert_signing_key(&mut *writer, &active).await.unwrap();
    let mut public_keys = PublicKeyRing::default();
    let default = fixture.public_key(&mut public_keys, "one", now);
    repo::insert_public_key(&mut *writer, &default).await.unwrap();
    writer.commit().await.unwrap();

    // Each violation in a transaction of its own: PostgreSQL aborts the
    // transaction a failed statement ran in. (Each is dropped, so rolled
    // back, before the next begins: SQLite has one writer at a time.)
    let mut writer = DB::writer(&store.pool).await.unwrap();
    let twin =
        Organisation::create(OrganisationId::generate(now, &mut fixture.rng), fixture.organisation.name.clone(), now);
    expect_conflict(
        repo::insert_organisation(&mut *writer, &twin).await,
        Conflict::OrganisationNameTaken("acme".into()),
    );

    drop(writer);
    let mut writer = DB::writer(&store.pool).await.unwrap();
    let mut twin = fixture.workspace.clone();
    twin.uid = keys_core::WorkspaceUid::generate(now, &mut fixture.rng);
    expect_conflict(repo::insert_workspace(&mut *writer, &twin).await, Conflict::SlugTaken("demo".into()));

    // A second active key, as a ring that did not see the first would make.
    drop(writer);
    let mut writer = DB::writer(&store.pool).await.unwrap();
    let mut blind = SigningKeyRing::restore(fixture.workspace.uid.clone(), Vec::new());
    let second = blind.create(material(&mut fixture.rng), &fixture.actor, now).unwrap().clone();
    expect_refused(repo::insert_signing_key(&mut *writer, &second).await, CoreError::OnlyOneActiveSigningKey);

    // A second default public key has no domain refusal: a fault.
    drop(writer);
    let mut writer = DB::writer(&store.pool).await.unwrap();
    let mut blind = PublicKeyRing::default();
    let second_default = fixture.public_key(&mut blind, "two", now);
    assert!(matches!(repo::insert_public_key(&mut *writer, &second_default).await, Err(StoreError::Database { .. })));
    drop(writer);

    // Nothing of the refused writes is left behind.
    let mut reader = store.pool.acquire().await.unwrap();
    assert_eq!(repo::count_organisations(&mut *reader).await.unwrap(), 1);
    assert_eq!(repo::live_signing_keys(&mut *reader, &fixture.workspace.uid).await.unwrap(), vec![active.clone()]);
    assert_eq!(repo::live_public_keys(&mut *reader, &fixture.workspace.uid).await.unwrap(), vec![default]);
    drop(reader);

    // A deleted row is never written again: its save finds no live row.
    let mut writer = DB::writer(&store.pool).await.unwrap();
    let mut ring = SigningKeyRing::restore(fixture.workspace.uid.clone(), vec![active.clone()]);
    let deleted = ring.delete(&active.uid, &fixture.actor, now).unwrap();
    repo::save_signing_key(&mut *writer, &deleted).await.unwrap();
    let again = repo::save_signing_key(&mut *writer, &deleted).await;
    assert!(matches!(again, Err(StoreError::Inconsistent(_))), "{again:?}");
}

/// keys-core's `LiveAdmin` decides who is a live admin token; the count a
/// revocation reads (`repo::other_live_admin_tokens`) restates it in SQL.
/// Both halves agree on the edges: an expiry at exactly `now`, a revoked
/// token, roles other than admin.
async fn live_admin_counts_agree_with_keys_core<DB: Backend>(store: &SqlStore<DB>) {
    use keys_core::{NewServiceToken, Role, SecretDigest, ServiceTokenId, ServiceTokenMaterial, ServiceTokenRecord};
    let mut fixture = fixture();
    let now = datetime!(2026-04-22 12:00 UTC);
    let (before, second) = (datetime!(2026-04-21 12:00 UTC), time::Duration::seconds(1));
    let cases: [(Role, Option<time::OffsetDateTime>, bool); 7] = [
        (Role::Admin, None, false),
        (Role::Admin, Some(now), false),
        (Role::Admin, Some(now + second), false),
        (Role::Admin, Some(now - second), false),
        (Role::Admin, None, true),
        (Role::Manage, None, false),
        (Role::Verify, None, false),
    ];
    let mut tokens = Vec::new();
    for (index, (role, expires_at, revoked)) in cases.into_iter().enumerate() {
        let material = ServiceTokenMaterial {
            id: ServiceTokenId::generate(before, &mut fixture.rng),
            digest: SecretDigest::from_bytes([u8::try_from(index).unwrap(); 32]),
            masked_token: "kst_abcdef*****".to_owned(),
        };
        let mut new = NewServiceToken::admin(Name::parse(&format!("token {index}")).unwrap());
        (new.role, new.expires_at) = (role, expires_at);
        let mut token = ServiceTokenRecord::create(material, &fixture.organisation, new, None, before).unwrap();
        if revoked {
            token.revoke(1, None, before + second).unwrap();
        }
        tokens.push(token);
    }
    let mut writer = DB::writer(&store.pool).await.unwrap();
    repo::insert_organisation(&mut *writer, &fixture.organisation).await.unwrap();
    for token in &tokens {
        repo::insert_service_token(&mut *writer, token).await.unwrap();
    }
    writer.commit().await.unwrap();

    let mut reader = store.pool.acquire().await.unwrap();
    let live: Vec<bool> = tokens.iter().map(|token| token.is_live_admin(now)).collect();
    assert_eq!(live, [true, false, true, false, false, false, false], "keys-core's edges");
    for token in &tokens {
        let counted = repo::other_live_admin_tokens(&mut *reader, &fixture.organisation.id, &token.id, now).await;
        let expected = tokens.iter().filter(|other| other.id != token.id && other.is_live_admin(now)).count();
        assert_eq!(counted.unwrap(), u64::try_from(expected).unwrap(), "all but {}", token.name.as_str());
    }
}

/// Runs the check `$check`, generic over the backend, on this crate's store
/// on `$db`, then closes the store and drops the database. A macro because
/// the store's type differs by backend and a check is a generic function.
macro_rules! on_sql_store {
    ($db:expr, $check:path) => {{
        let db: TestDb = $db;
        match db.kind {
            Kind::Sqlite => {
                let store = crate::SqliteStore::open(db.url()).await.unwrap();
                $check(&store).await;
                store.close().await;
            }
            Kind::Postgres => {
                let store = crate::PgStore::connect(db.url()).await.unwrap();
                $check(&store).await;
                store.close().await;
            }
        }
        db.cleanup().await;
    }};
}

/// Events a later release records under actions this one does not know
/// are served (their names kept, their target kind the part before the
/// dot), so that this release reads the trail of the next one's schema; a
/// stored action not shaped like one is still corrupt.
async fn later_actions_are_served<DB: Backend>(store: &SqlStore<DB>) {
    let organisation = fixture().organisation;
    const INSERT: &str = "INSERT INTO audit_events (organisation_id, action, target_id, at) VALUES ($1, $2, $3, $4)";
    let insert = async |action: &'static str, target: &'static str, seconds: i64| {
        let mut writer = DB::writer(&store.pool).await.unwrap();
        let values = vec![
            repo::Value::Text(Some(organisation.id.as_str())),
            repo::Value::Text(Some(action)),
            repo::Value::Text(Some(target)),
            repo::Value::Time(Some(organisation.created_at + time::Duration::seconds(seconds))),
        ];
        repo::Sql::execute(&mut *writer, repo::Statement { sql: INSERT, values }).await.unwrap();
        writer.commit().await.unwrap();
    };
    let mut writer = DB::writer(&store.pool).await.unwrap();
    repo::insert_organisation(&mut *writer, &organisation).await.unwrap();
    writer.commit().await.unwrap();
    insert("vault_secret.created", "vs_1", 1).await;
    insert("credits.low", "ws_apik_1", 2).await;
    let events = store.audit_events(&organisation.id, 10).await.unwrap();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|event| (event.action.as_str(), event.action.target_type(), event.target_id.as_str()))
        .collect();
    assert_eq!(seen, [("credits.low", "credits", "ws_apik_1"), ("vault_secret.created", "vault_secret", "vs_1")]);
    assert_eq!(AuditAction::parse("vault_secret.created"), None, "not a filter this release offers");
    insert("Robert'); DROP TABLE audit_events;--", "x", 3).await;
    assert!(matches!(store.audit_events(&organisation.id, 10).await, Err(StoreError::Inconsistent(_))));
}

async fn later_actions_journey(db: TestDb) {
    on_sql_store!(db, later_actions_are_served);
}

async fn unique_violations_journey(db: TestDb) {
    on_sql_store!(db, unique_violations_become_refusals);
}

async fn live_admin_counts_journey(db: TestDb) {
    on_sql_store!(db, live_admin_counts_agree_with_keys_core);
}

keys_testkit::on_both_backends! {
    later_actions_journey => sqlite_later_audit_actions_are_served, postgres_later_audit_actions_are_served;
    unique_violations_journey =>
        sqlite_unique_violations_become_refusals, postgres_unique_violations_become_refusals;
    live_admin_counts_journey =>
        sqlite_live_admin_counts_agree_with_keys_core, postgres_live_admin_counts_agree_with_keys_core;
}

/// The action names of the first schema, and what migration 0002 renames
/// each of them to.
const RENAMED_ACTIONS: [(&str, AuditAction); 14] = [
    ("organisation.create", AuditAction::OrganisationCreated),
    ("workspace.create", AuditAction::WorkspaceCreated),
    ("service_token.create", AuditAction::ServiceTokenGenerated),
    ("api_key.create", AuditAction::ApiKeyGenerated),
    ("api_key.delete", AuditAction::ApiKeyDeleted),
    ("public_key.create", AuditAction::PublicApiKeyGenerated),
    ("public_key.update", AuditAction::PublicApiKeyUpdated),
    ("public_key.rotate", AuditAction::PublicApiKeyRotated),
    ("public_key.delete", AuditAction::PublicApiKeyDeleted),
    ("signing_key.create", AuditAction::SigningApiKeyGenerated),
    ("signing_key.roll", AuditAction::SigningApiKeyRolled),
    ("signing_key.delete", AuditAction::SigningApiKeyDeleted),
    ("organisation_key.create", AuditAction::OrganisationKeyGenerated),
    ("organisation_key.delete", AuditAction::OrganisationKeyDeleted),
];

/// A migrator of the first migration of `backend` alone, as a database
/// written by the first release has it.
async fn first_migration(backend: &str, directory: &std::path::Path) -> sqlx::migrate::Migrator {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    std::fs::copy(source.join("0001_initial.sql"), directory.join("0001_initial.sql")).unwrap();
    sqlx::migrate::Migrator::new(directory).await.unwrap()
}

/// Writes one event under each old name, then (after the caller migrated)
/// checks that every one carries its new name.
async fn write_old_actions<C: repo::Sql + ?Sized>(connection: &mut C, organisation: &Organisation) {
    repo::insert_organisation(connection, organisation).await.unwrap();
    // The columns of the first schema only: today's insert names columns
    // later migrations added.
    const INSERT: &str = "INSERT INTO audit_events (organisation_id, action, target_id, at) VALUES ($1, $2, $1, $3)";
    for (old, _) in RENAMED_ACTIONS {
        let organisation_id = repo::Value::Text(Some(organisation.id.as_str()));
        let values =
            vec![organisation_id, repo::Value::Text(Some(old)), repo::Value::Time(Some(organisation.created_at))];
        connection.execute(repo::Statement { sql: INSERT, values }).await.unwrap();
    }
}

async fn expect_new_actions(store: &impl Management, organisation: &Organisation) {
    let events = store.audit_events(&organisation.id, 100).await.unwrap();
    let actions: Vec<AuditAction> = events.iter().rev().map(|event| event.action).collect();
    assert_eq!(actions, RENAMED_ACTIONS.map(|(_, new)| new));
}

/// Migrates a database of `backend`'s first schema holding events under the
/// old action names, opens the store on it and checks the new names.
async fn old_actions_are_renamed<DB, S>(
    backend: &str,
    migrations: &std::path::Path,
    pool: sqlx::Pool<DB>,
    open: impl AsyncFnOnce(sqlx::Pool<DB>) -> S,
) -> S
where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate + repo::Sql,
    S: Management,
{
    first_migration(backend, migrations).await.run(&pool).await.unwrap();
    let organisation = fixture().organisation;
    write_old_actions(&mut *pool.acquire().await.unwrap(), &organisation).await;
    let store = open(pool).await;
    expect_new_actions(&store, &organisation).await;
    store
}

#[tokio::test]
async fn sqlite_migration_renames_old_audit_actions() {
    let db = TestDb::sqlite();
    let migrations = tempfile::tempdir().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url())).await.unwrap();
    let from_pool = async |pool| crate::SqliteStore::from_pool(pool).await.unwrap();
    old_actions_are_renamed("sqlite", migrations.path(), pool, from_pool).await;
}

#[tokio::test]
async fn postgres_migration_renames_old_audit_actions() {
    let db = TestDb::postgres().await;
    let migrations = tempfile::tempdir().unwrap();
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let store = old_actions_are_renamed("postgres", migrations.path(), pool, async |pool| {
        crate::PgStore::from_pool(pool).await.unwrap()
    })
    .await;
    store.close().await;
    db.cleanup().await;
}

/// Every action docs/API.md lists under Audit events, in its order, and nothing else
/// (besides `organisation.created`, which the CLI's organisations write).
#[test]
fn audit_actions_are_the_specs() {
    const SPEC: [&str; 25] = [
        "workspace.created",
        "workspace.updated",
        "api_key.generated",
        "api_key.updated",
        "api_key.disabled",
        "api_key.enabled",
        "api_key.rolled",
        "api_key.deleted",
        "api_key.imported",
        "api_key.leaked",
        "api_key.credits_updated",
        "identity.updated",
        "identity.deleted",
        "public_api_key.generated",
        "public_api_key.updated",
        "public_api_key.rotated",
        "public_api_key.deleted",
        "signing_api_key.generated",
        "signing_api_key.rolled",
        "signing_api_key.deleted",
        "organisation_key.generated",
        "organisation_key.deleted",
        "service_token.generated",
        "service_token.revoked",
        "audit.pruned",
    ];
    for name in SPEC {
        assert!(AuditAction::parse(name).is_some(), "{name} is not an AuditAction");
    }
    let extra: Vec<&str> =
        AuditAction::ALL.iter().map(|action| action.as_str()).filter(|name| !SPEC.contains(name)).collect();
    // `organisation.created` (the CLI's), and the endpoints of SPEC 14,
    // which names `webhook_endpoint.disabled` and audits every change.
    assert_eq!(
        extra,
        [
            "organisation.created",
            "webhook_endpoint.created",
            "webhook_endpoint.updated",
            "webhook_endpoint.secret_rotated",
            "webhook_endpoint.deleted",
            "webhook_endpoint.disabled",
        ]
    );
}

#[test]
fn audit_actions_round_trip_through_their_names() {
    for action in AuditAction::ALL {
        assert_eq!(AuditAction::parse(action.as_str()), Some(action));
    }
    assert_eq!(AuditAction::parse("api_key.create"), None);
}

// ------------------------------------------------ schemas of later releases

#[test]
fn this_binarys_migrations_need_nothing_newer_than_themselves() {
    // One numbering for both backends: `schema_support` reads SQLite's.
    let versions = |migrator| crate::schema::known(migrator).iter().map(|known| known.version).collect::<Vec<_>>();
    assert_eq!(versions(crate::sqlite::migrator()), versions(crate::postgres::migrator()));
    for migrator in [crate::sqlite::migrator(), crate::postgres::migrator()] {
        let known: Vec<i64> = crate::schema::known(migrator).iter().map(|migration| migration.version).collect();
        for migration in migrator.iter() {
            if let Some(needed) = crate::schema::needs(&migration.description) {
                assert!(needed < migration.version, "migration {} needs {needed}", migration.version);
                assert!(known.contains(&needed), "migration {} needs unknown {needed}", migration.version);
            }
        }
    }
}

/// A newer release's migration, written into sqlx's table as sqlx
/// would (`checksum` is the backend's literal of some bytes).
fn later_migration(version: i64, description: &str, checksum: &str) -> String {
    format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ({version}, '{description}', TRUE, {checksum}, 1)"
    )
}

/// The life of one database through releases this binary does not know:
/// refused under `Require` while fresh, migrated, then served as the
/// next releases expand it and contract what this binary no longer
/// needs, until a contraction needs a schema newer than its own.
async fn later_releases_journey(
    checksum: &str,
    execute: impl AsyncFn(String),
    open: impl AsyncFn(crate::Migrations) -> crate::StoreResult<crate::SchemaStatus>,
) {
    let binary = crate::schema_support().version;
    let Err(crate::StoreError::Schema(behind)) = open(crate::Migrations::Require).await else {
        panic!("fresh: refused")
    };
    assert_eq!(behind, crate::SchemaError::Behind { database: 0, binary });
    let migrated = open(crate::Migrations::Apply).await.expect("migrates");
    assert_eq!(migrated, crate::SchemaStatus { database: 0, binary, pending: usize::try_from(binary).expect("small") });
    execute("CREATE TABLE next_release_usage (key_id TEXT NOT NULL, count BIGINT NOT NULL DEFAULT 0)".to_owned()).await;
    execute(later_migration(binary + 1, &format!("usage counts needs {binary}"), checksum)).await;
    execute(later_migration(binary + 2, "drop old column needs 0007", checksum)).await;
    let served = open(crate::Migrations::Require).await.expect("the next release's schema is served");
    assert_eq!(served, crate::SchemaStatus { database: binary + 2, binary, pending: 0 });
    execute(later_migration(binary + 3, &format!("drop newer column needs {}", binary + 1), checksum)).await;
    let Err(crate::StoreError::Schema(too_new)) = open(crate::Migrations::Apply).await else { panic!("refused") };
    assert_eq!(
        too_new,
        crate::SchemaError::TooNew {
            database: binary + 3,
            binary,
            migration: binary + 3,
            description: format!("drop newer column needs {}", binary + 1),
            needs: binary + 1
        }
    );
}

#[tokio::test]
async fn sqlite_serves_later_schemas_until_one_needs_a_newer_binary() {
    let db = keys_testkit::TestDb::sqlite();
    let url = db.url().to_owned();
    let execute = async |sql: String| {
        let store = crate::SqliteStore::open(&url).await.expect("opens");
        sqlx::query(&sql).execute(store.pool()).await.expect("executes");
        store.close().await;
    };
    let open = async |migrations| {
        let store = crate::SqliteStore::open_with(&url, migrations).await?;
        store.close().await;
        Ok(store.schema())
    };
    later_releases_journey("X'00'", execute, open).await;
}

#[tokio::test]
async fn postgres_serves_later_schemas_until_one_needs_a_newer_binary() {
    let db = keys_testkit::TestDb::postgres().await;
    let url = db.url().to_owned();
    let pool = sqlx::PgPool::connect(&url).await.expect("connects");
    let execute = async |sql: String| {
        sqlx::query(&sql).execute(&pool).await.expect("executes");
    };
    let open = async |migrations| {
        let store = crate::PgStore::connect_with_migrations(&url, migrations).await?;
        store.close().await;
        Ok(store.schema())
    };
    later_releases_journey("'\\x00'::bytea", execute, open).await;
    pool.close().await;
    db.cleanup().await;
}
