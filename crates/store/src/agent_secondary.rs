//! What the DNS certificate secondary found (migration 31): the CSRs at
//! `_letsencrypt._tcp.HOST` in each watched zone, accepted or refused, and
//! the SOA serial each zone was last read at.

use sqlx::Row;

use crate::{Store, StoreError};

/// One host with a CSR record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondaryHostRow {
    /// The host (`svc.example.com`, no trailing dot).
    pub host: String,
    /// The watched zone it is in.
    pub zone: String,
    /// The CSR as published (PEM); for a refused record, what could be
    /// shown of it (may be empty).
    pub csr_pem: String,
    /// Whether it passed every check (and is ordered for).
    pub accepted: bool,
    /// Why it was refused (empty when accepted).
    pub problem: String,
    /// Unix seconds of the zone read that found it.
    pub seen_at: i64,
}

/// The last read of one zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondaryZoneRow {
    /// The zone.
    pub zone: String,
    /// SOA serial of the last complete transfer (0 before the first).
    pub serial: i64,
    /// Unix seconds of the last look (SOA query or transfer).
    pub checked_at: i64,
    /// Why the last look failed (empty when it worked).
    pub last_error: String,
}

impl Store {
    /// Replaces everything known of `zone` with what a complete transfer
    /// at `serial` found, in one transaction (a reader never sees half).
    pub async fn secondary_replace_zone(
        &self,
        zone: &str,
        serial: i64,
        hosts: &[SecondaryHostRow],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM agent_secondary_hosts WHERE zone = $1")
            .bind(zone)
            .execute(&mut *tx)
            .await?;
        for h in hosts {
            sqlx::query(
                "INSERT INTO agent_secondary_hosts (host, zone, csr_pem, accepted, problem, seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&h.host)
            .bind(zone)
            .bind(&h.csr_pem)
            .bind(i64::from(h.accepted))
            .bind(&h.problem)
            .bind(h.seen_at)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM agent_secondary_zones WHERE zone = $1")
            .bind(zone)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO agent_secondary_zones (zone, serial, checked_at, last_error) VALUES ($1, $2, $3, '')",
        )
        .bind(zone)
        .bind(serial)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a look at `zone` that changed nothing (same serial) or
    /// failed (`error`); the hosts found before stay as they were.
    pub async fn secondary_zone_checked(
        &self,
        zone: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE agent_secondary_zones SET checked_at = $1, last_error = $2 WHERE zone = $3",
        )
        .bind(now)
        .bind(error)
        .bind(zone)
        .execute(self.writer())
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO agent_secondary_zones (zone, serial, checked_at, last_error) VALUES ($1, 0, $2, $3)",
            )
            .bind(zone)
            .bind(now)
            .bind(error)
            .execute(self.writer())
            .await?;
        }
        Ok(())
    }

    /// Every zone read so far.
    pub async fn secondary_zones(&self) -> Result<Vec<SecondaryZoneRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT zone, serial, checked_at, last_error FROM agent_secondary_zones ORDER BY zone",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(SecondaryZoneRow {
                    zone: r.try_get("zone")?,
                    serial: r.try_get("serial")?,
                    checked_at: r.try_get("checked_at")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }

    /// Every host found, by host name.
    pub async fn secondary_hosts(&self) -> Result<Vec<SecondaryHostRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT host, zone, csr_pem, accepted, problem, seen_at FROM agent_secondary_hosts ORDER BY host",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(SecondaryHostRow {
                    host: r.try_get("host")?,
                    zone: r.try_get("zone")?,
                    csr_pem: r.try_get("csr_pem")?,
                    accepted: r.try_get::<i64, _>("accepted")? != 0,
                    problem: r.try_get("problem")?,
                    seen_at: r.try_get("seen_at")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }
}
