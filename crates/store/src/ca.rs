//! Tables of the built-in CA: accounts, orders, authorizations, certificates,
//! blocked keys and external account binding keys.
//!
//! Rows carry the CA's JSON document in `data`; the typed columns beside it
//! exist to index and to make state transitions compare-and-set, so two
//! requests racing on one order cannot both win.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// An ACME account as stored.
#[derive(Clone, Debug)]
pub struct AccountRow {
    /// Opaque account id (the last path segment of the account URL).
    pub id: String,
    /// RFC 7638 thumbprint of the account key; unique across accounts.
    pub thumbprint: String,
    /// `valid`, `deactivated` or `revoked`.
    pub status: String,
    /// The CA's JSON document for the account.
    pub data: String,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// An order as stored.
#[derive(Clone, Debug)]
pub struct OrderRow {
    /// Opaque order id.
    pub id: String,
    /// Owning account id.
    pub account_id: String,
    /// RFC 8555 §7.1.6 order status.
    pub status: String,
    /// Expiry, unix seconds.
    pub expires_at: i64,
    /// The CA's JSON document for the order.
    pub data: String,
}

/// An authorization as stored.
#[derive(Clone, Debug)]
pub struct AuthzRow {
    /// Opaque authorization id.
    pub id: String,
    /// Owning account id.
    pub account_id: String,
    /// `type:value` of the identifier, used to find reusable authorizations.
    pub identifier: String,
    /// RFC 8555 §7.1.6 authorization status.
    pub status: String,
    /// Expiry, unix seconds.
    pub expires_at: i64,
    /// The CA's JSON document for the authorization (with its challenges).
    pub data: String,
}

/// An issued certificate as stored.
#[derive(Clone, Debug)]
pub struct CertificateRow {
    /// Lowercase hex serial number.
    pub serial: String,
    /// Account the certificate was issued to.
    pub account_id: String,
    /// Order that produced it.
    pub order_id: String,
    /// Sorted identifier values joined by `,`.
    pub names: String,
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// Validity start, unix seconds.
    pub not_before: i64,
    /// Validity end, unix seconds.
    pub not_after: i64,
    /// Profile the certificate was issued under.
    pub profile: String,
    /// Leaf followed by the intermediate, PEM.
    pub chain_pem: String,
    /// `valid` or `revoked`.
    pub status: String,
    /// Revocation time, unix seconds.
    pub revoked_at: Option<i64>,
    /// RFC 5280 §5.3.1 reason code.
    pub revocation_reason: Option<i64>,
    /// Hex SHA-256 of the key that signed the revocation request, when it was
    /// the certificate key: the audit record of who proved what.
    pub revoked_spki_sha256: Option<String>,
    /// When the certificate was signed, unix seconds.
    pub issued_at: i64,
    /// ARI certID of the certificate this one replaced (RFC 9773 §5).
    pub replaces: Option<String>,
}

fn account_from(row: &AnyRow) -> Result<AccountRow, sqlx::Error> {
    Ok(AccountRow {
        id: row.try_get("id")?,
        thumbprint: row.try_get("thumbprint")?,
        status: row.try_get("status")?,
        data: row.try_get("data")?,
        created_at: row.try_get("created_at")?,
    })
}

fn order_from(row: &AnyRow) -> Result<OrderRow, sqlx::Error> {
    Ok(OrderRow {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        status: row.try_get("status")?,
        expires_at: row.try_get("expires_at")?,
        data: row.try_get("data")?,
    })
}

fn authz_from(row: &AnyRow) -> Result<AuthzRow, sqlx::Error> {
    Ok(AuthzRow {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        identifier: row.try_get("identifier")?,
        status: row.try_get("status")?,
        expires_at: row.try_get("expires_at")?,
        data: row.try_get("data")?,
    })
}

fn certificate_from(row: &AnyRow) -> Result<CertificateRow, sqlx::Error> {
    Ok(CertificateRow {
        serial: row.try_get("serial")?,
        account_id: row.try_get("account_id")?,
        order_id: row.try_get("order_id")?,
        names: row.try_get("names")?,
        spki_sha256: row.try_get("spki_sha256")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        profile: row.try_get("profile")?,
        chain_pem: row.try_get("chain_pem")?,
        status: row.try_get("status")?,
        revoked_at: row.try_get("revoked_at")?,
        revocation_reason: row.try_get("revocation_reason")?,
        revoked_spki_sha256: row.try_get("revoked_spki_sha256")?,
        issued_at: row.try_get("issued_at")?,
        replaces: row.try_get("replaces")?,
    })
}

/// The certificate columns in `certificate_from` order, as a literal so queries stay `&'static str`.
macro_rules! cert_columns {
    () => {
        "serial, account_id, order_id, names, spki_sha256, not_before, not_after, profile, chain_pem, status, revoked_at, revocation_reason, revoked_spki_sha256, issued_at, replaces"
    };
}

impl Store {
    /// Inserts a new account; `Conflict` when its key is already registered.
    pub async fn insert_account(&self, a: &AccountRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "INSERT INTO ca_accounts (id, thumbprint, status, data, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.id)
        .bind(&a.thumbprint)
        .bind(&a.status)
        .bind(&a.data)
        .bind(a.created_at)
        .execute(self.writer())
        .await;
        conflict_as(r, "account key")
    }

