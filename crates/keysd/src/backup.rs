//! `keysd backup --to PATH`: a consistent copy of the SQLite database,
//! taken while `keysd serve` runs on it (keys-store's `backup`). It prints
//! the copy's path and its size in bytes, tab-separated. PostgreSQL is
//! refused with a pointer to its procedures in docs/OPERATIONS.md.

use std::path::PathBuf;

use anyhow::anyhow;
use keys_store::BackupError;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the copy: a file that must not exist yet, in an
    /// existing directory.
    #[arg(long, value_name = "PATH")]
    pub to: PathBuf,
}

/// The one line `keysd backup` answers a PostgreSQL URL with.
const POSTGRES: &str = "keysd backup copies SQLite databases; back up PostgreSQL with pg_dump or point-in-time \
                        recovery, as docs/OPERATIONS.md describes under \"Backing up and restoring\"";

/// `keysd backup`.
pub async fn run(url: &str, args: BackupArgs) -> anyhow::Result<()> {
    match keys_store::backup(url, &args.to).await {
        Ok(backup) => {
            println!("{}\t{}", backup.path.display(), backup.bytes);
            Ok(())
        }
        Err(BackupError::Postgres) => Err(anyhow!(POSTGRES)),
        Err(error) => Err(anyhow!("backup failed: {error}")),
    }
}
