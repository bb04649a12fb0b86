//! Backups that restore, drilled as an operator would: `keysd serve` on a
//! database while concurrent writers create API keys and workspaces and
//! disable keys over HTTP; a backup taken in the middle of it (`keysd
//! backup --to` on SQLite, `pg_dump -Fc` on PostgreSQL); more writes; the
//! server stopped; the backup restored (the copy moved into place, or
//! `pg_restore` into a fresh database) and served. Every write acknowledged
//! before the backup began is in the restored database, no write sent after
//! it ended is, each restored key verifies by its secret, and the audit
//! trail is the original's, in order, up to the backup.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use http::{Method, StatusCode};
use keys_testkit::{Kind, TestDb};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::e2e::{keysd, keysd_refused, text, Api, Server};

/// Concurrent writers.
const WRITERS: usize = 4;
/// Writes acknowledged before the backup begins.
const BEFORE: usize = 24;
/// Writes sent after the backup ended, before the writers stop.
const AFTER: usize = 12;

/// A write keysd acknowledged.
#[derive(Debug, Clone)]
enum Write {
    ApiKey { id: String, secret: String },
    Workspace { uid: String, slug: String },
    Disable { id: String },
}

/// A write, when its request was sent and when its answer came back.
#[derive(Debug, Clone)]
struct Acknowledged {
    write: Write,
    sent: Instant,
    acknowledged: Instant,
}

/// Sends one write and records it once keysd answers with `expected`.
async fn acknowledged(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
    expected: StatusCode,
    write: impl FnOnce(&Value) -> Write,
) -> Acknowledged {
    let sent = Instant::now();
    let reply = api.call(method, path, body).await;
    let acknowledged = Instant::now();
    assert_eq!(reply.status, expected, "{path}: {}", reply.body);
    Acknowledged { write: write(&reply.body), sent, acknowledged }
}

/// Writer `writer`: an API key each round, every fifth round a workspace
/// (writer 0) or the disabling of its previous key (writer 1), until
/// `stop`; each acknowledged write goes to `acks` as it is answered.
async fn writer(
    writer: usize,
    api: Api,
    acks: mpsc::UnboundedSender<Acknowledged>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut previous_key: Option<String> = None;
    let mut round = 0;
    while !*stop.borrow() {
        let name = json!({"name": format!("writer-{writer}-{round}")});
        let key =
            acknowledged(&api, Method::POST, "/v1/staging/ws_api_key/", Some(name), StatusCode::CREATED, |body| {
                Write::ApiKey { id: text(&body["id"]), secret: text(&body["api_key"]) }
            })
            .await;
        let current = match &key.write {
            Write::ApiKey { id, .. } => Some(id.clone()),
            _ => None,
        };
        acks.send(key).expect("the drill listens");
        if round % 5 == 4 && writer == 0 {
            let name = json!({"name": format!("drill-{round}")});
            let workspace =
                acknowledged(&api, Method::POST, "/v1/workspace/", Some(name), StatusCode::CREATED, |body| {
                    Write::Workspace { uid: text(&body["uid"]), slug: text(&body["slug"]) }
                });
            acks.send(workspace.await).expect("the drill listens");
        }
        if round % 5 == 4 && writer == 1 {
            if let Some(previous) = previous_key.take() {
                let path = format!("/v1/staging/ws_api_key/{previous}/disable/");
                let disable = acknowledged(&api, Method::PATCH, &path, None, StatusCode::ACCEPTED, |_| {
                    Write::Disable { id: previous.clone() }
                });
                acks.send(disable.await).expect("the drill listens");
            }
        }
        previous_key = current;
        round += 1;
    }
}

/// Runs `program` with `args` to success.
async fn run(program: &Path, args: &[&str]) {
    let output = tokio::process::Command::new(program).args(args).output().await.expect("runs");
    assert!(output.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&output.stderr));
}

