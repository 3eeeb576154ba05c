//! TXT records the agent's dns-01 solver has put into zones and not yet
//! removed (migration 30), so that a crash never leaves one behind.

use sqlx::Row;

use crate::{Store, StoreError};

/// One TXT record added by RFC 2136 UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecordRow {
    /// Random id.
    pub id: String,
    /// The managed certificate it was for.
    pub certificate: String,
    /// The primary server (`addr:port`) it was sent to.
    pub server: String,
    /// The TSIG key name it was signed with.
    pub tsig_key: String,
    /// The zone updated.
    pub zone: String,
    /// The record's owner name.
    pub name: String,
    /// The TXT value.
    pub value: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl Store {
    /// Records the intent to add a TXT record (before the UPDATE is sent).
    pub async fn dns_record_add(&self, row: &DnsRecordRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_dns_records (id, certificate, server, tsig_key, zone, name, value, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&row.id)
        .bind(&row.certificate)
        .bind(&row.server)
        .bind(&row.tsig_key)
        .bind(&row.zone)
        .bind(&row.name)
        .bind(&row.value)
        .bind(row.created_at)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The record is gone from the zone.
    pub async fn dns_record_remove(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM agent_dns_records WHERE id = $1")
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Every record not yet removed, oldest first.
    pub async fn dns_records(&self) -> Result<Vec<DnsRecordRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, certificate, server, tsig_key, zone, name, value, created_at \
             FROM agent_dns_records ORDER BY created_at, id",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok::<_, sqlx::Error>(DnsRecordRow {
                    id: r.try_get("id")?,
                    certificate: r.try_get("certificate")?,
                    server: r.try_get("server")?,
                    tsig_key: r.try_get("tsig_key")?,
                    zone: r.try_get("zone")?,
                    name: r.try_get("name")?,
                    value: r.try_get("value")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, _>>()?)
    }
}
