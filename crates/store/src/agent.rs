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
        identifier_set: row.try_get("identifier_set")?,
        registered_domains: row
            .try_get::<String, _>("registered_domains")?
            .trim_matches(',')
            .to_string(),
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
            "INSERT INTO agent_certificates (serial, name, issuer, names, chain_pem, key_pem, spki_sha256, not_before, not_after, order_url, obtained_at, identifier_set, registered_domains) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
            "SELECT serial, name, issuer, names, chain_pem, key_pem, spki_sha256, not_before, not_after, order_url, obtained_at, \
             identifier_set, registered_domains FROM agent_certificates WHERE name = $1 ORDER BY not_after DESC, obtained_at DESC LIMIT 1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.as_ref().map(managed_from).transpose()?)
    }
}

/// `a.com,b.com` as `,a.com,b.com,`: a `LIKE '%,a.com,%'` then matches whole
/// domains only (`a.com` must not match `ba.com`).
fn wrap_domains(domains: &str) -> String {
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