/// The PostgreSQL client tool `name` (`pg_dump`, `pg_restore`) of the
/// server's major version: the one on PATH if it is of that version, else
/// Debian's `/usr/lib/postgresql/N/bin/`. A client of another major
/// version is never used (an older pg_dump refuses a newer server, a newer
/// one writes archives an older pg_restore cannot read); none found fails
/// the test, it never skips.
async fn pg_tool(db: &TestDb, name: &str) -> PathBuf {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(db.url()).await.expect("connect");
    let version: String =
        sqlx::query_scalar("SHOW server_version_num").fetch_one(&mut connection).await.expect("version");
    let major = version.parse::<u32>().expect("a number") / 10_000;
    let candidates = [PathBuf::from(name), PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{name}"))];
    let mut seen = Vec::new();
    for candidate in candidates {
        let Ok(output) = tokio::process::Command::new(&candidate).arg("--version").output().await else { continue };
        // "pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        let client_major = printed.split_whitespace().nth(2).and_then(|v| v.split('.').next()?.parse::<u32>().ok());
        if client_major == Some(major) {
            return candidate;
        }
        seen.push(format!("{}: {}", candidate.display(), printed.trim()));
    }
    panic!("no {name} of PostgreSQL {major}, the server's version, found (install postgresql-client-{major}); seen: {seen:?}")
}

/// Backs up `db` while its server runs, as the operator does: `keysd backup
/// --to` (checking what it prints and that it never overwrites), or
/// `pg_dump -Fc` (and `keysd backup` refused with its pointer to the docs).
async fn back_up(db: &TestDb) -> PathBuf {
    match db.kind {
        Kind::Sqlite => {
            let copy = db.dir().join("backup.db");
            let to = copy.to_str().expect("utf-8 path");
            let printed = keysd(db, &["backup", "--to", to]).await;
            let bytes = std::fs::metadata(&copy).expect("the copy").len();
            assert_eq!(printed, format!("{}\t{bytes}", copy.canonicalize().expect("path").display()));
            let written = std::fs::read(&copy).expect("the copy");
            let refused = keysd_refused(db, &["backup", "--to", to]).await;
            assert!(refused.contains("already exists"), "{refused}");
            assert_eq!(std::fs::read(&copy).expect("the copy"), written, "an existing file is never overwritten");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&copy).expect("copy").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "the copy holds key digests: its owner's alone");
            }
            copy
        }
        Kind::Postgres => {
            let dump = db.dir().join("keysd.dump");
            let not_here = db.dir().join("not-here.db");
            let refused = keysd_refused(db, &["backup", "--to", not_here.to_str().expect("utf-8")]).await;
            assert!(refused.contains("pg_dump") && refused.contains("docs/OPERATIONS.md"), "{refused}");
            assert_eq!(refused.trim().lines().count(), 1, "{refused}");
            assert!(!not_here.exists());
            let pg_dump = pg_tool(db, "pg_dump").await;
            run(&pg_dump, &["-Fc", "-f", dump.to_str().expect("utf-8"), db.url()]).await;
            dump
        }
    }
}

/// A database made from `backup` as the operator restores it: the copy
/// moved to where `--database-url` points, or `pg_restore` into a new,
/// empty database.
async fn restore(kind: Kind, backup: &Path) -> TestDb {
    match kind {
        Kind::Sqlite => {
            let mut restored = TestDb::sqlite();
            let path = restored.dir().join("restored.db");
            std::fs::rename(backup, &path).expect("moved into place");
            restored.url = format!("sqlite://{}", path.display());
            restored
        }
        Kind::Postgres => {
            let restored = TestDb::postgres().await;
            let pg_restore = pg_tool(&restored, "pg_restore").await;
            let archive = backup.to_str().expect("utf-8");
            run(&pg_restore, &["--no-owner", "--exit-on-error", "--single-transaction", "-d", restored.url(), archive])
                .await;
            restored
        }
    }
}

/// The organisation's audit trail, oldest first, as `keysd audit export`
/// writes it.
async fn audit_trail(db: &TestDb) -> Vec<Value> {
    let export = keysd(db, &["audit", "export", "--org", "default"]).await;
    export.lines().map(|line| serde_json::from_str(line).expect("one JSON event a line")).collect()
}

/// The verdict on `secret`: `Ok(())` valid, `Err(reason)` otherwise.
async fn verdict(api: &Api, secret: &str) -> Result<(), String> {
    let verdict = api.verify("api_key", json!({"api_key": secret})).await;
    if verdict["valid"] == true {
        Ok(())
    } else {
        Err(text(&verdict["reason"]))
    }
}

