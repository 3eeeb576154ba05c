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

/// One rate-limit bucket: a limit and the key it is counted by (an
/// account, a domain, an IP range).
#[derive(Clone, Copy, Debug)]
pub struct LimitBucket<'a> {
    /// Limit name, e.g. `CertificatesPerFQDNSet`.
    pub limit_name: &'a str,
    /// Bucket key, e.g. `example.com`.
    pub bucket_key: &'a str,
}

impl LimitBucket<'_> {
    /// The bucket's row key: `LIMIT:KEY`.
    pub fn bucket(&self) -> String {
        format!("{}:{}", self.limit_name, self.bucket_key)
    }
}

/// What the store holds for one bucket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketState {
    /// Its TAT, unix milliseconds; `None` when never spent from (full).
    pub tat: Option<i64>,
    /// The operator's override of its limit, if any.
    pub limit_override: Option<LimitOverrideRow>,
}

/// What newOrder decides with ([`Store::new_order_facts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewOrderFacts {
    /// The first (by name) of the order's identifiers paused for the
    /// account, with its count of consecutive failed validations.
    pub paused: Option<(String, i64)>,
    /// Unexpired pending or processing authorizations the account holds.
    pub pending_authzs: i64,
    /// The account was issued a certificate for exactly these names since
    /// the lookback (the renewal exemption).
    pub renewal: bool,
}

