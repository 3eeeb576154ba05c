//! Revocations of the built-in CA, each written with its audit record in
//! the same transaction: no certificate changes status without a row in
//! `ca_revocations` saying which key it carried, why, and who asked.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// RFC 5280 §5.3.1 keyCompromise, the only reason a cascade writes.
const KEY_COMPROMISE: i64 = 1;

/// One revocation as audited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRow {
    /// Random id of the record.
    pub id: String,
    /// Lowercase hex serial of the revoked certificate.
    pub serial: String,
    /// Hex SHA-256 of the certificate's SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// The SubjectPublicKeyInfo itself, base64 DER: enough to block the key
    /// later even if the hash scheme changes.
    pub spki_der: String,
    /// RFC 5280 §5.3.1 reason code in force after this record.
    pub reason: i64,
    /// Reason code the request asked for (`None` for a cascade).
    pub requested_reason: Option<i64>,
    /// How the request was authorized: `subscriber-account`,
    /// `authorized-account`, `certificate-key` or `cascade`.
    pub method: String,
    /// The account id, or `jwk:<thumbprint>` for a certificate-key request,
    /// or the serial whose proven compromise cascaded.
    pub requester: String,
    /// For a cascade: the serial whose certificate-key request proved the compromise.
    pub source_serial: Option<String>,
    /// Whether this revocation blocked the key for future issuance.
    pub key_blocked: bool,
    /// The revocation date the CRL carries (kept when only the reason changes).
    pub revoked_at: i64,
    /// When the record was written, unix seconds.
    pub recorded_at: i64,
}

/// What a revocation did to the certificate's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// It was valid and is now revoked.
    Revoked,
    /// It was revoked for another reason; the reason is now keyCompromise
    /// and the original revocation date is kept (Boulder's
    /// `UpdateRevokedCertificate`).
    ReasonRaised,
    /// Nothing changed: already revoked (with keyCompromise, for a
    /// key-compromise request).
    Unchanged,
}

/// The result of a proven key compromise.
#[derive(Clone, Debug)]
pub struct KeyCompromiseOutcome {
    /// What happened to the certificate the request named.
    pub primary: RevokeOutcome,
    /// Serials of the other certificates revoked (or raised to keyCompromise) with it.
    pub cascaded: Vec<String>,
    /// True when more certificates carry the key than the cap allowed.
    pub capped: bool,
}

