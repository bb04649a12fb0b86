//! The embedded SQLite database on disk: the file and the `-wal` and
//! `-shm` files beside it are its owner's alone (0600), whatever the umask
//! would have given.

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