/// What finalize decides with ([`Store::finalize_facts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FinalizeFacts {
    /// The CSR's key is blocked after a proven compromise.
    pub key_blocked: bool,
    /// As [`NewOrderFacts::renewal`].
    pub renewal: bool,
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

    /// The state of several buckets (same order as `buckets`), in one
    /// statement: read on every limit check.
    pub async fn limit_states(
        &self,
        buckets: &[LimitBucket<'_>],
    ) -> Result<Vec<BucketState>, StoreError> {
        let mut conn = self.pool().acquire().await?;
        states_of(&mut conn, buckets).await
    }

    /// Atomic read-modify-write of several buckets: reads their states,
    /// hands them to `decide` (same order as `buckets`), and, when it says to
    /// proceed, writes the TATs it returns (`(index, new_tat)`) together with
    /// the `guarded` write, in one transaction on the single writer
    /// connection. Concurrent spenders are serialised, the last unit of a
    /// limit is spent exactly once, and a spend never outlives the write it
    /// paid for (one commit, one fsync). Returns `decide`'s value and whether
    /// the writes were committed (false: denied, or the guarded order moved).
    pub async fn limit_update<R, F>(
        &self,
        buckets: &[LimitBucket<'_>],
        decide: F,
        guarded: Option<Guarded<'_>>,
    ) -> Result<(R, bool), StoreError>
    where
        F: FnOnce(&[BucketState]) -> (Vec<(usize, i64)>, R, bool),
    {
        let mut tx = self.writer().begin().await?;
        let states = states_of(&mut tx, buckets).await?;
        let (writes, result, proceed) = decide(&states);
        if !proceed {
            return Ok((result, false));
        }
        write_tats(&mut tx, buckets, &writes).await?;
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

    /// What newOrder decides with, in one statement (see [`NewOrderFacts`]).
    /// `identifiers` are the order's identifier values, wildcards without
    /// their `*.`; `names` is the sorted name set as certificates store it.
    pub async fn new_order_facts(
        &self,
        account_id: &str,
        identifiers: &[&str],
        names: &str,
        renewal_since: i64,
        now: i64,
    ) -> Result<NewOrderFacts, StoreError> {
        let marks: Vec<String> = (0..identifiers.len().max(1))
            .map(|i| format!("${}", i + 5))
            .collect();
        let paused = format!(
            "FROM ca_paused WHERE account_id = $1 AND paused_at IS NOT NULL AND identifier IN ({}) \
             ORDER BY identifier LIMIT 1",
            marks.join(", ")
        );
        let sql = format!(
            "SELECT \
             (SELECT COUNT(*) FROM ca_authzs WHERE account_id = $1 \
              AND status IN ('pending', 'processing') AND expires_at > $2) AS pending_authzs, \
             ({}) AS renewal, \
             (SELECT identifier {paused}) AS paused_identifier, \
             (SELECT failures {paused}) AS paused_failures",
            renewed_sql("$1", "$3", "$4")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(now)
            .bind(names)
            .bind(renewal_since);
        if identifiers.is_empty() {
            q = q.bind("");
        }
        for ident in identifiers {
            q = q.bind(*ident);
        }
        let row = q.fetch_one(self.pool()).await?;
        let paused_identifier: Option<String> = row.try_get("paused_identifier")?;
        let paused_failures: Option<i64> = row.try_get("paused_failures")?;
        Ok(NewOrderFacts {
            paused: paused_identifier.zip(paused_failures),
            pending_authzs: row.try_get("pending_authzs")?,
            renewal: row.try_get::<i64, _>("renewal")? > 0,
        })
    }

    /// What finalize decides with, in one statement: whether the CSR's key
    /// (`spki_sha256`) is blocked, and whether the account renews these
    /// `names` (as in [`Store::new_order_facts`]).
    pub async fn finalize_facts(
        &self,
        spki_sha256: &str,
        account_id: &str,
        names: &str,
        renewal_since: i64,
    ) -> Result<FinalizeFacts, StoreError> {
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM ca_blocked_keys WHERE spki_sha256 = $1) AS blocked, \
             ({}) AS renewal",
            renewed_sql("$2", "$3", "$4")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(spki_sha256)
            .bind(account_id)
            .bind(names)
            .bind(renewal_since)
            .fetch_one(self.pool())
            .await?;
        Ok(FinalizeFacts {
            key_blocked: row.try_get::<i64, _>("blocked")? > 0,
            renewal: row.try_get::<i64, _>("renewal")? > 0,
        })
    }

    /// Records a validation's outcome in one commit: the authorization's new
    /// state, compared-and-set against `pending` or `processing` (the
    /// challenge response writes `processing` only when a validation outlasts
    /// its inline wait), and the outcome for pausing: a success clears the
    /// identifier's count, a failure adds one and pauses it at `threshold`
    /// (0: never). Nothing is written when the authorization moved on
    /// (another validation of it recorded first). Returns whether the
    /// authorization was recorded and whether the identifier is paused now.
    pub async fn record_validation(
        &self,
        authz: &AuthzRow,
        identifier: &str,
        success: bool,
        threshold: i64,
        now: i64,
    ) -> Result<(bool, bool), StoreError> {
        let mut tx = self.writer().begin().await?;
        if !crate::ca::update_authz_on(&mut *tx, authz, &["pending", "processing"]).await? {
            return Ok((false, false));
        }
        let account_id = &authz.account_id;
        let mut paused = false;
        if success {
            sqlx::query("DELETE FROM ca_paused WHERE account_id = $1 AND identifier = $2 AND paused_at IS NULL")
                .bind(account_id)
                .bind(identifier)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO ca_paused (account_id, identifier, failures, paused_at) VALUES ($1, $2, 1, NULL) \
                 ON CONFLICT (account_id, identifier) DO UPDATE SET failures = ca_paused.failures + 1",
            )
            .bind(account_id)
            .bind(identifier)
            .execute(&mut *tx)
            .await?;
            paused = threshold > 0
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
        }
        tx.commit().await?;
        Ok((true, paused))
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

/// Writes new TATs (`(index into buckets, tat)`) in one statement; a bucket
/// written twice keeps its last TAT (PostgreSQL refuses a multi-row upsert
/// that touches one row twice).
async fn write_tats(
    conn: &mut sqlx::AnyConnection,
    buckets: &[LimitBucket<'_>],
    writes: &[(usize, i64)],
) -> Result<(), StoreError> {
    let mut rows: Vec<(String, i64)> = Vec::with_capacity(writes.len());
    for &(i, tat) in writes {
        let Some(bucket) = buckets.get(i) else {
            continue;
        };
        let bucket = bucket.bucket();
        rows.retain(|(b, _)| *b != bucket);
        rows.push((bucket, tat));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let values: Vec<String> = (0..rows.len())
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let sql = format!(
        "INSERT INTO ca_limit_buckets (bucket, tat) VALUES {} \
         ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat",
        values.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (bucket, tat) in rows {
        q = q.bind(bucket).bind(tat);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// SQL counting (0 or 1) the account's certificates for exactly `names`
/// issued since `since` (placeholders): the 120-day renewal exemption. Per
/// account, so that a set someone else was issued buys no exemption for
/// anyone who merely names it.
fn renewed_sql(account: &str, names: &str, since: &str) -> String {
    format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM ca_certificates WHERE names = {names} \
         AND issued_at >= {since} AND account_id = {account} LIMIT 1) AS renewed"
    )
}

/// The states of `buckets` (in their order) in one statement on `conn`:
/// their TATs and their overrides, as one `UNION ALL`.
async fn states_of(
    conn: &mut sqlx::AnyConnection,
    buckets: &[LimitBucket<'_>],
) -> Result<Vec<BucketState>, StoreError> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let n = buckets.len();
    let tat_marks: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    let override_marks: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "(limit_name = ${} AND bucket_key = ${})",
                n + 2 * i + 1,
                n + 2 * i + 2
            )
        })
        .collect();
    let sql = format!(
        "SELECT 'tat' AS kind, bucket AS k1, '' AS k2, tat, 0 AS count, 0 AS period_seconds, 0 AS burst \
         FROM ca_limit_buckets WHERE bucket IN ({}) \
         UNION ALL \
         SELECT 'override', limit_name, bucket_key, 0, count, period_seconds, burst \
         FROM ca_limit_overrides WHERE {}",
        tat_marks.join(", "),
        override_marks.join(" OR ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in buckets {
        q = q.bind(b.bucket());
    }
    for b in buckets {
        q = q.bind(b.limit_name).bind(b.bucket_key);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut tats = std::collections::HashMap::new();
    let mut overrides = Vec::new();
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        if kind == "tat" {
            let bucket: String = row.try_get("k1")?;
            tats.insert(bucket, row.try_get::<i64, _>("tat")?);
        } else {
            overrides.push(LimitOverrideRow {
                limit_name: row.try_get("k1")?,
                bucket_key: row.try_get("k2")?,
                count: row.try_get("count")?,
                period_seconds: row.try_get("period_seconds")?,
                burst: row.try_get("burst")?,
            });
        }
    }
    Ok(buckets
        .iter()
        .map(|b| BucketState {
            tat: tats.get(&b.bucket()).copied(),
            limit_override: overrides
                .iter()
                .find(|o| o.limit_name == b.limit_name && o.bucket_key == b.bucket_key)
                .cloned(),
        })
        .collect())
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
        let b = [LimitBucket {
            limit_name: "L",
            bucket_key: "k",
        }];
        assert_eq!(store.limit_tat("L:k").await.expect("read"), None);
        let seen = store
            .limit_update(&b, |states| (vec![(0, 42)], states.to_vec(), true), None)
            .await
            .expect("update");
        assert_eq!(seen, (vec![BucketState::default()], true));
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
        // A bucket written twice in one update keeps its last TAT.
        store
            .limit_update(&[b[0], b[0]], |_| (vec![(0, 50), (1, 51)], (), true), None)
            .await
            .expect("update twice");
        assert_eq!(store.limit_tat("L:k").await.expect("read"), Some(51));
        store
            .limit_update(&b, |_| (vec![(0, 43)], (), true), None)
            .await
            .expect("update back");

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

        // The batched read answers per bucket, in order, absent ones as None.
        let bucket = |limit_name, bucket_key| LimitBucket {
            limit_name,
            bucket_key,
        };
        let states = store
            .limit_states(&[
                bucket("CertificatesPerDomain", "a.test"),
                bucket("L", "k"),
                bucket("CertificatesPerFQDNSet", "a.test"),
                bucket("CertificatesPerFQDNSet", "b.test"),
            ])
            .await
            .expect("states");
        let tats: Vec<Option<i64>> = states.iter().map(|s| s.tat).collect();
        assert_eq!(tats, vec![None, Some(43), None, None]);
        let found: Vec<Option<LimitOverrideRow>> =
            states.into_iter().map(|s| s.limit_override).collect();
        assert_eq!(found, vec![None, None, Some(o), None]);
        assert!(store.limit_states(&[]).await.expect("none").is_empty());
    }

    fn authz(id: &str, status: &str) -> AuthzRow {
        AuthzRow {
            id: id.into(),
            account_id: "a1".into(),
            identifier: "dns:a.test".into(),
            status: status.into(),
            expires_at: 1_000,
            data: "{}".into(),
        }
    }

    #[tokio::test]
    async fn order_and_finalize_facts_come_from_one_read_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("open");
        let facts = |store: &Store| {
            let store = store.clone();
            async move {
                store
                    .new_order_facts("a1", &["b.test", "a.test"], "a.test,b.test", 100, 500)
                    .await
                    .expect("facts")
            }
        };
        assert_eq!(facts(&store).await, NewOrderFacts::default());

        // Two pending authorizations count; one past its expiry does not.
        let order = OrderRow {
            id: "o1".into(),
            account_id: "a1".into(),
            status: "pending".into(),
            expires_at: 1_000,
            data: "{}".into(),
        };
        let expired = AuthzRow {
            expires_at: 400,
            ..authz("z3", "pending")
        };
        store
            .insert_order(
                &order,
                &[authz("z1", "pending"), authz("z2", "pending"), expired],
                1,
            )
            .await
            .expect("insert");
        assert_eq!(facts(&store).await.pending_authzs, 2);

        // A validation outcome is compared-and-set, and failures pause.
        let failed = authz("z1", "invalid");
        assert_eq!(
            store
                .record_validation(&failed, "b.test", false, 1, 5)
                .await
                .expect("record"),
            (true, true)
        );
        assert_eq!(
            store
                .record_validation(&failed, "b.test", false, 1, 6)
                .await
                .expect("again"),
            (false, false),
            "an authorization that moved on records nothing"
        );
        let now = facts(&store).await;
        assert_eq!(now.paused, Some(("b.test".to_string(), 1)));
        assert_eq!(now.pending_authzs, 1);

        // Certificates for exactly these names, of this account, since the
        // lookback make a renewal; a blocked key is seen at finalize.
        sqlx::query(
            "INSERT INTO ca_certificates (serial, account_id, order_id, names, spki_sha256, not_before, \
             not_after, profile, chain_pem, status, issued_at) \
             VALUES ('01', 'a1', 'o1', 'a.test,b.test', 'k', 0, 9, 'p', '', 'valid', 150)",
        )
        .execute(store.writer())
        .await
        .expect("certificate");
        sqlx::query("INSERT INTO ca_blocked_keys (spki_sha256, source_serial, blocked_at) VALUES ('bad', '01', 1)")
            .execute(store.writer())
            .await
            .expect("block");
        assert!(facts(&store).await.renewal);
        let fin = |spki, account, since| {
            let store = store.clone();
            async move {
                store
                    .finalize_facts(spki, account, "a.test,b.test", since)
                    .await
                    .expect("finalize facts")
            }
        };
        assert_eq!(
            fin("bad", "a1", 100).await,
            FinalizeFacts {
                key_blocked: true,
                renewal: true
            }
        );
        assert_eq!(fin("good", "a1", 200).await, FinalizeFacts::default());
        assert!(!fin("good", "a2", 100).await.renewal);
    }
}
