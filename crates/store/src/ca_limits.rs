//! Rate-limit state of the built-in CA: GCRA buckets and per-bucket overrides.
//!
//! The store knows nothing of GCRA: it reads theoretical arrival times (TATs)
//! and writes back whatever the caller decides, inside one transaction on the
//! writer connection. With SQLite that connection is the only writer, so a
//! read-modify-write there is serialised exactly like `BEGIN IMMEDIATE`; on
//! PostgreSQL the rows are read `FOR UPDATE`-free but the writer pool is the
//! shared pool, so a replica set should move to advisory locks (known
//! weakness: two PostgreSQL writers can both spend the last unit).

use sqlx::Row;

use crate::{AuthzRow, CertificateRow, OrderRow, Store, StoreError};

/// A write a limit spend pays for, committed in the same transaction.
#[derive(Debug)]
pub enum Guarded<'a> {
    /// A new order with its new authorizations (newOrder).
    Order {
        /// The order.
        order: &'a OrderRow,
        /// Its authorizations that do not exist yet.
        authzs: &'a [AuthzRow],
        /// Now, unix seconds.
        now: i64,
    },
    /// An issued certificate and its order's move to `valid` (finalize),
    /// compared-and-set against `expected`.
    Certificate {
        /// The certificate.
        cert: &'a CertificateRow,
        /// The order in its new state.
        order: &'a OrderRow,
        /// The order status it must still have.
        expected: &'a str,
        /// Now, unix seconds.
        now: i64,
    },
}

/// An operator's override of one limit for one bucket key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitOverrideRow {
    /// Limit name, e.g. `CertificatesPerFQDNSet`.
    pub limit_name: String,
    /// Bucket key the override applies to, e.g. `example.com`.
    pub bucket_key: String,
    /// Requests allowed per period.
    pub count: i64,
    /// Period, seconds.
    pub period_seconds: i64,
    /// Most requests allowed at once (a full bucket).
    pub burst: i64,
}

impl Store {
    /// The stored TAT (unix milliseconds) of a bucket; `None` when the bucket
    /// was never spent from (it is full).
    pub async fn limit_tat(&self, bucket: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT tat FROM ca_limit_buckets WHERE bucket = $1")
                .bind(bucket)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The stored TATs of several buckets in one statement (same order as
    /// `buckets`; `None` for a bucket never spent from).
    pub async fn limit_tats(&self, buckets: &[String]) -> Result<Vec<Option<i64>>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        tats_of(&mut conn, buckets).await
    }

    /// Atomic read-modify-write of several buckets: reads their TATs, hands
    /// them to `decide` (same order as `buckets`), and, when it says to
    /// proceed, writes the TATs it returns (`(index, new_tat)`) together with
    /// the `guarded` write, in one transaction on the single writer
    /// connection. Concurrent spenders are serialised, the last unit of a
    /// limit is spent exactly once, and a spend never outlives the write it
    /// paid for (one commit, one fsync). Returns `decide`'s value and whether
    /// the writes were committed (false: denied, or the guarded order moved).
    pub async fn limit_update<R, F>(
        &self,
        buckets: &[String],
        decide: F,
        guarded: Option<Guarded<'_>>,
    ) -> Result<(R, bool), StoreError>
    where
        F: FnOnce(&[Option<i64>]) -> (Vec<(usize, i64)>, R, bool),
    {
        let mut tx = self.writer().begin().await?;
        let tats = tats_of(&mut tx, buckets).await?;
        let (writes, result, proceed) = decide(&tats);
        if !proceed {
            return Ok((result, false));
        }
        for (i, tat) in writes {
            let Some(bucket) = buckets.get(i) else {
                continue;
            };
            sqlx::query(
                "INSERT INTO ca_limit_buckets (bucket, tat) VALUES ($1, $2) \
                 ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat",
            )
            .bind(bucket)
            .bind(tat)
            .execute(&mut *tx)
            .await?;
        }
        match guarded {
            None => {}
            Some(Guarded::Order { order, authzs, now }) => {
                crate::ca::insert_order_tx(&mut tx, order, authzs, now).await?;
            }
            Some(Guarded::Certificate {
                cert,
                order,
                expected,
                now,
            }) => {
                let recorded =
                    crate::ca::insert_certificate_tx(&mut tx, cert, order, expected, now).await?;
                if !recorded {
                    // Dropping the transaction rolls the spend back too.
                    return Ok((result, false));
                }
            }
        }
        tx.commit().await?;
        Ok((result, true))
    }

    /// The override for one limit and bucket key, if an operator set one.
    pub async fn limit_override(
        &self,
        limit_name: &str,
        bucket_key: &str,
    ) -> Result<Option<LimitOverrideRow>, StoreError> {
        let row = sqlx::query(
            "SELECT limit_name, bucket_key, count, period_seconds, burst FROM ca_limit_overrides \
             WHERE limit_name = $1 AND bucket_key = $2",
        )
        .bind(limit_name)
        .bind(bucket_key)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(override_from).transpose()?)
    }

