//! [`StoreError`]: every way a store call can fail, and which of them are
//! the client's doing.
//!
//! Store outcomes (what is missing, what is taken) are the store's own
//! variants; the domain's refusals travel unchanged in
//! [`StoreError::Refused`]; database failures keep their `sqlx::Error` as
//! the source, for logs only.

use keys_core::CoreError;

/// A uniqueness rule of the schema that a write ran into, reported to the
/// client (a 400 at the HTTP boundary).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The organisation already has a workspace with this slug.
    #[error("workspace slug '{0}' already exists")]
    SlugTaken(String),
    /// Another organisation has this name (the CLI's `--org` takes names).
    #[error("organisation name '{0}' already exists")]
    OrganisationNameTaken(String),
    /// An imported key (the entry at this index of the batch) is already
    /// stored, in this workspace or another: a 409 at the HTTP boundary.
    #[error("keys[{index}]: this key is already stored")]
    DigestStored { index: usize },
    /// An imported key repeats an earlier entry of the same batch.
    #[error("keys[{index}]: the same key as keys[{first}]")]
    RepeatedInBatch { index: usize, first: usize },
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The domain (or a database constraint standing in for it) refused the
    /// change; nothing was written. A client error.
    #[error(transparent)]
    Refused(#[from] CoreError),
    /// What the mutation targets does not exist (or is already deleted,
    /// where a deleted record counts as gone). Nothing was written.
    #[error("{kind} not found")]
    NotFound { kind: &'static str },
    /// A uniqueness rule refused the write. Nothing was written.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The database could not be reached or answered with an error that is
    /// not the client's doing. For logs, never for clients; the text leaves
    /// out any URL the driver quotes (it may carry a password).
    #[error("{context}: {}", redact(.source))]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// The migrations of the schema could not be applied.
    #[error("{backend} migrations failed: {source}")]
    Migration {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// This binary will not serve the database's schema: a newer release
    /// contracted it, or migrations are pending and were not to be applied.
    #[error(transparent)]
    Schema(#[from] crate::schema::SchemaError),
    /// The database holds something this crate would never have written, or
    /// a statement touched other rows than the transaction locked: a fault,
    /// not a client error.
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
    /// The database URL is not one this crate understands.
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
}

impl StoreError {
    /// A database failure while doing `context`.
    pub fn database(context: impl Into<String>, source: sqlx::Error) -> Self {
        Self::Database { context: context.into(), source }
    }

    /// Whether the client caused this (nothing was written, and the message
    /// is safe to show): a refusal, a conflict or something missing.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::NotFound { .. } | Self::Conflict(_))
    }
}

/// Failures of plain statements, without more context than the statement.
pub(crate) fn database(source: sqlx::Error) -> StoreError {
    StoreError::database("database statement", source)
}

/// The text of an error without the URL it may quote (which could carry a
/// password): sqlx's configuration errors can include it.
pub(crate) fn redact(error: &dyn std::fmt::Display) -> String {
    let text = error.to_string();
    if text.contains("://") {
        "the url could not be parsed or used".to_owned()
    } else {
        text
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
