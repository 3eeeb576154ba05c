//! The CA transparency log's index: serial -> leaf index (migration 50).

use std::collections::HashMap;

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// Records that `serial` is entry `leaf_index` of the log. Idempotent:
    /// recording the same pair again (crash recovery) is not an error.
    pub async fn insert_tlog_entry(
        &self,
        serial: &str,
        leaf_index: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ca_tlog_entries (serial, leaf_index, logged_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(serial)
        .bind(leaf_index)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records many `(serial, leaf_index)` pairs in one statement and one
    /// commit (the CA records a sequencer batch's entries together instead
    /// of paying a commit per certificate). Idempotent like
    /// [`Store::insert_tlog_entry`].
    pub async fn insert_tlog_entries(
        &self,
        entries: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        // 300 rows x 3 parameters stays under SQLite's 999-variable floor.
        for chunk in entries.chunks(300) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect();
            let sql = format!(
                "INSERT INTO ca_tlog_entries (serial, leaf_index, logged_at) VALUES {} \
                 ON CONFLICT DO NOTHING",
                rows.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (serial, index) in chunk {
                q = q.bind(serial).bind(*index).bind(now);
            }
            q.execute(self.writer()).await?;
        }
        Ok(())
    }

    /// The leaf index of a certificate, when it is logged.
    pub async fn tlog_index(&self, serial: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT leaf_index FROM ca_tlog_entries WHERE serial = $1")
                .bind(serial)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The highest recorded leaf index.
    pub async fn tlog_max_index(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(leaf_index) AS m FROM ca_tlog_entries")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get::<Option<i64>, _>("m")?)
    }

    /// How many certificates are indexed.
    pub async fn tlog_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM ca_tlog_entries")
            .fetch_one(self.pool())
            .await?)
    }

    /// Every recorded (serial, leaf index), for `ca list`.
    pub async fn tlog_indices(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT serial, leaf_index FROM ca_tlog_entries")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("serial")?, r.try_get("leaf_index")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Serials and chains of certificates recorded but not yet logged (the
    /// CA stopped between recording and logging): logged at startup.
    pub async fn certificates_not_logged(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.serial, c.chain_pem FROM ca_certificates c \
             LEFT JOIN ca_tlog_entries t ON t.serial = c.serial \
             WHERE t.serial IS NULL ORDER BY c.issued_at, c.serial",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("serial")?, r.try_get("chain_pem")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_recorded_in_one_batch_are_idempotent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("open");
        let rows: Vec<(String, i64)> = (0..700).map(|i| (format!("s{i}"), i)).collect();
        store.insert_tlog_entries(&rows, 5).await.expect("insert");
        // Again (crash recovery records what it finds): not an error.
        store
            .insert_tlog_entries(&rows[..10], 6)
            .await
            .expect("again");
        assert_eq!(store.tlog_count().await.expect("count"), 700);
        assert_eq!(store.tlog_index("s699").await.expect("index"), Some(699));
        assert_eq!(store.tlog_max_index().await.expect("max"), Some(699));
    }
}
