//! Which schemas this binary may serve, and whether it applies its
//! migrations: the upgrade policy of docs/OPERATIONS.md ("Upgrading and
//! rolling back"), decided before any migration runs.
//!
//! Every release changes the schema in two steps: it only *expands* (new
//! tables, nullable or defaulted columns, new indexes), so that the
//! previous release's binary keeps serving, and restarting, on it; the
//! release after it may *contract* what is no longer read. Every migration
//! after 0007 names, in its file name, the oldest schema whose binaries can
//! still serve the database after it: `0012_add_usage_needs_0011.sql`
//! (sqlx's description, `add usage needs 0011`, ends in `needs <version>`).
//! An expansion names the newest schema of the release before its own (so
//! that release serves it); a contraction names the schema of the release
//! that stopped using what it removes, at least. So the migrations of the
//! release after the next one need a schema newer than this binary's, and
//! a migration that names nothing needs a binary that knows it.
//!
//! So a binary, finding migrations it does not know (written by a newer
//! release), starts unless one of them needs a schema newer than its own;
//! then it refuses with both versions named ([`SchemaError::TooNew`]). It
//! also refuses a migration it knows whose recorded checksum is not its own
//! ([`SchemaError::Modified`]). sqlx by itself refuses any unknown
//! migration; the migrators here are told to ignore them, after this
//! check.

use std::fmt;

/// Whether opening a store applies the pending migrations (`serve --migrate
/// auto`, and every command by default) or refuses to start while any is
/// pending (`--migrate never`, for fleets that migrate with `keysd migrate`
/// as a step of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Migrations {
    /// Apply what is pending.
    #[default]
    Apply,
    /// Apply nothing; refuse a database that lacks one of this binary's
    /// migrations.
    Require,
}

/// One row of sqlx's `_sqlx_migrations` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub version: i64,
    pub description: String,
    pub success: bool,
    pub checksum: Vec<u8>,
}

/// A migration of this binary: its version and the checksum sqlx records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Known {
    pub version: i64,
    pub checksum: Vec<u8>,
}

/// The schema of a database as the check found it (and left it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest migration applied to the database (0: none).
    pub database: i64,
    /// The newest migration this binary knows: the schema it writes.
    pub binary: i64,
    /// How many of this binary's migrations were pending before opening.
    pub pending: usize,
}

/// Why a binary will not serve a database's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A newer release contracted the schema beyond what this binary reads.
    #[error(
        "the database's schema is version {database}, whose migration {migration} ('{description}') needs a \
         binary that serves schema {needs} or later; this keysd serves schema {binary}: upgrade keysd"
    )]
    TooNew { database: i64, binary: i64, migration: i64, description: String, needs: i64 },
    /// Migrations of this binary are pending and it was told not to apply
    /// them.
    #[error(
        "the database's schema is version {database} and this keysd serves schema {binary}: apply the \
         migrations first (`keysd migrate`, or serve with --migrate auto)"
    )]
    Behind { database: i64, binary: i64 },
    /// A migration this binary knows was applied from a different file.
    #[error("the database's migration {0} was applied from a file other than this keysd's; repair it by hand")]
    Modified(i64),
    /// A migration failed half-way and left its row marked unfinished.
    #[error("the database's migration {0} failed part-way; repair it by hand before starting keysd")]
    Dirty(i64),
}

/// The schema a migration needs a binary to serve: `needs <version>` at
/// the end of its description, else none.
pub(crate) fn needs(description: &str) -> Option<i64> {
    let (_, version) = description.rsplit_once("needs ")?;
    version.trim().parse().ok()
}

/// The decision, before anything runs: whether a binary knowing `known`
/// may serve a database holding `applied`, and how many of its own
/// migrations are pending.
pub(crate) fn judge(known: &[Known], applied: &[Applied], mode: Migrations) -> Result<SchemaStatus, SchemaError> {
    let binary = known.iter().map(|migration| migration.version).max().unwrap_or(0);
    if let Some(dirty) = applied.iter().find(|row| !row.success) {
        return Err(SchemaError::Dirty(dirty.version));
    }
    let database = applied.iter().map(|row| row.version).max().unwrap_or(0);
    let mut pending = 0;
    for migration in known {
        match applied.iter().find(|row| row.version == migration.version) {
            Some(row) if row.checksum != migration.checksum => return Err(SchemaError::Modified(row.version)),
            Some(_) => {}
            None => pending += 1,
        }
    }
    // What each migration this binary does not know needs: what it names,
    // or, naming nothing, a binary that knows it.
    let newer = applied.iter().filter(|row| !known.iter().any(|migration| migration.version == row.version));
    let needing = newer.map(|row| (row, needs(&row.description).unwrap_or(row.version)));
    if let Some((row, needed)) = needing.max_by_key(|(_, needed)| *needed) {
        if needed > binary {
            return Err(SchemaError::TooNew {
                database,
                binary,
                migration: row.version,
                description: row.description.clone(),
                needs: needed,
            });
        }
    }
    if pending > 0 && mode == Migrations::Require {
        return Err(SchemaError::Behind { database, binary });
    }
    Ok(SchemaStatus { database, binary, pending })
}

/// Whether sqlx's table exists (`--migrate never` reads the schema without
/// creating anything: a serving role may have no right to).
pub(crate) const HAS_APPLIED_SQLITE: &str =
    "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
/// The same on PostgreSQL (the table sqlx would use, on the search path).
pub(crate) const HAS_APPLIED_POSTGRES: &str = "SELECT to_regclass('_sqlx_migrations') IS NOT NULL";