    /// The overrides of several `(limit_name, bucket_key)` pairs in one
    /// statement: one entry per pair, in order, `None` where an operator
    /// set none. Read on every limit check, so it is one indexed lookup per
    /// pair in a single round trip, not one statement per bucket.
    pub async fn limit_overrides_for(
        &self,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<Option<LimitOverrideRow>>, StoreError> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<String> = (0..pairs.len())
            .map(|i| {
                format!(
                    "(limit_name = ${} AND bucket_key = ${})",
                    2 * i + 1,
                    2 * i + 2
                )
            })
            .collect();
        let sql = format!(
            "SELECT limit_name, bucket_key, count, period_seconds, burst FROM ca_limit_overrides \
             WHERE {}",
            wanted.join(" OR ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (name, key) in pairs {
            q = q.bind(*name).bind(*key);
        }
        let rows = q.fetch_all(self.pool()).await?;
        let found: Vec<LimitOverrideRow> =
            rows.iter().map(override_from).collect::<Result<_, _>>()?;
        Ok(pairs
            .iter()
            .map(|(name, key)| {
                found
                    .iter()
                    .find(|o| o.limit_name == *name && o.bucket_key == *key)
                    .cloned()
            })
            .collect())
    }

    /// Every override, by limit then key (for `certkeeper ca limits`).
    pub async fn limit_overrides(&self) -> Result<Vec<LimitOverrideRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT limit_name, bucket_key, count, period_seconds, burst FROM ca_limit_overrides \
             ORDER BY limit_name, bucket_key",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(override_from).collect::<Result<_, _>>()?)
    }

