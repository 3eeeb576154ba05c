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

/// Lifecycle state of one managed certificate.
#[derive(Clone, Default)]
pub struct AgentStateRow {
    /// The managed certificate's name.
    pub name: String,
    /// Fingerprint of the configuration the state belongs to.
    pub fingerprint: String,
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
}

impl std::fmt::Debug for AgentStateRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentStateRow")
            .field("name", &self.name)
            .field("order_url", &self.order_url)
            .field("failures", &self.failures)
            .field("next_attempt", &self.next_attempt)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The lifecycle state of a managed certificate (default when never seen).
    pub async fn agent_state(&self, name: &str) -> Result<AgentStateRow, StoreError> {
        let row = sqlx::query(
            "SELECT name, fingerprint, order_url, order_key_pem, failures, next_attempt, last_error, \
             ari_start, ari_end, ari_chosen, ari_next_poll FROM agent_state WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(AgentStateRow {
                name: name.to_string(),
                ..Default::default()
            });
        };
        Ok(AgentStateRow {
            name: r.try_get("name")?,
            fingerprint: r.try_get("fingerprint")?,
            order_url: r.try_get("order_url")?,
            order_key_pem: r.try_get("order_key_pem")?,
            failures: r.try_get("failures")?,
            next_attempt: r.try_get("next_attempt")?,
            last_error: r.try_get("last_error")?,
            ari_start: r.try_get("ari_start")?,
            ari_end: r.try_get("ari_end")?,
            ari_chosen: r.try_get("ari_chosen")?,
            ari_next_poll: r.try_get("ari_next_poll")?,
        })
    }

    /// Writes a managed certificate's lifecycle state (insert or replace).
    pub async fn put_agent_state(&self, s: &AgentStateRow, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_state (name, fingerprint, order_url, order_key_pem, failures, next_attempt, last_error, \
             ari_start, ari_end, ari_chosen, ari_next_poll, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, order_url = excluded.order_url, \
             order_key_pem = excluded.order_key_pem, failures = excluded.failures, next_attempt = excluded.next_attempt, \
             last_error = excluded.last_error, ari_start = excluded.ari_start, ari_end = excluded.ari_end, \
             ari_chosen = excluded.ari_chosen, ari_next_poll = excluded.ari_next_poll, updated_at = excluded.updated_at",
        )
        .bind(&s.name)
        .bind(&s.fingerprint)
        .bind(&s.order_url)
        .bind(&s.order_key_pem)
        .bind(s.failures)
        .bind(s.next_attempt)
        .bind(&s.last_error)
        .bind(s.ari_start)
        .bind(s.ari_end)
        .bind(s.ari_chosen)
        .bind(s.ari_next_poll)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }
}