    /// Looks an account up by id.
    pub async fn account_by_id(&self, id: &str) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, thumbprint, status, data, created_at FROM ca_accounts WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(account_from).transpose()?)
    }

    /// Looks an account up by the thumbprint of its key.
    pub async fn account_by_thumbprint(
        &self,
        thumbprint: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, thumbprint, status, data, created_at FROM ca_accounts WHERE thumbprint = $1",
        )
        .bind(thumbprint)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(account_from).transpose()?)
    }

    /// Rewrites an account's status, key thumbprint and document;
    /// `Conflict` when the new key belongs to another account.
    pub async fn update_account(&self, a: &AccountRow) -> Result<(), StoreError> {
        let r = sqlx::query(
            "UPDATE ca_accounts SET thumbprint = $1, status = $2, data = $3 WHERE id = $4",
        )
        .bind(&a.thumbprint)
        .bind(&a.status)
        .bind(&a.data)
        .bind(&a.id)
        .execute(self.writer())
        .await;
        conflict_as(r, "account key")
    }

    /// Stores a new order with its new authorizations in one transaction.
    pub async fn insert_order(
        &self,
        order: &OrderRow,
        new_authzs: &[AuthzRow],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        insert_order_tx(&mut tx, order, new_authzs, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Looks an order up by id.
    pub async fn order_by_id(&self, id: &str) -> Result<Option<OrderRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, status, expires_at, data FROM ca_orders WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(order_from).transpose()?)
    }

    /// Ids of an account's orders, newest first.
    pub async fn order_ids_for_account(
        &self,
        account_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM ca_orders WHERE account_id = $1 ORDER BY updated_at DESC LIMIT $2",
        )
        .bind(account_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    /// Moves an order from `expected` to the row's status and document;
    /// false when another request changed it first.
    pub async fn update_order_if(
        &self,
        order: &OrderRow,
        expected: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        update_order_on(self.writer(), order, expected, now).await
    }

    /// Looks an authorization up by id.
    pub async fn authz_by_id(&self, id: &str) -> Result<Option<AuthzRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, identifier, status, expires_at, data FROM ca_authzs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(authz_from).transpose()?)
    }

    /// A valid, unexpired authorization the account already holds for an
    /// identifier (Boulder reuses these instead of validating again).
    pub async fn reusable_authz(
        &self,
        account_id: &str,
        identifier: &str,
        valid_after: i64,
    ) -> Result<Option<AuthzRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, account_id, identifier, status, expires_at, data FROM ca_authzs \
             WHERE account_id = $1 AND identifier = $2 AND status = 'valid' AND expires_at > $3 \
             ORDER BY expires_at DESC LIMIT 1",
        )
        .bind(account_id)
        .bind(identifier)
        .bind(valid_after)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(authz_from).transpose()?)
    }

    /// Authorizations in one status, e.g. `processing` ones to resume after a restart.
    pub async fn authzs_with_status(&self, status: &str) -> Result<Vec<AuthzRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, identifier, status, expires_at, data FROM ca_authzs WHERE status = $1",
        )
        .bind(status)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(authz_from).collect::<Result<_, _>>()?)
    }

    /// Moves an authorization from `expected` to the row's status and document;
    /// false when another request changed it first.
    pub async fn update_authz_if(
        &self,
        authz: &AuthzRow,
        expected: &str,
    ) -> Result<bool, StoreError> {
        update_authz_on(self.writer(), authz, &[expected]).await
    }

    /// Looks a certificate up by lowercase hex serial.
    pub async fn certificate_by_serial(
        &self,
        serial: &str,
    ) -> Result<Option<CertificateRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM ca_certificates WHERE serial = $1"
        ))
        .bind(serial)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(certificate_from).transpose()?)
    }

    /// Every certificate, oldest first (for `certkeeper ca list`).
    pub async fn list_certificates(&self) -> Result<Vec<CertificateRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM ca_certificates ORDER BY issued_at, serial"
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(certificate_from)
            .collect::<Result<_, _>>()?)
    }

    /// Certificates issued in total, and how many of them are revoked.
    pub async fn certificate_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             COALESCE(SUM(CASE WHEN status = 'revoked' THEN 1 ELSE 0 END), 0) AS revoked \
             FROM ca_certificates",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("total")?, row.try_get("revoked")?))
    }

    /// Certificates issued per hour since `since` (unix seconds): (start of
    /// the hour, count), oldest first; hours with none are absent.
    pub async fn issued_per_hour(&self, since: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT (issued_at / 3600) * 3600 AS hour, COUNT(*) AS n FROM ca_certificates \
             WHERE issued_at >= $1 GROUP BY (issued_at / 3600) ORDER BY hour",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("hour")?, r.try_get::<i64, _>("n")?)))
            .collect()
    }

    /// Revoked certificates that have not expired by `now`: the CRL's entries.
    pub async fn revoked_unexpired(&self, now: i64) -> Result<Vec<CertificateRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM ca_certificates WHERE status = 'revoked' AND not_after > $1 ORDER BY revoked_at"
        ))
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(certificate_from)
            .collect::<Result<_, _>>()?)
    }

    /// Stores a new external account binding key (base64url HMAC key).
    pub async fn insert_eab_key(
        &self,
        kid: &str,
        hmac_key_b64: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let r =
            sqlx::query("INSERT INTO ca_eab_keys (kid, hmac_key, created_at) VALUES ($1, $2, $3)")
                .bind(kid)
                .bind(hmac_key_b64)
                .bind(now)
                .execute(self.writer())
                .await;
        conflict_as(r, "EAB key id")
    }

    /// The HMAC key of an unbound EAB key id, if any.
    pub async fn unbound_eab_key(&self, kid: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT hmac_key FROM ca_eab_keys WHERE kid = $1 AND bound_account IS NULL",
        )
        .bind(kid)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("hmac_key")).transpose()?)
    }

    /// Binds an EAB key to an account and creates the account, atomically:
    /// one EAB key makes one account (RFC 8555 §7.3.4).
    pub async fn insert_account_with_eab(
        &self,
        a: &AccountRow,
        kid: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let r = sqlx::query(
            "UPDATE ca_eab_keys SET bound_account = $1 WHERE kid = $2 AND bound_account IS NULL",
        )
        .bind(&a.id)
        .bind(kid)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        let r = sqlx::query(
            "INSERT INTO ca_accounts (id, thumbprint, status, data, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.id)
        .bind(&a.thumbprint)
        .bind(&a.status)
        .bind(&a.data)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await;
        conflict_as(r, "account key")?;
        tx.commit().await?;
        Ok(true)
    }
}

