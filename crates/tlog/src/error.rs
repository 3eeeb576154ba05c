//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong with a log, its proofs or its notes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    /// An index or size outside the tree.
    #[error("entry {index} is outside the tree of size {size}")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A proof did not verify.
    #[error("proof does not verify: {0}")]
    ProofFailed(String),
    /// A signed note or checkpoint that does not parse.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A note without a valid signature by the expected key.
    #[error("note signature: {0}")]
    BadSignature(String),
    /// A key string or key file that cannot be used.
    #[error("key: {0}")]
    Key(String),
    /// A tile, entry bundle or path that does not parse.
    #[error("malformed tile {path}: {detail}")]
    MalformedTile {
        /// The tile path.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The published log disagrees with itself or with its checkpoint;
    /// `position` names where.
    #[error("log does not verify at {position}: {detail}")]
    Mismatch {
        /// Which tile and hash (or entry) differs.
        position: String,
        /// What was expected.
        detail: String,
    },
    /// A tile or entry that should be there is missing.
    #[error("missing {0}")]
    Missing(String),
    /// An entry too big for an entry bundle (2-byte length prefix).
    #[error("entry of {0} bytes exceeds the 65535-byte limit of an entry bundle")]
    EntryTooLarge(usize),
    /// The log stopped accepting appends after a write failed; restart to recover.
    #[error("log is stopped after a write failure ({0}); restart the CA to recover")]
    Stopped(String),
    /// File system error.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Fetching from a served log failed.
    #[error("fetch {what}: {detail}")]
    Fetch {
        /// The path fetched.
        what: String,
        /// Why.
        detail: String,
    },
}

impl TlogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> TlogError {
        TlogError::Io {
            path: path.into(),
            source,
        }
    }
}