    /// Adds or replaces an override and empties that bucket (bucket id
    /// `limit_name:bucket_key`), in one transaction. The reset is a departure
    /// from Boulder: a TAT spent under the old emission interval would keep
    /// denying under a raised limit for up to a period, and an operator who
    /// raises a limit wants it to apply now.
    pub async fn set_limit_override(&self, o: &LimitOverrideRow) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM ca_limit_buckets WHERE bucket = $1")
            .bind(format!("{}:{}", o.limit_name, o.bucket_key))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO ca_limit_overrides (limit_name, bucket_key, count, period_seconds, burst) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (limit_name, bucket_key) DO UPDATE SET \
             count = excluded.count, period_seconds = excluded.period_seconds, burst = excluded.burst",
        )
        .bind(&o.limit_name)
        .bind(&o.bucket_key)
        .bind(o.count)
        .bind(o.period_seconds)
        .bind(o.burst)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a certificate for exactly this identifier set (the `names`
    /// column: sorted, comma-joined) was issued *to this account* at or
    /// after `since`. Per account, so that a set someone else was issued
    /// buys no exemption for anyone who merely names it.
    pub async fn issued_names_since(
        &self,
        account_id: &str,
        names: &str,
        since: i64,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM ca_certificates WHERE names = $1 AND issued_at >= $2 AND account_id = $3",
        )
        .bind(names)
        .bind(since)
        .bind(account_id)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// Records a validation outcome for pausing: a success clears the count,
    /// a failure adds one and pauses at `threshold` (0: never). Returns
    /// whether the identifier is paused now.
    pub async fn record_validation(
        &self,
        account_id: &str,
        identifier: &str,
        success: bool,
        threshold: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        if success {
            sqlx::query("DELETE FROM ca_paused WHERE account_id = $1 AND identifier = $2 AND paused_at IS NULL")
                .bind(account_id)
                .bind(identifier)
                .execute(self.writer())
                .await?;
            return Ok(false);
        }
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO ca_paused (account_id, identifier, failures, paused_at) VALUES ($1, $2, 1, NULL) \
             ON CONFLICT (account_id, identifier) DO UPDATE SET failures = ca_paused.failures + 1",
        )
        .bind(account_id)
        .bind(identifier)
        .execute(&mut *tx)
        .await?;
        let paused = threshold > 0
            && sqlx::query(
                "UPDATE ca_paused SET paused_at = $1 WHERE account_id = $2 AND identifier = $3 \
                 AND paused_at IS NULL AND failures >= $4",
            )
            .bind(now)
            .bind(account_id)
            .bind(identifier)
            .bind(threshold)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
        tx.commit().await?;
        Ok(paused)
    }

    /// The consecutive-failure count of a paused identifier, if it is paused.
    pub async fn paused_failures(
        &self,
        account_id: &str,
        identifier: &str,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT failures FROM ca_paused WHERE account_id = $1 AND identifier = $2 AND paused_at IS NOT NULL",
        )
        .bind(account_id)
        .bind(identifier)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("failures")).transpose()?)
    }

    /// Lifts a pause (the operator's decision); false when it was not paused.
    pub async fn unpause(&self, account_id: &str, identifier: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM ca_paused WHERE account_id = $1 AND identifier = $2")
            .bind(account_id)
            .bind(identifier)
            .execute(self.writer())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

/// The TATs of `buckets` (in their order) in one statement on `conn`.
async fn tats_of(
    conn: &mut sqlx::AnyConnection,
    buckets: &[String],
) -> Result<Vec<Option<i64>>, StoreError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (1..=buckets.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT bucket, tat FROM ca_limit_buckets WHERE bucket IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in buckets {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let bucket: String = row.try_get("bucket")?;
        let tat: i64 = row.try_get("tat")?;
        found.insert(bucket, tat);
    }
    Ok(buckets.iter().map(|b| found.get(b).copied()).collect())
}

fn override_from(row: &sqlx::any::AnyRow) -> Result<LimitOverrideRow, sqlx::Error> {
    Ok(LimitOverrideRow {
        limit_name: row.try_get("limit_name")?,
        bucket_key: row.try_get("bucket_key")?,
        count: row.try_get("count")?,
        period_seconds: row.try_get("period_seconds")?,
        burst: row.try_get("burst")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn update_is_atomic_and_overrides_upsert() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("open");
        let b = vec!["L:k".to_string()];
        assert_eq!(store.limit_tat("L:k").await.expect("read"), None);
        let seen = store
            .limit_update(&b, |tats| (vec![(0, 42)], tats.to_vec(), true), None)
            .await
            .expect("update");
        assert_eq!(seen, (vec![None], true));
        assert_eq!(store.limit_tat("L:k").await.expect("read"), Some(42));
        // A denied decision writes nothing.
        let denied = store
            .limit_update(&b, |_| (vec![(0, 99)], (), false), None)
            .await
            .expect("update");
        assert_eq!(denied, ((), false));
        assert_eq!(store.limit_tat("L:k").await.expect("read"), Some(42));
        store
            .limit_update(&b, |_| (vec![(0, 43)], (), true), None)
            .await
            .expect("update");
        assert_eq!(store.limit_tat("L:k").await.expect("read"), Some(43));

        let mut o = LimitOverrideRow {
            limit_name: "CertificatesPerFQDNSet".into(),
            bucket_key: "a.test".into(),
            count: 10,
            period_seconds: 60,
            burst: 10,
        };
        store.set_limit_override(&o).await.expect("set");
        o.count = 20;
        store.set_limit_override(&o).await.expect("set again");
        assert_eq!(
            store.limit_overrides().await.expect("list"),
            vec![o.clone()]
        );
        assert_eq!(
            store
                .limit_override("CertificatesPerFQDNSet", "a.test")
                .await
                .expect("get"),
            Some(o.clone())
        );

        // The batched reads answer per bucket, in order, absent ones as None.
        let tats = store
            .limit_tats(&["nope".to_string(), "L:k".to_string(), "nope".to_string()])
            .await
            .expect("tats");
        assert_eq!(tats, vec![None, Some(43), None]);
        let found = store
            .limit_overrides_for(&[
                ("CertificatesPerDomain", "a.test"),
                ("CertificatesPerFQDNSet", "a.test"),
                ("CertificatesPerFQDNSet", "b.test"),
            ])
            .await
            .expect("overrides");
        assert_eq!(found, vec![None, Some(o), None]);
        assert!(
            store
                .limit_overrides_for(&[])
                .await
                .expect("none")
                .is_empty()
        );
    }
}
