//! [`backup`]: a consistent copy of an SQLite database, taken while
//! servers keep reading and writing it.
//!
//! The copy is SQLite's `VACUUM INTO`, which reads the whole database in
//! one read transaction: in WAL mode that is a snapshot of every
//! transaction committed before it began, and writers are not held up
//! while it runs. The copy is written to a temporary name beside the
//! destination, created empty and 0600 first (`VACUUM INTO` accepts an
//! empty file and keeps its mode: the copy holds every key's digest and the
//! audit trail), checked with `PRAGMA integrity_check`, flushed to disk,
//! then linked under its final name, which is never overwritten. A crash
//! leaves at most a temporary file, never a partial copy under the
//! destination's name.
//!
//! PostgreSQL is backed up with its own tools (`pg_dump`, or a base backup
//! with WAL archiving for point-in-time recovery): [`BackupError::Postgres`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::error::StoreError;

/// How long the backup waits for a lock (the copy only reads, but opening
/// a WAL database may briefly wait on a writer's checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The copy's absolute path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Why [`backup`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The URL names a PostgreSQL database, which its own tools back up.
    #[error("a PostgreSQL database is backed up with pg_dump or by point-in-time recovery, not by keysd")]
    Postgres,
    /// The URL names an in-memory database: nothing outlives its process.
    #[error("an in-memory SQLite database has nothing to back up")]
    InMemory,
    /// The URL is neither SQLite nor PostgreSQL.
    #[error("unsupported database url (expected sqlite://PATH)")]
    UnsupportedUrl,
    /// No database file where the URL points (the backup never creates one).
    #[error("no SQLite database at {0}")]
    NoDatabase(PathBuf),
    /// Something already has the destination's name: a backup never
    /// overwrites.
    #[error("{0} already exists; a backup never overwrites a file")]
    DestinationExists(PathBuf),
    /// The copy SQLite wrote fails its integrity check; it was removed.
    #[error("the copy failed SQLite's integrity check ({0}); nothing was written")]
    Corrupt(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The database refused or failed a statement.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

/// Writes a consistent copy of the SQLite database `url` names to
/// `destination`, which must not exist, while other connections and
/// processes go on using the database. Every transaction committed before
/// the call is in the copy. The copy is itself a database `keys_store::open`
/// (and `keysd serve`) can open.
pub async fn backup(url: &str, destination: &Path) -> Result<Backup, BackupError> {
    if crate::is_postgres(url) {
        return Err(BackupError::Postgres);
    }
    if !crate::is_sqlite(url) {
        return Err(BackupError::UnsupportedUrl);
    }
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(BackupError::InMemory);
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|source| StoreError::database("invalid SQLite url", source))?
        .create_if_missing(false)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    let source = options.get_filename().to_path_buf();
    if !tokio::fs::try_exists(&source).await.map_err(io(format!("reading {}", source.display())))? {
        return Err(BackupError::NoDatabase(source));
    }
    let destination = absolute(destination).await?;
    refuse_existing(&destination).await?;

    let temporary = Temporary::create(&destination).await?;
    copy_into(&options, &temporary.path).await?;
    check_integrity(&temporary.path).await?;
    let file = tokio::fs::File::open(&temporary.path).await.map_err(io("reopening the copy"))?;
    file.sync_all().await.map_err(io("flushing the copy to disk"))?;
    let bytes = file.metadata().await.map_err(io("reading the copy's size"))?.len();
    drop(file);
    temporary.publish(&destination).await?;
    Ok(Backup { path: destination, bytes })
}

/// `path` with its directory made absolute and resolved, so the name SQLite
/// is given starts with `/` (never read as a `file:` URI) and the printed
/// path is the one written.
async fn absolute(path: &Path) -> Result<PathBuf, BackupError> {
    let Some(name) = path.file_name() else {
        return Err(BackupError::DestinationExists(path.to_path_buf()));
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let directory = tokio::fs::canonicalize(directory)
        .await
        .map_err(io(format!("the destination's directory {}", directory.display())))?;
    Ok(directory.join(name))
}

async fn refuse_existing(destination: &Path) -> Result<(), BackupError> {
    match tokio::fs::symlink_metadata(destination).await {
        Ok(_) => Err(BackupError::DestinationExists(destination.to_path_buf())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io(format!("checking {}", destination.display()))(error)),
    }
}

/// The copy while it is being written: an empty 0600 file beside the
/// destination, removed again unless [`Temporary::publish`] gave it its
/// final name.
struct Temporary {
    path: PathBuf,
    published: bool,
}

impl Temporary {
    async fn create(destination: &Path) -> Result<Self, BackupError> {
        // The destination's name, cut to leave room for the suffix within
        // the 255 bytes a file name may have.
        let name: String = destination
            .file_name()
            .map(|name| {
                name.to_string_lossy()
                    .chars()
                    .scan(0, |bytes, c| {
                        *bytes += c.len_utf8();
                        (*bytes <= 200).then_some(c)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = destination.with_file_name(format!(".{name}.{}-{nanos:x}.partial", std::process::id()));
        let mut open = tokio::fs::OpenOptions::new();
        open.write(true).create_new(true);
        #[cfg(unix)]
        open.mode(0o600);
        open.open(&path).await.map_err(io(format!("creating {}", path.display())))?;
        Ok(Self { path, published: false })
    }

    /// Gives the finished copy the destination's name without ever
    /// replacing a file: a hard link fails if the name is taken (a rename
    /// would overwrite it), then the temporary name goes. The directory is
    /// flushed so the new name survives a crash.
    async fn publish(mut self, destination: &Path) -> Result<(), BackupError> {
        match tokio::fs::hard_link(&self.path, destination).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::DestinationExists(destination.to_path_buf()));
            }
            Err(error) => return Err(io(format!("naming the copy {}", destination.display()))(error)),
        }
        self.published = true;
        tokio::fs::remove_file(&self.path).await.map_err(io(format!("removing {}", self.path.display())))?;
        if let Some(directory) = destination.parent() {
            let directory =
                tokio::fs::File::open(directory).await.map_err(io("opening the destination's directory"))?;
            directory.sync_all().await.map_err(io("flushing the destination's directory"))?;
        }
        Ok(())
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if !self.published {
            // Best effort: what failed is already being reported.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `VACUUM INTO` the (empty) file at `target`, from a read-only connection:
/// the backup never writes the database it copies.
async fn copy_into(options: &SqliteConnectOptions, target: &Path) -> Result<(), BackupError> {
    let target_text = target.to_str().ok_or_else(|| BackupError::Io {
        context: format!("the destination {}", target.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path is not UTF-8"),
    })?;
    let mut connection = options
        .connect()
        .await
        .map_err(|source| StoreError::database("could not open the SQLite database to back up", source))?;
    let copied = sqlx::query("VACUUM INTO $1").bind(target_text).execute(&mut connection).await;
    connection.close().await.ok();
    copied.map_err(|source| StoreError::database("copying the database (VACUUM INTO)", source))?;
    Ok(())
}

/// `PRAGMA integrity_check` on the copy, before it gets its final name.
async fn check_integrity(copy: &Path) -> Result<(), BackupError> {
    let mut connection = SqliteConnectOptions::new()
        .filename(copy)
        .read_only(true)
        .connect()
        .await
        .map_err(|source| StoreError::database("could not open the copy", source))?;
    let verdict: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut connection)
        .await
        .map_err(|source| StoreError::database("checking the copy's integrity", source))?;
    connection.close().await.ok();
    if verdict != ["ok"] {
        return Err(BackupError::Corrupt(verdict.join("; ")));
    }
    Ok(())
}
