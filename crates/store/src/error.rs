//! The store's one error type.

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database driver failed (connection, SQL, constraint).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The data directory could not be created or read.
    #[error("data directory {0}: {1}")]
    Io(String, std::io::Error),
    /// A stored JSON document did not parse: the database was edited by hand
    /// or written by a newer version.
    #[error("stored record {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// The audit log's chain is broken at `line`.
    #[error("{path}, line {line}: {reason}")]
    AuditBroken {
        /// The file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What does not hold there.
        reason: String,
    },
    /// A uniqueness rule refused the write (e.g. an account key already in use).
    #[error("{0} already exists")]
    Conflict(String),
}

impl StoreError {
    /// True when the error is a uniqueness violation the caller may report as a conflict.
    pub fn is_conflict(&self) -> bool {
        match self {
            StoreError::Conflict(_) => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}
