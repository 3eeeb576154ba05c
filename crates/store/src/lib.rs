//! Durable state for certkeeper: the one place SQL is written.
//!
//! The store runs on sqlx's `Any` driver so the same code serves the embedded
//! SQLite default and PostgreSQL for replicas. SQL stays portable: `$1`
//! placeholders, times as unix seconds in `BIGINT`, blobs as base64 text.

mod agent;
mod agent_dns;
mod agent_secondary;
mod agent_slots;
mod agent_tlog;
pub mod audit;
mod ca;
mod ca_issuance;
mod ca_limits;
mod ca_revocation;
mod ca_tlog;
mod error;
pub mod files;
mod keys;
mod migrate;

pub use agent::{ManagedCertRow, UnkeyedLedgerRow};
pub use agent_dns::DnsRecordRow;
pub use agent_secondary::{SecondaryHostRow, SecondaryZoneRow};
pub use agent_slots::{BlockedKeyRow, CertMeta, EventRow, SlotRow};
pub use agent_tlog::{TlogAlertRow, TlogStateRow};
pub use ca::{AccountRow, AuthzRow, CertificateRow, OrderRow};
pub use ca_issuance::IssuanceRow;
pub use ca_limits::{
    BucketState, FinalizeFacts, Guarded, LimitBucket, LimitOverrideRow, NewOrderFacts,
};
pub use ca_revocation::{KeyCompromiseOutcome, RevocationRow, RevokeOutcome};
pub use error::StoreError;
pub use keys::{KeyChanges, KeyRow};

use std::path::Path;
use std::str::FromStr;

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

/// Handle on the database; cheap to clone, safe to share across tasks.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Writes go through here. For SQLite it is one connection: SQLite has one
    /// writer at a time anyway, and queueing in the pool is cheaper than
    /// writers colliding on the file lock and sleeping in the busy handler.
    writer: AnyPool,
}

impl Store {
    /// Opens (creating if needed) the SQLite database `certkeeper.db` in a data
    /// directory, in WAL mode with `synchronous=FULL` so a committed change
    /// survives `kill -9` and power loss.
    pub async fn open_dir(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
        let path = dir.join("certkeeper.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let store = Store::open_url(&url).await?;
        // The database holds private keys: owner-only, like any key file.
        restrict(dir, 0o700)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.join(format!("certkeeper.db{suffix}"));
            if file.exists() {
                restrict(&file, 0o600)?;
            }
        }
        Ok(store)
    }

    /// Opens a database by URL (`sqlite://…` or `postgres://…`) and runs migrations.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let is_sqlite = url.starts_with("sqlite:");
        let pool = pool_options(is_sqlite)
            .max_connections(if is_sqlite { 8 } else { 16 })
            .connect_with(options.clone())
            .await?;
        let writer = if is_sqlite {
            pool_options(is_sqlite)
                .max_connections(1)
                .connect_with(options)
                .await?
        } else {
            pool.clone()
        };
        let store = Store { pool, writer };
        migrate::run(&store.writer, is_sqlite).await?;
        Ok(store)
    }

    /// The pool for reads, for modules of this crate.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes (see the field's comment).
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }
}

/// Pool options; SQLite connections are in WAL mode and wait up to 10 s for
/// another process's write lock (a CLI command beside the daemon) instead
/// of failing at once.
fn pool_options(is_sqlite: bool) -> AnyPoolOptions {
    AnyPoolOptions::new()
        // sqlx pings every idle connection before handing it out. A SQLite
        // connection is a file handle in this process and cannot go stale,
        // and each ping is a round trip to the connection's worker thread
        // (two context switches): on the CA's hot path that doubled the
        // hand-offs of every single-statement read or write.
        .test_before_acquire(!is_sqlite)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if is_sqlite {
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    // Before anything else touches the file: WAL lets readers
                    // (CLI commands) run beside the daemon's writer, and avoids
                    // the rollback journal's lock-upgrade deadlocks between two
                    // processes opening a new database. A no-op once set (the
                    // mode is persistent); in-memory databases answer "memory".
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
}

fn restrict(path: &Path, mode: u32) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| StoreError::Io(path.display().to_string(), e))
}
