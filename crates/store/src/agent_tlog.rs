//! The agent's transparency-log monitor state and findings (migration 51),
//! and the ledger lookup it classifies logged certificates with.

use sqlx::Row;

use crate::{Store, StoreError};

/// The monitor's position in one issuer's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogStateRow {
    /// The issuer.
    pub issuer: String,
    /// The log prefix URL it follows.
    pub log: String,
    /// `certkeeper_tlog::monitor::MonitorState::to_text`.
    pub state: String,
    /// Verified tree size.
    pub size: i64,
    /// When that size was verified (unix seconds).
    pub verified_at: i64,
    /// When the log was last asked (unix seconds).
    pub polled_at: Option<i64>,
    /// Why the last poll failed, if it did.
    pub last_error: Option<String>,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TlogAlertRow {
    /// Identity of the finding (recorded once).
    pub alert_key: String,
    /// The issuer whose log (or search endpoint) showed it.
    pub issuer: String,
    /// `unknown-certificate`, `fork`, `shrunk` or `split-view`.
    pub kind: String,
    /// Leaf index, for a certificate.
    pub log_index: Option<i64>,
    /// Lowercase hex serial, for a certificate.
    pub serial: Option<String>,
    /// The certificate's names, comma-separated.
    pub names: String,
    /// What it means, for the operator.
    pub detail: String,
    /// When it was found (unix seconds).
    pub at: i64,
}

impl Store {
    /// Every issuer's monitor position.
    pub async fn tlog_states(&self) -> Result<Vec<TlogStateRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT issuer, log, state, size, verified_at, polled_at, last_error FROM agent_tlog_state ORDER BY issuer",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(TlogStateRow {
                    issuer: r.try_get("issuer")?,
                    log: r.try_get("log")?,
                    state: r.try_get("state")?,
                    size: r.try_get("size")?,
                    verified_at: r.try_get("verified_at")?,
                    polled_at: r.try_get("polled_at")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }

    /// Writes an issuer's monitor position.
    pub async fn put_tlog_state(&self, row: &TlogStateRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_tlog_state (issuer, log, state, size, verified_at, polled_at, last_error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (issuer) DO UPDATE SET log = excluded.log, state = excluded.state, size = excluded.size, \
             verified_at = excluded.verified_at, polled_at = excluded.polled_at, last_error = excluded.last_error",
        )
        .bind(&row.issuer)
        .bind(&row.log)
        .bind(&row.state)
        .bind(row.size)
        .bind(row.verified_at)
        .bind(row.polled_at)
        .bind(&row.last_error)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records a finding; `false` when it was recorded before.
    pub async fn add_tlog_alert(&self, row: &TlogAlertRow) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO agent_tlog_alerts (alert_key, issuer, kind, log_index, serial, names, detail, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (alert_key) DO NOTHING",
        )
        .bind(&row.alert_key)
        .bind(&row.issuer)
        .bind(&row.kind)
        .bind(row.log_index)
        .bind(&row.serial)
        .bind(&row.names)
        .bind(&row.detail)
        .bind(row.at)
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every finding, oldest first.
    pub async fn tlog_alerts(&self) -> Result<Vec<TlogAlertRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT alert_key, issuer, kind, log_index, serial, names, detail, at FROM agent_tlog_alerts ORDER BY at, alert_key",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(TlogAlertRow {
                    alert_key: r.try_get("alert_key")?,
                    issuer: r.try_get("issuer")?,
                    kind: r.try_get("kind")?,
                    log_index: r.try_get("log_index")?,
                    serial: r.try_get("serial")?,
                    names: r.try_get("names")?,
                    detail: r.try_get("detail")?,
                    at: r.try_get("at")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }

    /// Whether the agent's ledger has a certificate with this serial (any
    /// issuer) or this key: one the agent ordered.
    pub async fn agent_knows_certificate(
        &self,
        serial: &str,
        spki_sha256: &str,
    ) -> Result<bool, StoreError> {
        let found = sqlx::query(
            "SELECT 1 FROM agent_certificates WHERE serial = $1 OR spki_sha256 = $2 LIMIT 1",
        )
        .bind(serial)
        .bind(spki_sha256)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }
}