fn conflict_as<T>(r: Result<T, sqlx::Error>, what: &str) -> Result<(), StoreError> {
    match r {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Conflict(what.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// Compare-and-set of an authorization's status, expiry and document: true
/// when it was still in one of the `expected` statuses (at least one) and
/// now holds the row's state.
pub(crate) async fn update_authz_on<'e, E>(
    exec: E,
    authz: &AuthzRow,
    expected: &[&str],
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let marks: Vec<String> = (0..expected.len()).map(|i| format!("${}", i + 5)).collect();
    let sql = format!(
        "UPDATE ca_authzs SET status = $1, expires_at = $2, data = $3 WHERE id = $4 AND status IN ({})",
        marks.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&authz.status)
        .bind(authz.expires_at)
        .bind(&authz.data)
        .bind(&authz.id);
    for status in expected {
        q = q.bind(*status);
    }
    Ok(q.execute(exec).await?.rows_affected() == 1)
}

/// Compare-and-set of an order's status and document: true when the order
/// was still `expected` and now holds the row's state.
async fn update_order_on<'e, E>(
    exec: E,
    order: &OrderRow,
    expected: &str,
    now: i64,
) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let r = sqlx::query("UPDATE ca_orders SET status = $1, data = $2, updated_at = $3 WHERE id = $4 AND status = $5")
        .bind(&order.status)
        .bind(&order.data)
        .bind(now)
        .bind(&order.id)
        .bind(expected)
        .execute(exec)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The writes of [`Store::insert_order`], inside a caller's transaction.
pub(crate) async fn insert_order_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    order: &OrderRow,
    new_authzs: &[AuthzRow],
    now: i64,
) -> Result<(), StoreError> {
    for a in new_authzs {
        sqlx::query(
                "INSERT INTO ca_authzs (id, account_id, identifier, status, expires_at, data) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&a.id)
            .bind(&a.account_id)
            .bind(&a.identifier)
            .bind(&a.status)
            .bind(a.expires_at)
            .bind(&a.data)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
            "INSERT INTO ca_orders (id, account_id, status, expires_at, data, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&order.id)
        .bind(&order.account_id)
        .bind(&order.status)
        .bind(order.expires_at)
        .bind(&order.data)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records an issued certificate and moves its order to `valid`, inside a
/// caller's transaction (so a crash never leaves a signed certificate
/// without its order); false (nothing written) when the order moved first.
pub(crate) async fn insert_certificate_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    cert: &CertificateRow,
    order: &OrderRow,
    order_expected: &str,
    now: i64,
) -> Result<bool, StoreError> {
    if !update_order_on(&mut **tx, order, order_expected, now).await? {
        return Ok(false);
    }
    sqlx::query(concat!(
        "INSERT INTO ca_certificates (",
        cert_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&cert.serial)
    .bind(&cert.account_id)
    .bind(&cert.order_id)
    .bind(&cert.names)
    .bind(&cert.spki_sha256)
    .bind(cert.not_before)
    .bind(cert.not_after)
    .bind(&cert.profile)
    .bind(&cert.chain_pem)
    .bind(&cert.status)
    .bind(cert.revoked_at)
    .bind(cert.revocation_reason)
    .bind(&cert.revoked_spki_sha256)
    .bind(cert.issued_at)
    .bind(&cert.replaces)
    .execute(&mut **tx)
    .await?;
    // The reserved serial's intent is fulfilled in the same commit.
    sqlx::query(
        "UPDATE ca_issuances SET state = 'issued', updated_at = $1 WHERE serial = $2 AND state = 'intent'",
    )
    .bind(now)
    .bind(&cert.serial)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn temp_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        (Store::open_dir(dir.path()).await.expect("open"), dir)
    }

    fn order(id: &str, status: &str) -> OrderRow {
        OrderRow {
            id: id.into(),
            account_id: "a1".into(),
            status: status.into(),
            expires_at: 100,
            data: "{}".into(),
        }
    }

    #[tokio::test]
    async fn account_key_is_unique() {
        let (store, _dir) = temp_store().await;
        let a = AccountRow {
            id: "a1".into(),
            thumbprint: "t".into(),
            status: "valid".into(),
            data: "{}".into(),
            created_at: 1,
        };
        store.insert_account(&a).await.expect("first insert");
        let dup = AccountRow {
            id: "a2".into(),
            ..a.clone()
        };
        assert!(
            store
                .insert_account(&dup)
                .await
                .expect_err("duplicate key")
                .is_conflict()
        );
        assert_eq!(
            store
                .account_by_thumbprint("t")
                .await
                .expect("query")
                .expect("found")
                .id,
            "a1"
        );
    }

    #[tokio::test]
    async fn order_transition_is_compare_and_set() {
        let (store, _dir) = temp_store().await;
        store
            .insert_order(&order("o1", "pending"), &[], 1)
            .await
            .expect("insert");
        assert!(
            store
                .update_order_if(&order("o1", "ready"), "pending", 2)
                .await
                .expect("cas")
        );
        // A second writer that still believes the order is pending loses.
        assert!(
            !store
                .update_order_if(&order("o1", "invalid"), "pending", 3)
                .await
                .expect("cas")
        );
        assert_eq!(
            store
                .order_by_id("o1")
                .await
                .expect("q")
                .expect("row")
                .status,
            "ready"
        );
    }

    #[tokio::test]
    async fn state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open_dir(dir.path()).await.expect("open");
            store
                .insert_order(&order("o1", "pending"), &[], 1)
                .await
                .expect("insert");
        }
        let store = Store::open_dir(dir.path()).await.expect("reopen");
        assert!(store.order_by_id("o1").await.expect("q").is_some());
    }
}