fn revocation_from(row: &AnyRow) -> Result<RevocationRow, sqlx::Error> {
    Ok(RevocationRow {
        id: row.try_get("id")?,
        serial: row.try_get("serial")?,
        spki_sha256: row.try_get("spki_sha256")?,
        spki_der: row.try_get("spki_der")?,
        reason: row.try_get("reason")?,
        requested_reason: row.try_get("requested_reason")?,
        method: row.try_get("method")?,
        requester: row.try_get("requester")?,
        source_serial: row.try_get("source_serial")?,
        key_blocked: row.try_get::<i64, _>("key_blocked")? != 0,
        revoked_at: row.try_get("revoked_at")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}

impl Store {
    /// Revokes a valid certificate and records how, in one transaction;
    /// `Unchanged` (nothing written) when it was already revoked.
    /// `proven_spki_sha256` marks the certificate key as having signed.
    pub async fn revoke_recorded(
        &self,
        rec: &RevocationRow,
        proven_spki_sha256: Option<&str>,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut tx = self.writer().begin().await?;
        let outcome = revoke_tx(&mut tx, rec, proven_spki_sha256, false).await?;
        if outcome != RevokeOutcome::Unchanged {
            insert_record(&mut tx, rec).await?;
            tx.commit().await?;
        }
        Ok(outcome)
    }

    /// A compromise proven by the certificate key, in one transaction: the
    /// named certificate is revoked (or raised to keyCompromise, keeping its
    /// date), the key is blocked, and at most `cap` other unexpired
    /// certificates with the key are revoked the same way, oldest first.
    /// `rec` is the record of the named certificate; the cascade's records
    /// are derived from it. The cascade runs only when this call blocks
    /// the key: whatever the cap left is for an operator to review.
    pub async fn revoke_key_compromise(
        &self,
        rec: &RevocationRow,
        cap: u32,
        now: i64,
    ) -> Result<KeyCompromiseOutcome, StoreError> {
        let mut tx = self.writer().begin().await?;
        let spki = rec.spki_sha256.as_str();
        let primary = revoke_tx(&mut tx, rec, Some(spki), true).await?;
        if primary != RevokeOutcome::Unchanged {
            let mut r = rec.clone();
            if primary == RevokeOutcome::ReasonRaised {
                r.revoked_at = revoked_at_tx(&mut tx, &rec.serial).await?.unwrap_or(now);
            }
            insert_record(&mut tx, &r).await?;
        }
        // Boulder blocks the key even when the certificate was already
        // revoked: the proof is the signature, not the state of the row.
        let newly_blocked = sqlx::query(
            "INSERT INTO ca_blocked_keys (spki_sha256, source_serial, blocked_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(spki)
        .bind(&rec.serial)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !newly_blocked {
            // The cascade runs once per key, when the compromise is first
            // proven; repeating the proof must not page past the cap.
            tx.commit().await?;
            return Ok(KeyCompromiseOutcome {
                primary,
                cascaded: Vec::new(),
                capped: false,
            });
        }
        let rows = sqlx::query(
            "SELECT serial FROM ca_certificates WHERE spki_sha256 = $1 AND serial <> $2 AND not_after > $3 \
             AND (status = 'valid' OR (status = 'revoked' AND COALESCE(revocation_reason, 0) <> 1)) \
             ORDER BY issued_at, serial LIMIT $4",
        )
        .bind(spki)
        .bind(&rec.serial)
        .bind(now)
        .bind(i64::from(cap) + 1)
        .fetch_all(&mut *tx)
        .await?;
        let serials: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("serial"))
            .collect::<Result<_, _>>()?;
        let capped = serials.len() > cap as usize;
        let mut cascaded = Vec::new();
        for serial in serials.into_iter().take(cap as usize) {
            let mut r = RevocationRow {
                id: format!("{}-{}", rec.id, cascaded.len() + 1),
                serial,
                requested_reason: None,
                reason: KEY_COMPROMISE,
                method: "cascade".into(),
                requester: rec.serial.clone(),
                source_serial: Some(rec.serial.clone()),
                key_blocked: false,
                ..rec.clone()
            };
            match revoke_tx(&mut tx, &r, Some(spki), true).await? {
                RevokeOutcome::Unchanged => continue,
                RevokeOutcome::Revoked => {}
                RevokeOutcome::ReasonRaised => {
                    r.revoked_at = revoked_at_tx(&mut tx, &r.serial).await?.unwrap_or(now);
                }
            }
            insert_record(&mut tx, &r).await?;
            cascaded.push(r.serial);
        }
        tx.commit().await?;
        Ok(KeyCompromiseOutcome {
            primary,
            cascaded,
            capped,
        })
    }

    /// Every revocation record, oldest first (for `certkeeper ca revocations`).
    pub async fn revocations(&self) -> Result<Vec<RevocationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, serial, spki_sha256, spki_der, reason, requested_reason, method, requester, \
             source_serial, key_blocked, revoked_at, recorded_at FROM ca_revocations ORDER BY recorded_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(revocation_from).collect::<Result<_, _>>()?)
    }
}

/// Moves a certificate to revoked with `rec.reason` at `rec.revoked_at`; with
/// `raise`, a certificate revoked for another reason gets keyCompromise and
/// keeps its date.
async fn revoke_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rec: &RevocationRow,
    proven_spki_sha256: Option<&str>,
    raise: bool,
) -> Result<RevokeOutcome, StoreError> {
    let r = sqlx::query(
        "UPDATE ca_certificates SET status = 'revoked', revoked_at = $1, revocation_reason = $2, revoked_spki_sha256 = $3 \
         WHERE serial = $4 AND status = 'valid'",
    )
    .bind(rec.revoked_at)
    .bind(rec.reason)
    .bind(proven_spki_sha256)
    .bind(&rec.serial)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 1 {
        return Ok(RevokeOutcome::Revoked);
    }
    if !raise {
        return Ok(RevokeOutcome::Unchanged);
    }
    let r = sqlx::query(
        "UPDATE ca_certificates SET revocation_reason = $1, revoked_spki_sha256 = $2 \
         WHERE serial = $3 AND status = 'revoked' AND COALESCE(revocation_reason, 0) <> $1",
    )
    .bind(KEY_COMPROMISE)
    .bind(proven_spki_sha256)
    .bind(&rec.serial)
    .execute(&mut **tx)
    .await?;
    Ok(if r.rows_affected() == 1 {
        RevokeOutcome::ReasonRaised
    } else {
        RevokeOutcome::Unchanged
    })
}

async fn revoked_at_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    serial: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT revoked_at FROM ca_certificates WHERE serial = $1")
        .bind(serial)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>, _>("revoked_at"))
        .transpose()?
        .flatten())
}

async fn insert_record(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    r: &RevocationRow,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ca_revocations (id, serial, spki_sha256, spki_der, reason, requested_reason, method, \
         requester, source_serial, key_blocked, revoked_at, recorded_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&r.id)
    .bind(&r.serial)
    .bind(&r.spki_sha256)
    .bind(&r.spki_der)
    .bind(r.reason)
    .bind(r.requested_reason)
    .bind(&r.method)
    .bind(&r.requester)
    .bind(&r.source_serial)
    .bind(i64::from(r.key_blocked))
    .bind(r.revoked_at)
    .bind(r.recorded_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
