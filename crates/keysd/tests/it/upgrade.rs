//! Upgrades and rollbacks with real binaries (docs/OPERATIONS.md,
//! "Upgrading and rolling back"): the previous release's `keysd` (built
//! once by `cargo xtask previous-release`, which `cargo xtask ci` runs
//! first and names in `KEYSD_PREVIOUS_BINARY`) and this tree's, on one
//! PostgreSQL, serving side by side through this release's migrations with
//! no failed request, then the old one restarted on the new schema, as a
//! rollback or a crash mid-rollout would restart it. And what one binary
//! says of schemas: `--version`, `keysd migrate`, `serve --migrate never`,
//! and the refusal of a schema that needs a newer binary.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use crate::e2e::{keysd, keysd_refused, text, Api, Server};

const BINARY: &str = env!("CARGO_BIN_EXE_keysd");

/// The previous release's binary: `KEYSD_PREVIOUS_BINARY`, else the one
/// `cargo xtask previous-release` leaves beside this tree's `keysd`.
fn previous_release() -> String {
    if let Ok(path) = std::env::var("KEYSD_PREVIOUS_BINARY") {
        return path;
    }
    let sibling = PathBuf::from(BINARY).with_file_name("keysd-previous");
    assert!(
        sibling.exists(),
        "the previous release's keysd is missing: run `cargo xtask previous-release` first (`cargo xtask ci` does)"
    );
    sibling.to_string_lossy().into_owned()
}

/// The schema this tree writes: its number of migrations.
fn schema() -> usize {
    let migrations = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../keys-store/migrations/sqlite");
    std::fs::read_dir(migrations).expect("migrations").count()
}

/// Creates an API key in `staging` through `api`; its id and secret.
async fn create_key(api: &Api, name: &str) -> Option<(String, String)> {
    let created = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": name}))).await;
    (created.status == StatusCode::CREATED).then(|| (text(&created.body["id"]), text(&created.body["api_key"])))
}

