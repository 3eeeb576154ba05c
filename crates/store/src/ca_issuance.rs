//! Serial reservations and signing intents of the built-in CA (Boulder's
//! "serials" and linting-before-signing record): a row exists before the
//! CA key signs anything, so no signature goes unrecorded.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// One reserved serial and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuanceRow {
    /// Lowercase hex serial, reserved before signing (unique).
    pub serial: String,
    /// The order the certificate is for.
    pub order_id: String,
    /// The account that finalized it.
    pub account_id: String,
    /// Sorted identifier values joined by `,`.
    pub names: String,
    /// Hex SHA-256 of the subscriber's SPKI.
    pub spki_sha256: String,
    /// Profile name.
    pub profile: String,
    /// `intent`, `issued`, `discarded` or `failed`.
    pub state: String,
    /// Why a signature was discarded or signing failed.
    pub detail: Option<String>,
    /// A discarded certificate, base64 DER: it was signed, so it is kept.
    pub cert_der: Option<String>,
    /// When the serial was reserved, unix seconds.
    pub created_at: i64,
    /// Last state change, unix seconds.
    pub updated_at: i64,
}

fn issuance_from(row: &AnyRow) -> Result<IssuanceRow, sqlx::Error> {
    Ok(IssuanceRow {
        serial: row.try_get("serial")?,
        order_id: row.try_get("order_id")?,
        account_id: row.try_get("account_id")?,
        names: row.try_get("names")?,
        spki_sha256: row.try_get("spki_sha256")?,
        profile: row.try_get("profile")?,
        state: row.try_get("state")?,
        detail: row.try_get("detail")?,
        cert_der: row.try_get("cert_der")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Reserves a serial and records the intent to sign it, committed before
    /// signing; `Conflict` when the serial was ever reserved before.
    pub async fn reserve_serial(&self, r: &IssuanceRow) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO ca_issuances (serial, order_id, account_id, names, spki_sha256, profile, state, \
             detail, cert_der, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'intent', NULL, NULL, $7, $7)",
        )
        .bind(&r.serial)
        .bind(&r.order_id)
        .bind(&r.account_id)
        .bind(&r.names)
        .bind(&r.spki_sha256)
        .bind(&r.profile)
        .bind(r.created_at)
        .execute(self.writer())
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict(format!("serial {}", r.serial)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Closes an intent that did not become a served certificate: `discarded`
    /// (signed, then a limit or a race lost; `cert_der` keeps the signature)
    /// or `failed` (nothing was signed).
    pub async fn close_issuance(
        &self,
        serial: &str,
        state: &str,
        detail: &str,
        cert_der: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE ca_issuances SET state = $1, detail = $2, cert_der = $3, updated_at = $4 \
             WHERE serial = $5 AND state = 'intent'",
        )
        .bind(state)
        .bind(detail)
        .bind(cert_der)
        .bind(now)
        .bind(serial)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Every reserved serial, oldest first (for `certkeeper ca issuances`).
    pub async fn issuances(&self) -> Result<Vec<IssuanceRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT serial, order_id, account_id, names, spki_sha256, profile, state, detail, cert_der, \
             created_at, updated_at FROM ca_issuances ORDER BY created_at, serial",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(issuance_from).collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(serial: &str) -> IssuanceRow {
        IssuanceRow {
            serial: serial.into(),
            order_id: "o".into(),
            account_id: "a".into(),
            names: "x.example".into(),
            spki_sha256: "k".into(),
            profile: "classic".into(),
            state: "intent".into(),
            detail: None,
            cert_der: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    /// A serial is reserved once; an intent closes once.
    #[tokio::test]
    async fn serials_are_reserved_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("open");
        store.reserve_serial(&row("01")).await.expect("reserve");
        assert!(
            store
                .reserve_serial(&row("01"))
                .await
                .expect_err("twice")
                .is_conflict()
        );
        store
            .close_issuance("01", "discarded", "lost a race", Some("AAAA"), 2)
            .await
            .expect("close");
        store
            .close_issuance("01", "failed", "again", None, 3)
            .await
            .expect("close again is a no-op");
        let all = store.issuances().await.expect("list");
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].state.as_str(), all[0].cert_der.as_deref()),
            ("discarded", Some("AAAA"))
        );
    }
}
