//! Tables of the agent: ACME account credentials per issuer and every
//! certificate version obtained. Certificates (with their keys) live here
//! first and are deployed from here, so losing a deploy target loses nothing.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// One obtained certificate version.
#[derive(Clone)]
pub struct ManagedCertRow {
    /// Lowercase hex serial.
    pub serial: String,
    /// The managed certificate's configured name.
    pub name: String,
    /// The issuer (CA) it came from.
    pub issuer: String,
    /// Identifiers, comma-separated.
    pub names: String,
    /// Leaf first, PEM.
    pub chain_pem: String,
    /// Private key, PKCS#8 PEM. Never logged.
    pub key_pem: String,
    /// Hex SHA-256 of the SPKI.
    pub spki_sha256: String,
    /// Validity start, unix seconds.
    pub not_before: i64,
    /// Validity end, unix seconds.
    pub not_after: i64,
    /// The ACME order that produced it.
    pub order_url: String,
    /// When it was obtained, unix seconds.
    pub obtained_at: i64,
}

impl std::fmt::Debug for ManagedCertRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs and panics.
        f.debug_struct("ManagedCertRow")
            .field("serial", &self.serial)
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn managed_from(row: &AnyRow) -> Result<ManagedCertRow, sqlx::Error> {
    Ok(ManagedCertRow {
        serial: row.try_get("serial")?,
        name: row.try_get("name")?,
        issuer: row.try_get("issuer")?,
        names: row.try_get("names")?,
        chain_pem: row.try_get("chain_pem")?,
        key_pem: row.try_get("key_pem")?,
        spki_sha256: row.try_get("spki_sha256")?,
        not_before: row.try_get("not_before")?,
        not_after: row.try_get("not_after")?,
        order_url: row.try_get("order_url")?,
        obtained_at: row.try_get("obtained_at")?,
    })
}

impl Store {
    /// Stored ACME account credentials (JSON) for an issuer, with the
    /// directory URL they belong to.
    pub async fn agent_account(
        &self,
        issuer: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row =
            sqlx::query("SELECT directory_url, credentials FROM agent_accounts WHERE issuer = $1")
                .bind(issuer)
                .fetch_optional(self.pool())
                .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("directory_url")?, r.try_get("credentials")?)))
            .transpose()?)
    }

    /// Saves (or replaces) an issuer's account credentials.
    pub async fn put_agent_account(
        &self,
        issuer: &str,
        directory_url: &str,
        credentials: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM agent_accounts WHERE issuer = $1")
            .bind(issuer)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO agent_accounts (issuer, directory_url, credentials, created_at) VALUES ($1, $2, $3, $4)")
            .bind(issuer)
            .bind(directory_url)
            .bind(credentials)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an obtained certificate version.
    pub async fn insert_managed_cert(&self, c: &ManagedCertRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_certificates (serial, name, issuer, names, chain_pem, key_pem, spki_sha256, not_before, not_after, order_url, obtained_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The newest certificate version of a managed certificate.
    pub async fn latest_managed_cert(
        &self,
        name: &str,
    ) -> Result<Option<ManagedCertRow>, StoreError> {
        let row = sqlx::query(
            "SELECT serial, name, issuer, names, chain_pem, key_pem, spki_sha256, not_before, not_after, order_url, obtained_at \
             FROM agent_certificates WHERE name = $1 ORDER BY not_after DESC, obtained_at DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(managed_from).transpose()?)
    }
}