/// Traffic against one server until told to stop: each round verifies
/// `secret` and creates a key; every answer that is not the expected one
/// is counted as failed.
struct Load {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(api: Api, secret: String, label: &'static str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (stopping, counting, failing) = (stop.clone(), rounds.clone(), failed.clone());
        let task = tokio::spawn(async move {
            while !stopping.load(Ordering::Relaxed) {
                let round = counting.fetch_add(1, Ordering::Relaxed);
                let verified = api.call(Method::POST, "/v1/verify/api_key/", Some(json!({"api_key": secret}))).await;
                if verified.status != StatusCode::OK || verified.body["valid"] != true {
                    failing.fetch_add(1, Ordering::Relaxed);
                }
                if create_key(&api, &format!("{label}-{round}")).await.is_none() {
                    failing.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { stop, rounds, failed, task }
    }

    /// Stops the traffic; how many rounds ran and how many requests failed.
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        (self.rounds.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// Polls `api` until `secret` verifies as `after`, within a second of
/// `since`.
async fn verifies_within_a_second(api: &Api, secret: &str, after: &str, since: Instant) {
    loop {
        if api.verdict(secret).await == after {
            return;
        }
        assert!(since.elapsed() < Duration::from_secs(1), "{secret:.8}… not {after} a second after the change");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn postgres_the_previous_release_serves_beside_this_one_and_restarts_on_its_schema() {
    let previous = previous_release();
    let backend = keys_testkit::TestDb::postgres().await;

    // The fleet before the rollout: the previous release alone.
    let old = Server::start_binary(&previous, &backend, &[]).await;
    let token = old.token.clone().expect("the previous release bootstraps");
    let old_api = old.client(&token);
    let (_, before) = create_key(&old_api, "before-upgrade").await.expect("created");
    let old_load = Load::start(old.client(&token), before.clone(), "old");

    // The rollout: this release starts on the same database and applies its
    // migrations while the previous one serves.
    let new = Server::start(&backend, &[]).await;
    assert_eq!(new.token, None, "the database is not bootstrapped twice");
    let new_api = new.client(&token);
    let new_load = Load::start(new.client(&token), before.clone(), "new");

    // Writes through either are seen by the other within a second.
    let (_, from_old) = create_key(&old_api, "from-old").await.expect("created");
    verifies_within_a_second(&new_api, &from_old, "valid", Instant::now()).await;
    let (from_new_id, from_new) = create_key(&new_api, "from-new").await.expect("created");
    verifies_within_a_second(&old_api, &from_new, "valid", Instant::now()).await;
    let disabled = new_api.call(Method::PATCH, &format!("/v1/staging/ws_api_key/{from_new_id}/disable/"), None).await;
    assert_eq!(disabled.status, StatusCode::ACCEPTED);
    verifies_within_a_second(&old_api, &from_new, "key_disabled", Instant::now()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    for (load, which) in [(old_load, "previous"), (new_load, "new")] {
        let (rounds, failed) = load.finish().await;
        assert!(rounds > 0, "the {which} release served no traffic");
        assert_eq!(failed, 0, "requests failed on the {which} release during the rollout ({rounds} rounds)");
    }

    // The rollback (or a crash of an old replica mid-rollout): the previous
    // release restarts on the schema this release left, and serves what
    // this one wrote.
    old.stop().await;
    let old = Server::start_binary(&previous, &backend, &[]).await;
    let old_api = old.client(&token);
    assert_eq!(old_api.verdict(&before).await, "valid");
    assert_eq!(old_api.verdict(&from_old).await, "valid");
    assert_eq!(old_api.verdict(&from_new).await, "key_disabled");
    let (_, after_rollback) = create_key(&old_api, "after-rollback").await.expect("created");
    verifies_within_a_second(&new_api, &after_rollback, "valid", Instant::now()).await;

    new.stop().await;
    old.stop().await;
    backend.cleanup().await;
}

#[tokio::test]
async fn a_binary_says_which_schemas_it_serves_and_refuses_the_others() {
    let schema = schema();
    let backend = keys_testkit::TestDb::sqlite();
    let version = std::process::Command::new(BINARY).arg("--version").output().expect("keysd --version");
    let version = String::from_utf8(version.stdout).expect("utf-8");
    assert!(version.starts_with("keysd 0."), "{version}");
    assert!(version.contains(&format!("schema {schema};")), "{version}");

    // `--migrate never` refuses a database that lacks this binary's
    // migrations, naming both versions and what to do.
    let refused = keysd_refused(&backend, &["serve", "--migrate", "never", "--listen", "127.0.0.1:0"]).await;
    assert!(refused.contains("schema is version 0"), "{refused}");
    assert!(refused.contains(&format!("serves schema {schema}")), "{refused}");
    assert!(refused.contains("keysd migrate"), "{refused}");

    // `keysd migrate` applies them once.
    assert_eq!(keysd(&backend, &["migrate"]).await, format!("schema {schema} ({schema} migration(s) applied)"));
    assert_eq!(keysd(&backend, &["migrate"]).await, format!("schema {schema} (0 migration(s) applied)"));
    let server = Server::start(&backend, &["--migrate", "never"]).await;
    assert!(server.token.is_some(), "a migrated, empty database is bootstrapped");
    server.stop().await;

    // The next release's expansion is served; a contraction that needs a
    // newer binary than this one is refused, naming both versions.
    let pool = sqlx::SqlitePool::connect(backend.url()).await.expect("opens");
    let later = |version: usize, description: &str| {
        format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({version}, '{description}', TRUE, X'00', 1)"
        )
    };
    sqlx::query(&later(schema + 1, &format!("usage counts needs {schema}"))).execute(&pool).await.expect("inserts");
    let server = Server::start(&backend, &["--migrate", "never"]).await;
    server.stop().await;
    sqlx::query(&later(schema + 2, &format!("drop old columns needs {}", schema + 1)))
        .execute(&pool)
        .await
        .expect("inserts");
    pool.close().await;
    let refused = keysd_refused(&backend, &["serve", "--listen", "127.0.0.1:0"]).await;
    assert!(refused.contains(&format!("schema is version {}", schema + 2)), "{refused}");
    assert!(refused.contains(&format!("serves schema {schema}")), "{refused}");
    assert!(refused.contains("upgrade keysd"), "{refused}");
    let refused = keysd_refused(&backend, &["migrate"]).await;
    assert!(refused.contains(&format!("needs a binary that serves schema {} or later", schema + 1)), "{refused}");
}
