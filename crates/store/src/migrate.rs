//! Schema migrations, embedded in the binary and applied in order at open.
//!
//! sqlx's `migrate!` macro needs the macros feature (and files at build time);
//! a numbered list is simpler and keeps the SQL beside the code that uses it.

use sqlx::AnyPool;

use crate::StoreError;

/// Every migration ever shipped, oldest first. Never edit one that shipped:
/// append a new one.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_ca.sql")),
    (2, include_str!("migrations/0002_agent.sql")),
    (3, include_str!("migrations/0003_agent_state.sql")),
    (4, include_str!("migrations/0004_ca_replaces.sql")),
    (5, include_str!("migrations/0005_ca_limits.sql")),
    (6, include_str!("migrations/0006_agent_ledger.sql")),
    (7, include_str!("migrations/0007_ca_paused.sql")),
    (8, include_str!("migrations/0008_agent_slots.sql")),
    (9, include_str!("migrations/0009_agent_slot_facts.sql")),
    (
        10,
        include_str!("migrations/0010_agent_pending_revocations.sql"),
    ),
    (11, include_str!("migrations/0011_agent_serial_value.sql")),
    (20, include_str!("migrations/0020_ca_revocations.sql")),
    (30, include_str!("migrations/0030_agent_dns_records.sql")),
    (31, include_str!("migrations/0031_agent_secondary.sql")),
    (21, include_str!("migrations/0021_ca_issuances.sql")),
    (40, include_str!("migrations/0040_rotated_keys.sql")),
    (50, include_str!("migrations/0050_ca_tlog.sql")),
    (51, include_str!("migrations/0051_agent_tlog_monitor.sql")),
];

/// Applies the migrations the database has not seen yet, each in its own transaction.
pub(crate) async fn run(pool: &AnyPool, sqlite: bool) -> Result<(), StoreError> {
    // Read first, outside any transaction: an up-to-date database needs no
    // write lock at all, so opening it beside a busy daemon never waits.
    let applied: Vec<i64> = match sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(pool)
        .await
    {
        Ok(v) => v,
        Err(_) => {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(pool)
            .await?;
            Vec::new()
        }
    };
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        // Two processes opening a new database race to migrate it. A
        // deferred transaction would read, then fail to upgrade to a write
        // at once (SQLITE_BUSY, no waiting); BEGIN IMMEDIATE takes the write
        // lock first, so the loser waits, then sees the version applied.
        let mut conn = pool.acquire().await?;
        let begin = if sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" };
        sqlx::query(begin).execute(&mut *conn).await?;
        match apply(&mut conn, *version, sql).await {
            Ok(true) => sqlx::query("COMMIT").execute(&mut *conn).await?,
            Ok(false) => sqlx::query("ROLLBACK").execute(&mut *conn).await?,
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Err(e.into());
            }
        };
    }
    Ok(())
}

/// Applies one migration inside the caller's transaction; `false` when
/// another process applied it first.
async fn apply(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    version: i64,
    sql: &str,
) -> Result<bool, sqlx::Error> {
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut **conn)
            .await?;
    if seen.is_some() {
        return Ok(false);
    }
    for statement in statements(sql) {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut **conn)
            .await?;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(now)
        .execute(&mut **conn)
        .await?;
    Ok(true)
}

/// Splits a migration file into statements, dropping `--` comment lines first
/// so a `;` in prose cannot cut a statement.
fn statements(sql: &str) -> Vec<String> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}
