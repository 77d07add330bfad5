//! The one error type of this crate. Variants say what went wrong in the store's terms; which HTTP
//! status (or exit code) that deserves is the caller's business.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no database this crate can use (the scheme alone is kept: a URL may hold a
    /// password).
    #[error("unsupported database URL scheme `{scheme}`: expected sqlite:// or postgres://")]
    UnsupportedUrl { scheme: String },
    /// The SQLite file's directory could not be made.
    #[error("cannot create the database directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or opened.
    #[error("cannot open the database: {0}")]
    Connect(#[source] sqlx::Error),
    /// The schema could not be brought up to date (or the database is newer than this build).
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed: connection lost, lock timeout, constraint, …
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The call named does not exist (or was deleted).
    #[error("no call with id `{id}`")]
    NotFound { id: String },
    /// A page cursor this store did not give out, or one mangled on the way.
    #[error("malformed page cursor")]
    BadCursor,
    /// A row holds something this build cannot read (an unknown status, broken slot JSON, …).
    #[error("corrupt row: {what}")]
    Corrupt { what: String },
    /// The operating system's random number generator failed (no secret could be made).
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

impl StoreError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt { what: what.into() }
    }
}

/// Turns a foreign-key violation (a turn or event for a call that is not there) into `NotFound`, so
/// callers see the same error on both databases instead of driver-specific text.
pub(crate) fn missing_call(call_id: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound {
            id: call_id.to_string(),
        },
        _ => StoreError::Database(e),
    }
}
