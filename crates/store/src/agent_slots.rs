//! The agent's per-slot lifecycle state, which slot is served, revocations,
//! the local blocked-key registry and lifecycle events.
//!
//! Reads that the daemon does at start come in bulk ([`Store::slots_all`],
//! [`Store::current_certs`]): one query each, whatever the number of
//! certificates, and without private keys or chains, so planning 100k
//! certificates costs two scans and no PEM parsing.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::agent::{MANAGED_COLUMNS, managed_from, wrap_domains};
use crate::{ManagedCertRow, Store, StoreError};

/// Lifecycle state of one slot (`primary` or `backup`) of a managed certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SlotRow {
    /// The managed certificate's name.
    pub name: String,
    /// `primary` or `backup`.
    pub slot: String,
    /// Fingerprint of the configuration the state belongs to.
    pub fingerprint: String,
    /// Issuer of the slot's current certificate.
    pub current_issuer: Option<String>,
    /// Serial of the slot's current certificate.
    pub current_serial: Option<String>,
    /// URL of the order in flight.
    pub order_url: Option<String>,
    /// PKCS#8 PEM key of the order in flight. Never logged.
    pub order_key_pem: Option<String>,
    /// Consecutive failures.
    pub failures: i64,
    /// No attempt before this time, unix seconds.
    pub next_attempt: i64,
    /// The last failure, for `status`.
    pub last_error: Option<String>,
    /// ARI window start.
    pub ari_start: Option<i64>,
    /// ARI window end.
    pub ari_end: Option<i64>,
    /// Chosen renewal time inside the window.
    pub ari_chosen: Option<i64>,
    /// When to ask the CA for the window again (its Retry-After).
    pub ari_next_poll: Option<i64>,
    /// When to fetch the current certificate's CRL again.
    pub crl_next_check: Option<i64>,
}

impl std::fmt::Debug for SlotRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The order key stays out of logs and panics.
        f.debug_struct("SlotRow")
            .field("name", &self.name)
            .field("slot", &self.slot)
            .field("current_serial", &self.current_serial)
            .field("order_url", &self.order_url)
            .field("failures", &self.failures)
            .field("next_attempt", &self.next_attempt)
            .finish_non_exhaustive()
    }
}

impl SlotRow {
    /// The state of a slot never seen before.
    pub fn new(name: &str, slot: &str) -> SlotRow {
        SlotRow {
            name: name.to_string(),
            slot: slot.to_string(),
            ..SlotRow::default()
        }
    }
}

/// What the planner needs of a certificate: everything but the PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertMeta {
    /// Managed certificate name.
    pub name: String,
    /// Slot it was obtained for.
    pub slot: String,
    /// Issuer name.
    pub issuer: String,
    /// Lowercase hex serial.
    pub serial: String,
    /// Hex SHA-256 of the SPKI.
    pub spki_sha256: String,
    /// Validity start, unix seconds.
    pub not_before: i64,
    /// Validity end, unix seconds.
    pub not_after: i64,
    /// When the agent learned it was revoked.
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    pub revocation_reason: Option<String>,
}

/// One key in the local blocked-key registry.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BlockedKeyRow {
    /// Hex SHA-256 of the SPKI.
    pub spki_sha256: String,
    /// Why (`keyCompromise`).
    pub reason: String,
    /// Who said so: `revoked by certkeeper`, `reported by the operator`, `CRL of ISSUER`.
    pub source: String,
    /// When, unix seconds.
    pub blocked_at: i64,
}

/// One lifecycle event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct EventRow {
    /// When, unix seconds.
    pub at: i64,
    /// Managed certificate name.
    pub name: String,
    /// Slot.
    pub slot: String,
    /// `obtained`, `renewed`, `swapped`, `revoked`, `deployed`, `failed`…
    pub kind: String,
    /// Human-readable detail.
    pub detail: String,
}

fn event_from(r: &sqlx::any::AnyRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        at: r.try_get("at")?,
        name: r.try_get("name")?,
        slot: r.try_get("slot")?,
        kind: r.try_get("kind")?,
        detail: r.try_get("detail")?,
    })
}

const SLOT_COLUMNS: &str = "name, slot, fingerprint, current_issuer, current_serial, order_url, order_key_pem, \
     failures, next_attempt, last_error, ari_start, ari_end, ari_chosen, ari_next_poll, crl_next_check";

