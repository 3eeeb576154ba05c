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
    /// Ledger key: the names lowercased, sorted, deduplicated, comma-joined
    /// (how CAs compare "the same set of names").
    pub identifier_set: String,
    /// Ledger key: the registered domains of the names, comma-joined.
    pub registered_domains: String,
    /// `primary` or `backup`: the slot it was obtained for.
    pub slot: String,
    /// When the agent learned it was revoked, unix seconds.
    pub revoked_at: Option<i64>,
    /// The revocation reason, as RFC 5280 names it.
    pub revocation_reason: Option<String>,
}

impl std::fmt::Debug for ManagedCertRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs and panics.
        f.debug_struct("ManagedCertRow")
            .field("serial", &self.serial)
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("slot", &self.slot)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

pub(crate) fn managed_from(row: &AnyRow) -> Result<ManagedCertRow, sqlx::Error> {
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
        identifier_set: row.try_get("identifier_set")?,
        registered_domains: row
            .try_get::<String, _>("registered_domains")?
            .trim_matches(',')
            .to_string(),
        slot: row.try_get("slot")?,
        revoked_at: row.try_get("revoked_at")?,
        revocation_reason: row.try_get("revocation_reason")?,
    })
}

/// The columns [`managed_from`] reads.
pub(crate) const MANAGED_COLUMNS: &str = "serial, name, issuer, names, chain_pem, key_pem, spki_sha256, not_before, not_after, \
     order_url, obtained_at, identifier_set, registered_domains, slot, revoked_at, revocation_reason";

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
}

/// `a.com,b.com` as `,a.com,b.com,`: a `LIKE '%,a.com,%'` then matches whole
/// domains only (`a.com` must not match `ba.com`).
pub(crate) fn wrap_domains(domains: &str) -> String {
    format!(",{},", domains.trim_matches(','))
}

/// A certificate in the ledger whose keys predate migration 6.
#[derive(Clone, Debug)]
pub struct UnkeyedLedgerRow {
    /// Issuer name.
    pub issuer: String,
    /// Serial.
    pub serial: String,
    /// Names as recorded, comma-separated.
    pub names: String,
}

impl Store {
    /// Certificates obtained from `issuer` for exactly `identifier_set`
    /// since `since`, oldest first (their `obtained_at`): the count is the
    /// usage, the oldest says when a slot frees up.
    pub async fn ledger_set_times(
        &self,
        issuer: &str,
        identifier_set: &str,
        since: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT obtained_at FROM agent_certificates WHERE issuer = $1 AND identifier_set = $2 \
             AND obtained_at > $3 ORDER BY obtained_at",
        )
        .bind(issuer)
        .bind(identifier_set)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Certificates obtained from `issuer` with a name under the registered
    /// `domain` since `since`, oldest first.
    pub async fn ledger_domain_times(
        &self,
        issuer: &str,
        domain: &str,
        since: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT obtained_at FROM agent_certificates WHERE issuer = $1 AND registered_domains LIKE $2 \
             AND obtained_at > $3 ORDER BY obtained_at",
        )
        .bind(issuer)
        .bind(format!("%,{domain},%"))
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Whether `issuer` ever issued a certificate for exactly this set: CAs
    /// treat the next one as a renewal.
    pub async fn ledger_has_set(
        &self,
        issuer: &str,
        identifier_set: &str,
    ) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agent_certificates WHERE issuer = $1 AND identifier_set = $2",
        )
        .bind(issuer)
        .bind(identifier_set)
        .fetch_one(self.pool())
        .await?;
        Ok(n > 0)
    }

    /// Ledger rows recorded before the ledger keys existed.
    pub async fn ledger_unkeyed(&self) -> Result<Vec<UnkeyedLedgerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT issuer, serial, names FROM agent_certificates WHERE identifier_set = ''",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UnkeyedLedgerRow {
                    issuer: r.try_get("issuer")?,
                    serial: r.try_get("serial")?,
                    names: r.try_get("names")?,
                })
            })
            .collect()
    }

    /// Sets the ledger keys of one certificate (see [`Store::ledger_unkeyed`]).
    pub async fn set_ledger_keys(
        &self,
        issuer: &str,
        serial: &str,
        identifier_set: &str,
        registered_domains: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE agent_certificates SET identifier_set = $1, registered_domains = $2 \
             WHERE issuer = $3 AND serial = $4",
        )
        .bind(identifier_set)
        .bind(wrap_domains(registered_domains))
        .bind(issuer)
        .bind(serial)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records a `newOrder` about to be sent: orders count against a CA's
    /// per-account limits whether or not they succeed.
    pub async fn record_agent_order(
        &self,
        issuer: &str,
        identifier_set: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_orders (issuer, identifier_set, created_at) VALUES ($1, $2, $3)",
        )
        .bind(issuer)
        .bind(identifier_set)
        .bind(now)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// When each order to `issuer` since `since` was created, oldest first.
    pub async fn agent_order_times(
        &self,
        issuer: &str,
        since: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at FROM agent_orders WHERE issuer = $1 AND created_at > $2 ORDER BY created_at",
        )
        .bind(issuer)
        .bind(since)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    /// Records a CA's Retry-After for an identifier set (`""`: the whole
    /// account); a later deadline replaces an earlier one, never the reverse.
    pub async fn put_retry_after(
        &self,
        issuer: &str,
        identifier_set: &str,
        not_before: i64,
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agent_retry_after (issuer, identifier_set, not_before, reason) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (issuer, identifier_set) DO UPDATE SET not_before = excluded.not_before, reason = excluded.reason \
             WHERE excluded.not_before > agent_retry_after.not_before",
        )
        .bind(issuer)
        .bind(identifier_set)
        .bind(not_before)
        .bind(reason)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The latest Retry-After deadline in force after `now` for an
    /// identifier set or its whole account, with the CA's reason.
    pub async fn retry_after(
        &self,
        issuer: &str,
        identifier_set: &str,
        now: i64,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT not_before, reason FROM agent_retry_after WHERE issuer = $1 \
             AND (identifier_set = $2 OR identifier_set = '') AND not_before > $3 \
             ORDER BY not_before DESC LIMIT 1",
        )
        .bind(issuer)
        .bind(identifier_set)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("not_before")?, r.try_get("reason")?)))
            .transpose()?)
    }
}
