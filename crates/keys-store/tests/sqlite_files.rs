//! The embedded SQLite database on disk: the file and the `-wal` and
//! `-shm` files beside it are its owner's alone (0600), whatever the umask
//! would have given; and its online backup (`keys_store::backup`), a
//! consistent copy that is 0600 too.

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn the_database_and_its_wal_and_shm_are_created_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keysd.db");
    let store = keys_store::open(&format!("sqlite://{}", path.display())).await.expect("store opens");
    // Opening ran the migrations: written through the WAL, whose index is
    // the -shm, both present while the store is open.
    let files = ["keysd.db", "keysd.db-wal", "keysd.db-shm"];
    for name in files {
        let mode = std::fs::metadata(dir.path().join(name)).expect(name).permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
    assert!(store.organisation_by_name("default").await.expect("readable").is_none());
}

#[tokio::test]
async fn an_existing_database_opens_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("keysd.db").display());
    drop(keys_store::open(&url).await.expect("created"));
    let store = keys_store::open(&url).await.expect("opened again");
    assert!(store.organisation_by_name("default").await.expect("readable").is_none());
}

/// The files of a directory, by name.
fn file_names(directory: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .expect("read directory")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `keys_store::backup` on a database in use: the copy holds what was
/// committed before it began and nothing of a transaction still open (it
/// does not wait for that writer either), is 0600, alone in its directory
/// (no temporary or journal file left), opens as a store, and is never
/// overwritten.
#[tokio::test]
async fn a_backup_is_a_consistent_private_copy_that_never_overwrites() {
    use sqlx::Connection;

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("keysd.db").display());
    let store = keys_store::open(&url).await.expect("store opens");
    let now = time::OffsetDateTime::now_utc();
    let (organisation, _token) =
        keys_testkit::Tenant::new("acme", &[("staging", None)], "ci", now, &mut rand_core::OsRng)
            .create_in(&*store)
            .await;
    // A writer holding the write lock, its insert not committed.
    let mut writer = sqlx::SqliteConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN IMMEDIATE").execute(&mut writer).await.expect("begin");
    sqlx::query("INSERT INTO organisations (id, name, created_at) VALUES ('late', 'late', 0)")
        .execute(&mut writer)
        .await
        .expect("insert");

    let backups = tempfile::tempdir().expect("tempdir");
    let destination = backups.path().join("copy.db");
    let backup = keys_store::backup(&url, &destination).await.expect("backed up beside an open writer");
    sqlx::query("COMMIT").execute(&mut writer).await.expect("commit");
    assert_eq!(backup.path, destination.canonicalize().expect("written"));
    assert_eq!(backup.bytes, std::fs::metadata(&destination).expect("copy").len());
    assert!(backup.bytes > 0);
    assert_eq!(std::fs::metadata(&destination).expect("copy").permissions().mode() & 0o777, 0o600);
    assert_eq!(file_names(backups.path()), ["copy.db"]);

    // Refused, and the copy left as it was, before it is ever opened.
    let written = std::fs::read(&destination).expect("copy");
    let refused = keys_store::backup(&url, &destination).await.expect_err("an existing destination");
    assert!(matches!(refused, keys_store::BackupError::DestinationExists(_)), "{refused}");
    assert_eq!(std::fs::read(&destination).expect("copy"), written);
    assert_eq!(file_names(backups.path()), ["copy.db"]);

    // A destination whose name is as long as a file name may be (its
    // temporary name beside it must still fit).
    let long = backups.path().join(format!("{}.db", "k".repeat(252)));
    keys_store::backup(&url, &long).await.expect("a 255-byte name is written");
    std::fs::remove_file(&long).expect("removed");

    let copy = keys_store::open(&format!("sqlite://{}", destination.display())).await.expect("the copy opens");
    let found = copy.organisation_by_name("acme").await.expect("readable").expect("committed before: in the copy");
    assert_eq!(found.id, organisation);
    // The uncommitted organisation, read below the store (its id is no
    // real one): committed since in the database, absent from the copy.
    let late = "SELECT count(*) FROM organisations WHERE name = 'late'";
    for (database, expected) in [(&url, 1), (&format!("sqlite://{}", destination.display()), 0)] {
        let mut connection = sqlx::SqliteConnection::connect(database).await.expect("connect");
        assert_eq!(sqlx::query_scalar::<_, i64>(late).fetch_one(&mut connection).await.expect("count"), expected);
    }
}

#[tokio::test]
async fn a_backup_needs_an_sqlite_file_and_creates_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let destination = dir.path().join("copy.db");
    let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
    let cases = [
        ("postgres://postgres@127.0.0.1:5432/test", "Postgres"),
        ("sqlite::memory:", "InMemory"),
        ("mysql://localhost/keys", "UnsupportedUrl"),
        (missing.as_str(), "NoDatabase"),
    ];
    for (url, expected) in cases {
        let refused = keys_store::backup(url, &destination).await.expect_err(url);
        assert!(format!("{refused:?}").starts_with(expected), "{url}: {refused:?}");
    }
    assert!(file_names(dir.path()).is_empty(), "{:?}", file_names(dir.path()));
}