fn slot_from(r: &AnyRow) -> Result<SlotRow, sqlx::Error> {
    Ok(SlotRow {
        name: r.try_get("name")?,
        slot: r.try_get("slot")?,
        fingerprint: r.try_get("fingerprint")?,
        current_issuer: r.try_get("current_issuer")?,
        current_serial: r.try_get("current_serial")?,
        order_url: r.try_get("order_url")?,
        order_key_pem: r.try_get("order_key_pem")?,
        failures: r.try_get("failures")?,
        next_attempt: r.try_get("next_attempt")?,
        last_error: r.try_get("last_error")?,
        ari_start: r.try_get("ari_start")?,
        ari_end: r.try_get("ari_end")?,
        ari_chosen: r.try_get("ari_chosen")?,
        ari_next_poll: r.try_get("ari_next_poll")?,
        crl_next_check: r.try_get("crl_next_check")?,
    })
}

fn meta_from(r: &AnyRow) -> Result<CertMeta, sqlx::Error> {
    Ok(CertMeta {
        name: r.try_get("name")?,
        slot: r.try_get("slot")?,
        issuer: r.try_get("issuer")?,
        serial: r.try_get("serial")?,
        spki_sha256: r.try_get("spki_sha256")?,
        not_before: r.try_get("not_before")?,
        not_after: r.try_get("not_after")?,
        revoked_at: r.try_get("revoked_at")?,
        revocation_reason: r.try_get("revocation_reason")?,
    })
}

/// Parses one row of [`Store::planning_rows`].
fn planning_row(row: &str) -> Result<(SlotRow, Option<CertMeta>), StoreError> {
    let f: Vec<&str> = row.split('\u{1f}').collect();
    let corrupt = || {
        StoreError::Corrupt(
            "agent_slots planning row".into(),
            row.chars().take(80).collect(),
        )
    };
    if f.len() != 18 {
        return Err(corrupt());
    }
    let text = |i: usize| (!f[i].is_empty()).then(|| f[i].to_string());
    let int = |i: usize| -> Result<Option<i64>, StoreError> {
        if f[i].is_empty() {
            return Ok(None);
        }
        f[i].parse::<i64>().map(Some).map_err(|_| corrupt())
    };
    let slot = SlotRow {
        name: f[0].to_string(),
        slot: f[1].to_string(),
        fingerprint: f[2].to_string(),
        order_url: text(3),
        failures: int(4)?.unwrap_or(0),
        next_attempt: int(5)?.unwrap_or(0),
        ari_start: int(6)?,
        ari_end: int(7)?,
        ari_chosen: int(8)?,
        ari_next_poll: int(9)?,
        crl_next_check: int(10)?,
        ..SlotRow::default()
    };
    let meta = match (text(11), int(15)?) {
        (Some(issuer), Some(_)) => Some(CertMeta {
            name: slot.name.clone(),
            slot: slot.slot.clone(),
            issuer,
            serial: f[12].to_string(),
            spki_sha256: f[13].to_string(),
            not_before: int(14)?.ok_or_else(corrupt)?,
            not_after: int(15)?.ok_or_else(corrupt)?,
            revoked_at: int(16)?,
            revocation_reason: text(17),
        }),
        _ => None,
    };
    Ok((slot, meta))
}

const UPSERT_SLOT: &str = "INSERT INTO agent_slots (name, slot, fingerprint, current_issuer, current_serial, order_url, order_key_pem, \
     failures, next_attempt, last_error, ari_start, ari_end, ari_chosen, ari_next_poll, crl_next_check, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
     ON CONFLICT (name, slot) DO UPDATE SET fingerprint = excluded.fingerprint, current_issuer = excluded.current_issuer, \
     current_serial = excluded.current_serial, order_url = excluded.order_url, order_key_pem = excluded.order_key_pem, \
     failures = excluded.failures, next_attempt = excluded.next_attempt, last_error = excluded.last_error, \
     ari_start = excluded.ari_start, ari_end = excluded.ari_end, ari_chosen = excluded.ari_chosen, \
     ari_next_poll = excluded.ari_next_poll, crl_next_check = excluded.crl_next_check, updated_at = excluded.updated_at";