/// What sqlx recorded of the migrations applied to a database.
pub(crate) const APPLIED: &str = "SELECT version, description, success, checksum FROM _sqlx_migrations";

/// The rows of [`APPLIED`].
pub(crate) fn applied<R: sqlx::Row>(rows: &[R]) -> Result<Vec<Applied>, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    rows.iter()
        .map(|row| {
            Ok(Applied {
                version: row.try_get("version")?,
                description: row.try_get("description")?,
                success: row.try_get("success")?,
                checksum: row.try_get("checksum")?,
            })
        })
        .collect()
}

/// Logs what opening found and did.
pub(crate) fn report(backend: &str, status: SchemaStatus) {
    if status.pending > 0 {
        tracing::info!(backend, from = status.database, to = status.binary, "applied {} migration(s)", status.pending);
    } else if status.database > status.binary {
        tracing::info!(
            backend,
            database = status.database,
            binary = status.binary,
            "the schema is newer than this binary's and needs nothing newer: serving it"
        );
    }
}

/// A migrator's migrations (up-migrations only).
pub(crate) fn known(migrator: &sqlx::migrate::Migrator) -> Vec<Known> {
    migrator
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .map(|migration| Known { version: migration.version, checksum: migration.checksum.to_vec() })
        .collect()
}

/// The migrator of `migrations` that tolerates migrations it does not know
/// (checked by [`judge`] first) and takes no lock of its own (the caller
/// holds one).
pub(crate) fn tolerant(migrations: &'static sqlx::migrate::Migrator) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator {
        migrations: migrations.migrations.clone(),
        ignore_missing: true,
        locking: false,
        no_tx: migrations.no_tx,
    }
}

/// What `keysd --version` says of the schema: the version this binary
/// writes, and which schemas it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaSupport {
    /// The newest migration of this binary (the same number on both
    /// backends).
    pub version: i64,
}

impl fmt::Display for SchemaSupport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "schema {version}; serves schema {version} and the later ones until a migration needs schema {next} or newer",
            version = self.version,
            next = self.version + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(version: i64, description: &str) -> Applied {
        Applied { version, description: description.to_owned(), success: true, checksum: vec![version as u8] }
    }

    fn known() -> Vec<Known> {
        (1..=3).map(|version| Known { version, checksum: vec![version as u8] }).collect()
    }

    #[test]
    fn a_fresh_or_current_database_is_served() {
        assert_eq!(judge(&known(), &[], Migrations::Apply), Ok(SchemaStatus { database: 0, binary: 3, pending: 3 }));
        let current = [row(1, "initial"), row(2, "b"), row(3, "c")];
        assert_eq!(
            judge(&known(), &current, Migrations::Require),
            Ok(SchemaStatus { database: 3, binary: 3, pending: 0 })
        );
    }

    #[test]
    fn expansions_of_a_newer_release_are_served() {
        let next =
            [row(1, "initial"), row(2, "b"), row(3, "c"), row(4, "add usage table needs 3"), row(5, "drop x needs 3")];
        assert_eq!(
            judge(&known(), &next, Migrations::Require),
            Ok(SchemaStatus { database: 5, binary: 3, pending: 0 })
        );
    }

    #[test]
    fn a_contraction_beyond_this_binary_is_refused_naming_both_versions() {
        let later =
            [row(1, "initial"), row(2, "b"), row(3, "c"), row(4, "add y needs 3"), row(6, "drop b column needs 4")];
        let refusal = judge(&known(), &later, Migrations::Apply).expect_err("refused");
        assert_eq!(
            refusal,
            SchemaError::TooNew {
                database: 6,
                binary: 3,
                migration: 6,
                description: "drop b column needs 4".to_owned(),
                needs: 4
            }
        );
        let message = refusal.to_string();
        assert!(message.contains("schema is version 6") && message.contains("serves schema 3"), "{message}");
    }

    #[test]
    fn pending_migrations_are_refused_only_when_asked() {
        let behind = [row(1, "initial"), row(2, "b")];
        assert_eq!(judge(&known(), &behind, Migrations::Apply).map(|status| status.pending), Ok(1));
        assert_eq!(judge(&known(), &behind, Migrations::Require), Err(SchemaError::Behind { database: 2, binary: 3 }));
    }

    #[test]
    fn a_failed_migration_is_refused() {
        let dirty = [row(1, "initial"), Applied { success: false, ..row(2, "b") }];
        assert_eq!(judge(&known(), &dirty, Migrations::Apply), Err(SchemaError::Dirty(2)));
    }

    #[test]
    fn a_later_migration_that_names_nothing_needs_a_binary_that_knows_it() {
        let far = [row(1, "initial"), row(2, "b"), row(3, "c"), row(99, "far future")];
        let refusal = judge(&known(), &far, Migrations::Apply).expect_err("refused");
        assert!(matches!(refusal, SchemaError::TooNew { needs: 99, migration: 99, binary: 3, .. }), "{refusal:?}");
    }

    #[test]
    fn a_known_migration_applied_from_another_file_is_refused() {
        let mut changed = [row(1, "initial"), row(2, "b"), row(3, "c")];
        changed[1].checksum = vec![0];
        assert_eq!(judge(&known(), &changed, Migrations::Require), Err(SchemaError::Modified(2)));
        assert_eq!(judge(&known(), &changed[..2], Migrations::Apply), Err(SchemaError::Modified(2)));
    }

    #[test]
    fn needs_reads_the_suffix_only() {
        assert_eq!(needs("drop old column needs 0011"), Some(11));
        assert_eq!(needs("needs 7"), Some(7));
        assert_eq!(needs("api key counts"), None);
        assert_eq!(needs("needs review"), None);
    }
}
