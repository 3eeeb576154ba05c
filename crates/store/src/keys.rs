//! The rotator's key table (`rotated_keys`): reads, and the one sweep
//! transaction that excludes every other writer.
//!
//! The store knows nothing of rotation rules: it hands the rows to the
//! caller's `decide` inside the transaction and writes what it returns, like
//! `limit_update`. What makes a sweep safe with several rotators on one
//! database is that the read and the writes happen under a write lock taken
//! *before* the read: on SQLite `BEGIN IMMEDIATE` (a deferred transaction
//! would read, then fail to upgrade with `SQLITE_BUSY` instead of waiting),
//! on PostgreSQL `LOCK TABLE … SHARE ROW EXCLUSIVE` (readers go on; a second
//! sweeper waits, then reads the first one's committed result).

use sqlx::Row;
use sqlx::pool::PoolConnection;

use crate::{Store, StoreError};

/// One stored key. Binary fields are base64 text (the `Any` driver carries
/// basic types only); the private key is already sealed by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRow {
    /// Which rotator owns it, e.g. `hpke` or `signing`.
    pub kind: String,
    /// Key id, 0–255, unique within the kind.
    pub id: u8,
    /// Algorithm suite name.
    pub suite: String,
    /// `pending`, `active` or `expired`.
    pub state: String,
    /// Public key or config, base64.
    pub public_key: String,
    /// Sealed private key, base64.
    pub private_sealed: String,
    /// Last state change, unix seconds.
    pub changed_at: i64,
}

/// What a sweep writes, applied in this order: deletions first (they free
/// ids the insertions may reuse), then state changes, then insertions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// `(kind, id)` to delete.
    pub delete: Vec<(String, u8)>,
    /// `(kind, id, new state, changed_at)`.
    pub set_state: Vec<(String, u8, String, i64)>,
    /// New keys.
    pub insert: Vec<KeyRow>,
}

impl KeyChanges {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.set_state.is_empty() && self.insert.is_empty()
    }
}

const SELECT: &str = "SELECT kind, id, suite, state, public_key, private_sealed, changed_at \
                      FROM rotated_keys ORDER BY kind, changed_at, id";

impl Store {
    /// Every stored key, ordered by kind, then (changed_at, id).
    pub async fn keys_all(&self) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(SELECT).fetch_all(self.pool()).await?;
        rows.iter().map(key_row).collect()
    }

    /// The sweep transaction: takes the write lock, reads every key, hands
    /// them to `decide`, and writes the changes it returns in the same
    /// transaction. `decide` returning `Err` rolls everything back; its `Ok`
    /// value comes back with the changes committed (possibly none). Two
    /// sweepers on one database are serialised: the second reads the first
    /// one's result, so identical rules make it change nothing.
    pub async fn keys_sweep<R, E, F>(&self, decide: F) -> Result<Result<R, E>, StoreError>
    where
        F: FnOnce(&[KeyRow]) -> Result<(KeyChanges, R), E>,
    {
        let mut conn = self.writer().acquire().await?;
        let sqlite = conn.backend_name().eq_ignore_ascii_case("sqlite");
        let begin = if sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" };
        sqlx::query(begin).execute(&mut *conn).await?;
        let outcome = sweep_in_tx(&mut conn, sqlite, decide).await;
        let end = if matches!(outcome, Ok(Ok(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        // Never hand a connection back to the pool inside a transaction.
        let ended = sqlx::query(end).execute(&mut *conn).await;
        let outcome = outcome?;
        if outcome.is_ok() {
            ended?;
        }
        Ok(outcome)
    }
}

async fn sweep_in_tx<R, E, F>(
    conn: &mut PoolConnection<sqlx::Any>,
    sqlite: bool,
    decide: F,
) -> Result<Result<R, E>, StoreError>
where
    F: FnOnce(&[KeyRow]) -> Result<(KeyChanges, R), E>,
{
    if !sqlite {
        // Excludes other writers of the table (and other sweepers, who ask for
        // the same mode) but not readers: replicas keep serving keys.
        sqlx::query("LOCK TABLE rotated_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut **conn)
            .await?;
    }
    let rows = sqlx::query(SELECT).fetch_all(&mut **conn).await?;
    let keys = rows.iter().map(key_row).collect::<Result<Vec<_>, _>>()?;
    let (changes, value) = match decide(&keys) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    for (kind, id) in &changes.delete {
        sqlx::query("DELETE FROM rotated_keys WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(i64::from(*id))
            .execute(&mut **conn)
            .await?;
    }
    for (kind, id, state, at) in &changes.set_state {
        sqlx::query(
            "UPDATE rotated_keys SET state = $1, changed_at = $2 WHERE kind = $3 AND id = $4",
        )
        .bind(state)
        .bind(*at)
        .bind(kind)
        .bind(i64::from(*id))
        .execute(&mut **conn)
        .await?;
    }
    for k in &changes.insert {
        sqlx::query(
            "INSERT INTO rotated_keys (kind, id, suite, state, public_key, private_sealed, changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&k.kind)
        .bind(i64::from(k.id))
        .bind(&k.suite)
        .bind(&k.state)
        .bind(&k.public_key)
        .bind(&k.private_sealed)
        .bind(k.changed_at)
        .execute(&mut **conn)
        .await?;
    }
    Ok(Ok(value))
}

fn key_row(row: &sqlx::any::AnyRow) -> Result<KeyRow, StoreError> {
    let id: i64 = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let id = u8::try_from(id).map_err(|_| {
        StoreError::Corrupt(format!("rotated key {kind}/{id}"), "id is not 0-255".into())
    })?;
    Ok(KeyRow {
        kind,
        id,
        suite: row.try_get("suite")?,
        state: row.try_get("state")?,
        public_key: row.try_get("public_key")?,
        private_sealed: row.try_get("private_sealed")?,
        changed_at: row.try_get("changed_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u8) -> KeyRow {
        KeyRow {
            kind: "hpke".into(),
            id,
            suite: "s".into(),
            state: "active".into(),
            public_key: "cHVi".into(),
            private_sealed: "c2Vj".into(),
            changed_at: 10,
        }
    }

    #[tokio::test]
    async fn a_sweep_commits_its_changes_and_an_error_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_dir(dir.path()).await.unwrap();
        let out: Result<(), ()> = store
            .keys_sweep(|keys| {
                assert!(keys.is_empty());
                Ok((
                    KeyChanges {
                        insert: vec![row(1), row(2)],
                        ..Default::default()
                    },
                    (),
                ))
            })
            .await
            .unwrap();
        assert!(out.is_ok());
        let refused: Result<(), &str> = store
            .keys_sweep(|keys| {
                assert_eq!(keys.len(), 2);
                Err("no")
            })
            .await
            .unwrap();
        assert_eq!(refused, Err("no"));
        let out: Result<(), ()> = store
            .keys_sweep(|_| {
                Ok((
                    KeyChanges {
                        delete: vec![("hpke".into(), 1)],
                        set_state: vec![("hpke".into(), 2, "expired".into(), 20)],
                        insert: vec![row(1)],
                    },
                    (),
                ))
            })
            .await
            .unwrap();
        assert!(out.is_ok());
        let keys = store.keys_all().await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], row(1));
        assert_eq!(
            (keys[1].id, keys[1].state.as_str(), keys[1].changed_at),
            (2, "expired", 20)
        );
    }
}
