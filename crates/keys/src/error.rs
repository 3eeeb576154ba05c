//! The keys crate's one error type.

/// What went wrong managing, publishing or using rotated keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// The `[keys]` configuration is not usable; the message names the key and the fix.
    #[error("[keys] {0}")]
    Config(String),
    /// The key-encryption key file is missing, unreadable, badly formed or too open.
    #[error("key-encryption key {path}: {message}")]
    Kek {
        /// The file.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A sealed private key did not open: wrong key-encryption key, or the row was altered.
    #[error(
        "cannot decrypt the private key of {kind} key {id}: wrong key-encryption key, or the stored row was altered"
    )]
    Unseal {
        /// Kind of the key.
        kind: String,
        /// Key id.
        id: u8,
    },
    /// A ciphertext names a key id the keyring does not hold (never issued, or deleted).
    #[error("unknown key config id {0}: the key config is outdated; fetch the current one")]
    UnknownKeyId(u8),
    /// A ciphertext or encapsulated request is malformed, or names a suite its key does not use.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// HPKE refused to open (wrong key, tampered ciphertext) or seal.
    #[error("HPKE {0}")]
    Hpke(String),
    /// A stored row does not parse (edited by hand or written by a newer version).
    #[error("stored key {0} is corrupt: {1}")]
    Corrupt(String, String),
    /// The sweep would leave no active key, so it was refused and rolled back.
    #[error("sweep refused for {0} keys: no key would be active afterwards (nothing was changed)")]
    NoActiveKey(String),
    /// Every key id of a kind is in use: the sweep committed its deletions and
    /// other changes but could not create the key it needed.
    #[error(
        "no free key id for a new {kind} key ({suite}): all 256 ids are in use; deletions were committed, the key will be created once expired keys age out"
    )]
    IdsExhausted {
        /// Kind of the key.
        kind: String,
        /// The suite that needed a key.
        suite: String,
    },
    /// Key generation or signing failed in the crypto library.
    #[error("crypto: {0}")]
    Crypto(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] certkeeper_store::StoreError),
    /// Serving failed (bind, accept).
    #[error("keys endpoint {0}: {1}")]
    Serve(String, std::io::Error),
}