fn bind_slot<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    s: &'q SlotRow,
    now: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(&s.name)
        .bind(&s.slot)
        .bind(&s.fingerprint)
        .bind(&s.current_issuer)
        .bind(&s.current_serial)
        .bind(&s.order_url)
        .bind(&s.order_key_pem)
        .bind(s.failures)
        .bind(s.next_attempt)
        .bind(&s.last_error)
        .bind(s.ari_start)
        .bind(s.ari_end)
        .bind(s.ari_chosen)
        .bind(s.ari_next_poll)
        .bind(s.crl_next_check)
        .bind(now)
}

async fn insert_cert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    c: &ManagedCertRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
            "INSERT INTO agent_certificates (serial, name, issuer, names, chain_pem, key_pem, spki_sha256, not_before, not_after, \
             order_url, obtained_at, identifier_set, registered_domains, slot, revoked_at, revocation_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&c.serial)
        .bind(&c.name)
        .bind(&c.issuer)
        .bind(&c.names)
        .bind(&c.chain_pem)
        .bind(&c.key_pem)
        .bind(&c.spki_sha256)
        .bind(c.not_before)
        .bind(c.not_after)
        .bind(&c.order_url)
        .bind(c.obtained_at)
        .bind(&c.identifier_set)
        .bind(wrap_domains(&c.registered_domains))
        .bind(&c.slot)
        .bind(c.revoked_at)
        .bind(&c.revocation_reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts `c` and writes `slot` (which names it as current) with the
/// planner's copy of its facts: the one sequence both `store_issued` and
/// `import_issued` run inside their transaction.
async fn record_issued(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    slot: &SlotRow,
    c: &ManagedCertRow,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert_cert(tx, c).await?;
    bind_slot(sqlx::query(UPSERT_SLOT), slot, now)
        .execute(&mut **tx)
        .await?;
    copy_facts(tx, slot, c).await
}

/// Copies the planner's facts of `c` onto its slot's row when `c` is the
/// slot's current certificate (migration 9).
async fn copy_facts(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    slot: &SlotRow,
    c: &ManagedCertRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE agent_slots SET current_spki_sha256 = $1, current_not_before = $2, current_not_after = $3, \
         current_revoked_at = $4, current_revocation_reason = $5 \
         WHERE name = $6 AND slot = $7 AND current_issuer = $8 AND current_serial = $9",
    )
    .bind(&c.spki_sha256)
    .bind(c.not_before)
    .bind(c.not_after)
    .bind(c.revoked_at)
    .bind(&c.revocation_reason)
    .bind(&slot.name)
    .bind(&slot.slot)
    .bind(&c.issuer)
    .bind(&c.serial)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a revocation on the certificate and on the slot row that has it
/// as current (the first report wins: its time and reason stay).
async fn mark_revoked_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    issuer: &str,
    serial: &str,
    reason: &str,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE agent_certificates SET revoked_at = $1, revocation_reason = $2 \
         WHERE issuer = $3 AND serial = $4 AND revoked_at IS NULL",
    )
    .bind(at)
    .bind(reason)
    .bind(issuer)
    .bind(serial)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE agent_slots SET current_revoked_at = $1, current_revocation_reason = $2 \
         WHERE current_issuer = $3 AND current_serial = $4 AND current_revoked_at IS NULL",
    )
    .bind(at)
    .bind(reason)
    .bind(issuer)
    .bind(serial)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Every slot of every managed certificate, in one query.
    pub async fn slots_all(&self) -> Result<Vec<SlotRow>, StoreError> {
        let sql = format!("SELECT {SLOT_COLUMNS} FROM agent_slots");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(slot_from).collect::<Result<_, _>>()?)
    }

    /// Both slots of one certificate.
    pub async fn slots_of(&self, name: &str) -> Result<Vec<SlotRow>, StoreError> {
        let sql = format!("SELECT {SLOT_COLUMNS} FROM agent_slots WHERE name = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(slot_from).collect::<Result<_, _>>()?)
    }

    /// The current certificates of one certificate's slots, without PEM,
    /// each with whether its key is in the blocked-key registry (one
    /// statement: every job reads this at its start and its end).
    pub async fn current_certs_of(&self, name: &str) -> Result<Vec<(CertMeta, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.name, c.slot, c.issuer, c.serial, c.spki_sha256, c.not_before, c.not_after, c.revoked_at, c.revocation_reason, \
             (SELECT COUNT(*) FROM agent_blocked_keys b WHERE b.spki_sha256 = c.spki_sha256) AS blocked \
             FROM agent_slots s JOIN agent_certificates c ON c.issuer = s.current_issuer AND c.serial = s.current_serial \
             WHERE s.name = $1",
        )
        .bind(name)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((meta_from(r)?, r.try_get::<i64, _>("blocked")? > 0)))
            .collect()
    }

    /// What the planner needs of every slot and its current certificate, in
    /// one query: no private keys, no PEM, no error texts. The daemon's
    /// start and its periodic passes read this for every certificate, so
    /// each row comes back as one text value (fields joined by U+001F):
    /// the driver's cost is per value, and this cuts a 100k-certificate
    /// inventory from 3.6 M values to 200 k.
    pub async fn planning_rows(&self) -> Result<Vec<(SlotRow, Option<CertMeta>)>, StoreError> {
        const FIELDS: [&str; 18] = [
            "s.name",
            "s.slot",
            "s.fingerprint",
            "s.order_url",
            "s.failures",
            "s.next_attempt",
            "s.ari_start",
            "s.ari_end",
            "s.ari_chosen",
            "s.ari_next_poll",
            "s.crl_next_check",
            "s.current_issuer",
            "s.current_serial",
            "s.current_spki_sha256",
            "s.current_not_before",
            "s.current_not_after",
            "s.current_revoked_at",
            "s.current_revocation_reason",
        ];
        // NULL becomes the empty field; no stored value is empty otherwise
        // where it matters (names, issuers, serials are never empty).
        let joined = FIELDS
            .iter()
            .map(|f| format!("COALESCE(CAST({f} AS TEXT), '')"))
            .collect::<Vec<_>>()
            .join(" || '\u{1f}' || ");
        let sql = format!("SELECT {joined} FROM agent_slots s");
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| planning_row(r)).collect()
    }

    /// One slot's state (a fresh row when never seen).
    pub async fn slot(&self, name: &str, slot: &str) -> Result<SlotRow, StoreError> {
        let sql = format!("SELECT {SLOT_COLUMNS} FROM agent_slots WHERE name = $1 AND slot = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(slot)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => slot_from(&r)?,
            None => SlotRow::new(name, slot),
        })
    }

    /// Writes one slot's state (insert or replace).
    pub async fn put_slot(&self, s: &SlotRow, now: i64) -> Result<(), StoreError> {
        bind_slot(sqlx::query(UPSERT_SLOT), s, now)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Records a certificate the slot just obtained and makes it the slot's
    /// current one, in one transaction with the slot's new state (order in
    /// flight cleared): a crash leaves either the order to resume or the
    /// certificate in place, never a certificate whose order is resumed
    /// again (which would hit the primary key forever).
    pub async fn store_issued(
        &self,
        slot: &SlotRow,
        c: &ManagedCertRow,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        record_issued(&mut tx, slot, c, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The current certificate of every slot, without PEM, in one query.
    pub async fn current_certs(&self) -> Result<Vec<CertMeta>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.name, c.slot, c.issuer, c.serial, c.spki_sha256, c.not_before, c.not_after, c.revoked_at, c.revocation_reason \
             FROM agent_slots s JOIN agent_certificates c ON c.issuer = s.current_issuer AND c.serial = s.current_serial",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(meta_from).collect::<Result<_, _>>()?)
    }

    /// The current certificates (with chain and key) of the slots of
    /// certificates named after `after`, in name order, at most `limit`
    /// certificates' worth: page through all of them without holding every
    /// private key in memory at once.
    pub async fn current_certs_page(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<ManagedCertRow>, StoreError> {
        let columns = MANAGED_COLUMNS
            .split(',')
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM agent_slots s JOIN agent_certificates c \
             ON c.issuer = s.current_issuer AND c.serial = s.current_serial \
             WHERE s.name IN (SELECT DISTINCT name FROM agent_slots WHERE name > $1 ORDER BY name LIMIT $2) \
             ORDER BY s.name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.iter().map(managed_from).collect::<Result<_, _>>()?)
    }

    /// Marks many certificates (issuer, serial) revoked in one transaction,
    /// as one CRL download reports them.
    pub async fn mark_revoked_many(
        &self,
        certs: &[(String, String)],
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        for (issuer, serial) in certs {
            mark_revoked_in(&mut tx, issuer, serial, reason, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// One certificate version with its chain and key.
    pub async fn managed_cert(
        &self,
        issuer: &str,
        serial: &str,
    ) -> Result<Option<ManagedCertRow>, StoreError> {
        let sql = format!(
            "SELECT {MANAGED_COLUMNS} FROM agent_certificates WHERE issuer = $1 AND serial = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(issuer)
            .bind(serial)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(managed_from).transpose()?)
    }

    /// A slot's current certificate with its chain and key.
    pub async fn slot_cert(
        &self,
        name: &str,
        slot: &str,
    ) -> Result<Option<ManagedCertRow>, StoreError> {
        let s = self.slot(name, slot).await?;
        match (s.current_issuer, s.current_serial) {
            (Some(issuer), Some(serial)) => self.managed_cert(&issuer, &serial).await,
            _ => Ok(None),
        }
    }

    /// Every certificate version with this key, any slot, any name.
    pub async fn certs_with_spki(&self, spki_sha256: &str) -> Result<Vec<CertMeta>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, slot, issuer, serial, spki_sha256, not_before, not_after, revoked_at, revocation_reason \
             FROM agent_certificates WHERE spki_sha256 = $1",
        )
        .bind(spki_sha256)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(meta_from).collect::<Result<_, _>>()?)
    }

    /// Records that a certificate is revoked (the first report wins: its
    /// time and reason stay).
    pub async fn mark_revoked(
        &self,
        issuer: &str,
        serial: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.mark_revoked_many(&[(issuer.to_string(), serial.to_string())], reason, at)
            .await?;
        self.bump_generation().await
    }

    /// Records a revocation the agent is about to send: the certificate is
    /// marked revoked locally (never served again) and the request is
    /// queued, in one transaction, before anything reaches the CA.
    pub async fn begin_revocation(
        &self,
        issuer: &str,
        serial: &str,
        reason: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO agent_pending_revocations (issuer, serial, reason, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (issuer, serial) DO NOTHING",
        )
        .bind(issuer)
        .bind(serial)
        .bind(reason)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        mark_revoked_in(&mut tx, issuer, serial, reason, at).await?;
        sqlx::query(
            "INSERT INTO agent_meta (key, value) VALUES ('generation', 1) \
             ON CONFLICT (key) DO UPDATE SET value = agent_meta.value + 1",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revocations recorded but not confirmed by the CA: (issuer, serial, reason).
    pub async fn pending_revocations(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT issuer, serial, reason FROM agent_pending_revocations ORDER BY created_at",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    r.try_get("issuer")?,
                    r.try_get("serial")?,
                    r.try_get("reason")?,
                ))
            })
            .collect::<Result<_, _>>()?)
    }

    /// The CA confirmed (or already had) the revocation.
    pub async fn finish_revocation(&self, issuer: &str, serial: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM agent_pending_revocations WHERE issuer = $1 AND serial = $2")
            .bind(issuer)
            .bind(serial)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Which slot every certificate serves, and why: (name, slot, reason).
    pub async fn served_all(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = sqlx::query("SELECT name, slot, reason FROM agent_served")
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>((r.try_get("name")?, r.try_get("slot")?, r.try_get("reason")?))
            })
            .collect::<Result<_, _>>()?)
    }

    /// The slot `name` serves (`primary` when never set).
    pub async fn served(&self, name: &str) -> Result<String, StoreError> {
        Ok(self
            .served_with_reason(name)
            .await?
            .map_or_else(|| "primary".to_string(), |(slot, _)| slot))
    }

    /// The slot `name` serves and why, when it was ever set.
    pub async fn served_with_reason(
        &self,
        name: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT slot, reason FROM agent_served WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("slot")?, r.try_get("reason")?)))
            .transpose()?)
    }

    /// The served slot's current certificate, with chain and key.
    pub async fn served_cert(&self, name: &str) -> Result<Option<ManagedCertRow>, StoreError> {
        let slot = self.served(name).await?;
        self.slot_cert(name, &slot).await
    }

    /// Sets the slot a certificate serves, and tells a running daemon.
    pub async fn set_served(
        &self,
        name: &str,
        slot: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.set_served_many(
            &[(name.to_string(), slot.to_string(), reason.to_string())],
            now,
        )
        .await
    }

    /// Sets the served slot of many certificates (name, slot, reason) in
    /// one transaction: a mass revocation swaps 100k certificates with one
    /// commit, not 100k.
    pub async fn set_served_many(
        &self,
        rows: &[(String, String, String)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        for (name, slot, reason) in rows {
            sqlx::query(
                "INSERT INTO agent_served (name, slot, reason, changed_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET slot = excluded.slot, reason = excluded.reason, changed_at = excluded.changed_at",
            )
            .bind(name)
            .bind(slot)
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO agent_meta (key, value) VALUES ('generation', 1) \
             ON CONFLICT (key) DO UPDATE SET value = agent_meta.value + 1",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Imports certificate versions, each made its slot's current one, in
    /// one transaction (migrating from another tool; benchmarks).
    pub async fn import_issued(
        &self,
        rows: &[(SlotRow, ManagedCertRow)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        for (slot, c) in rows {
            record_issued(&mut tx, slot, c, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Adds a key to the local blocked-key registry (idempotent: the first
    /// report's reason and time stay).
    pub async fn agent_block_key(
        &self,
        spki_sha256: &str,
        reason: &str,
        source: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_blocked_keys (spki_sha256, reason, source, blocked_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (spki_sha256) DO NOTHING",
        )
        .bind(spki_sha256)
        .bind(reason)
        .bind(source)
        .bind(now)
        .execute(self.writer())
        .await?;
        self.bump_generation().await
    }

    /// The whole blocked-key registry.
    pub async fn agent_blocked_keys(&self) -> Result<Vec<BlockedKeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT spki_sha256, reason, source, blocked_at FROM agent_blocked_keys ORDER BY blocked_at",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BlockedKeyRow {
                    spki_sha256: r.try_get("spki_sha256")?,
                    reason: r.try_get("reason")?,
                    source: r.try_get("source")?,
                    blocked_at: r.try_get("blocked_at")?,
                })
            })
            .collect()
    }

    /// Whether a key is in the blocked-key registry.
    pub async fn agent_key_blocked(&self, spki_sha256: &str) -> Result<bool, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM agent_blocked_keys WHERE spki_sha256 = $1")
                .bind(spki_sha256)
                .fetch_one(self.pool())
                .await?;
        Ok(n > 0)
    }

    /// Appends lifecycle events, in one transaction.
    pub async fn record_events(&self, events: &[EventRow]) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO agent_events (at, name, slot, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(e.at)
            .bind(&e.name)
            .bind(&e.slot)
            .bind(&e.kind)
            .bind(&e.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The `limit` most recent events, newest first.
    pub async fn recent_events(&self, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, name, slot, kind, detail FROM agent_events ORDER BY at DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// Events at or after `since`, oldest first, at most `limit`.
    pub async fn events_since(&self, since: i64, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, name, slot, kind, detail FROM agent_events WHERE at >= $1 ORDER BY at LIMIT $2",
        )
        .bind(since)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from).collect()
    }

    /// A counter that changes whenever a command outside the daemon changes
    /// what it must serve; the daemon polls it (one cheap read) to react
    /// within a second.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        let v: Option<i64> =
            sqlx::query_scalar("SELECT value FROM agent_meta WHERE key = 'generation'")
                .fetch_optional(self.pool())
                .await?;
        Ok(v.unwrap_or(0))
    }

    /// Increments [`Store::generation`].
    pub async fn bump_generation(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_meta (key, value) VALUES ('generation', 1) \
             ON CONFLICT (key) DO UPDATE SET value = agent_meta.value + 1",
        )
        .execute(self.writer())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_dir(dir.path()).await.expect("open");
        (dir, store)
    }

    fn cert(serial: &str, slot: &str) -> ManagedCertRow {
        ManagedCertRow {
            serial: serial.into(),
            name: "web".into(),
            issuer: if slot == "primary" { "a" } else { "b" }.into(),
            names: "web.test".into(),
            chain_pem: "chain".into(),
            key_pem: "key".into(),
            spki_sha256: format!("spki-{serial}"),
            not_before: 10,
            not_after: 1000,
            order_url: format!("https://ca/order/{serial}"),
            obtained_at: 10,
            identifier_set: "web.test".into(),
            registered_domains: "web.test".into(),
            slot: slot.into(),
            revoked_at: None,
            revocation_reason: None,
        }
    }

    #[tokio::test]
    async fn issued_certificate_and_slot_state_land_together() {
        let (_d, s) = store().await;
        let mut slot = SlotRow::new("web", "primary");
        slot.order_url = Some("https://ca/order/1".into());
        s.put_slot(&slot, 1).await.expect("put");
        slot.order_url = None;
        slot.current_issuer = Some("a".into());
        slot.current_serial = Some("01".into());
        s.store_issued(&slot, &cert("01", "primary"), 2)
            .await
            .expect("store");
        let back = s.slot("web", "primary").await.expect("slot");
        assert_eq!(back.order_url, None);
        assert_eq!(back.current_serial.as_deref(), Some("01"));
        // A second insert of the same certificate fails and changes nothing.
        let mut again = back.clone();
        again.failures = 9;
        assert!(
            s.store_issued(&again, &cert("01", "primary"), 3)
                .await
                .is_err()
        );
        assert_eq!(s.slot("web", "primary").await.expect("slot").failures, 0);
        let metas = s.current_certs().await.expect("current");
        assert_eq!(metas.len(), 1);
        assert_eq!(metas[0].slot, "primary");
    }

    #[tokio::test]
    async fn a_later_expiring_backup_never_becomes_the_primary() {
        let (_d, s) = store().await;
        let mut p = SlotRow::new("web", "primary");
        p.current_issuer = Some("a".into());
        p.current_serial = Some("01".into());
        s.store_issued(&p, &cert("01", "primary"), 1)
            .await
            .expect("p");
        let mut b = SlotRow::new("web", "backup");
        b.current_issuer = Some("b".into());
        b.current_serial = Some("02".into());
        let mut later = cert("02", "backup");
        later.not_after = 5000;
        s.store_issued(&b, &later, 1).await.expect("b");
        let primary = s
            .slot_cert("web", "primary")
            .await
            .expect("q")
            .expect("cert");
        assert_eq!(primary.serial, "01");
        let backup = s
            .slot_cert("web", "backup")
            .await
            .expect("q")
            .expect("cert");
        assert_eq!(backup.serial, "02");
    }

    #[tokio::test]
    async fn revocation_blocking_serving_and_generation() {
        let (_d, s) = store().await;
        let g0 = s.generation().await.expect("gen");
        let mut p = SlotRow::new("web", "primary");
        p.current_issuer = Some("a".into());
        p.current_serial = Some("01".into());
        s.store_issued(&p, &cert("01", "primary"), 1)
            .await
            .expect("p");
        s.mark_revoked("a", "01", "keyCompromise", 50)
            .await
            .expect("rev");
        s.mark_revoked("a", "01", "superseded", 60)
            .await
            .expect("rev");
        let m = &s.current_certs().await.expect("current")[0];
        assert_eq!(m.revoked_at, Some(50));
        // The planner's copy on the slot row agrees with the certificate row.
        let planned = s.planning_rows().await.expect("planning");
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].1.as_ref(), Some(m));
        assert_eq!(m.revocation_reason.as_deref(), Some("keyCompromise"));
        let of = s.current_certs_of("web").await.expect("certs of");
        assert_eq!(of, vec![(m.clone(), false)]);
        s.agent_block_key("spki-01", "keyCompromise", "operator", 70)
            .await
            .expect("block");
        s.agent_block_key("spki-01", "other", "other", 80)
            .await
            .expect("block");
        assert!(s.agent_key_blocked("spki-01").await.expect("q"));
        // One certificate's inventory carries the same verdict.
        let of = s.current_certs_of("web").await.expect("certs of");
        assert_eq!(of, vec![(m.clone(), true)]);
        assert!(s.current_certs_of("other").await.expect("none").is_empty());
        assert_eq!(s.agent_blocked_keys().await.expect("q")[0].blocked_at, 70);
        assert_eq!(s.certs_with_spki("spki-01").await.expect("q").len(), 1);
        s.set_served("web", "backup", "revoked", 90)
            .await
            .expect("serve");
        assert_eq!(
            s.served_all().await.expect("q"),
            vec![(
                "web".to_string(),
                "backup".to_string(),
                "revoked".to_string()
            )]
        );
        assert!(s.generation().await.expect("gen") > g0);
    }
}