async fn workspace_slugs(api: &Api) -> HashSet<String> {
    let list = api.call(Method::GET, "/v1/workspace/?limit=100", None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let results = list.body["results"].as_array().expect("results");
    assert!(results.len() < 100, "one page holds them all");
    results.iter().map(|workspace| text(&workspace["slug"])).collect()
}

async fn backup_restores(db: TestDb) {
    let server = Server::start(&db, &[]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);

    let (acks_sender, mut acks) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..WRITERS)
        .map(|index| tokio::spawn(writer(index, server.client(&token), acks_sender.clone(), stopped.clone())))
        .collect();
    drop(acks_sender);
    let mut log: Vec<Acknowledged> = Vec::new();
    while log.len() < BEFORE {
        log.push(acks.recv().await.expect("the writers write"));
    }

    // A key no writer touches, disabled once the backup is taken.
    let revoked = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "revoked-later"}))).await;
    assert_eq!(revoked.status, StatusCode::CREATED);
    let (revoked_id, revoked_secret) = (text(&revoked.body["id"]), text(&revoked.body["api_key"]));

    let backup_began = Instant::now();
    let backup = back_up(&db).await;
    let backup_ended = Instant::now();

    let path = format!("/v1/staging/ws_api_key/{revoked_id}/disable/");
    assert_eq!(api.call(Method::PATCH, &path, None).await.status, StatusCode::ACCEPTED);
    assert_eq!(verdict(&api, &revoked_secret).await, Err("key_disabled".to_owned()));

    while log.iter().filter(|ack| ack.sent > backup_ended).count() < AFTER {
        log.push(acks.recv().await.expect("the writers write"));
    }
    stop.send(true).expect("writers listen");
    for writer in writers {
        writer.await.expect("a writer saw every write acknowledged");
    }
    while let Some(ack) = acks.recv().await {
        log.push(ack);
    }
    let trail = {
        server.stop().await;
        audit_trail(&db).await
    };

    let restored = restore(db.kind, &backup).await;
    let server = Server::start(&restored, &[]).await;
    assert!(server.token.is_none(), "the restored database is not empty: no bootstrap");
    let api = server.client(&token);
    let restored_trail = audit_trail(&restored).await;

    let before: Vec<&Acknowledged> = log.iter().filter(|ack| ack.acknowledged < backup_began).collect();
    let after: Vec<&Acknowledged> = log.iter().filter(|ack| ack.sent > backup_ended).collect();
    assert!(before.len() >= BEFORE && after.len() >= AFTER);
    let disabled = |id: &str, by: &dyn Fn(&Acknowledged) -> bool| {
        log.iter().any(|ack| matches!(&ack.write, Write::Disable { id: disabled } if disabled == id) && by(ack))
    };
    let slugs = workspace_slugs(&api).await;
    let events: HashSet<(String, String)> =
        restored_trail.iter().map(|event| (text(&event["action"]), text(&event["target"]["id"]))).collect();
    for ack in &before {
        let (action, target) = match &ack.write {
            Write::ApiKey { id, secret } => {
                let verdict = verdict(&api, secret).await;
                if disabled(id, &|disable| disable.acknowledged < backup_began) {
                    assert_eq!(verdict, Err("key_disabled".to_owned()), "{id}: disabled before the backup");
                } else if !disabled(id, &|disable| disable.sent < backup_ended) {
                    assert_eq!(verdict, Ok(()), "{id}: made before the backup");
                }
                ("api_key.generated", id)
            }
            Write::Workspace { uid, slug } => {
                assert!(slugs.contains(slug), "{slug}: made before the backup");
                ("workspace.created", uid)
            }
            Write::Disable { id } => ("api_key.disabled", id),
        };
        assert!(events.contains(&(action.to_owned(), target.clone())), "{action} {target}: not in the restored trail");
    }
    for ack in &after {
        match &ack.write {
            Write::ApiKey { id, secret } => {
                assert_eq!(verdict(&api, secret).await, Err("unknown_key".to_owned()), "{id}: made after the backup");
            }
            Write::Workspace { slug, .. } => assert!(!slugs.contains(slug), "{slug}: made after the backup"),
            Write::Disable { .. } => {}
        }
    }
    assert_eq!(verdict(&api, &revoked_secret).await, Ok(()), "disabled after the backup: live again in it");
    assert!(events.contains(&("api_key.generated".to_owned(), revoked_id.clone())));
    assert!(!events.contains(&("api_key.disabled".to_owned(), revoked_id)), "the trail tells what to revoke again");

    // The restored trail is the original's up to the backup: every event
    // as it was, in the same order, none of its own.
    let original: HashMap<String, (usize, &Value)> =
        trail.iter().enumerate().map(|(position, event)| (text(&event["id"]), (position, event))).collect();
    let positions: Vec<usize> = restored_trail
        .iter()
        .map(|event| {
            let (position, original) =
                original.get(&text(&event["id"])).unwrap_or_else(|| panic!("not in the original: {event}"));
            assert_eq!(event, *original);
            *position
        })
        .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "the restored trail is out of order");
    assert!(restored_trail.len() < trail.len(), "the writes after the backup are in the original only");

    server.stop().await;
    if restored.kind == Kind::Sqlite {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(restored.url()).await.expect("connect");
        let check: Vec<String> =
            sqlx::query_scalar("PRAGMA integrity_check").fetch_all(&mut connection).await.expect("integrity check");
        assert_eq!(check, ["ok"]);
    }
    restored.cleanup().await;
    db.cleanup().await;
}

keys_testkit::on_both_backends! {
    backup_restores => sqlite_backup_restores, postgres_backup_restores;
}
