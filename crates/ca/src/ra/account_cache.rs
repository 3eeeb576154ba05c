//! Accounts by id in memory, so an authenticated request does not read its
//! account from the store every time (every ACME POST but newAccount names
//! its account by `kid`: five to seven reads per issued certificate).
//!
//! Why this is safe: in one process every account change goes through the
//! RA, which calls [`AccountCache::changed`] after its store write commits.
//! A read that raced with a change must not put the old row back: each
//! change bumps a generation, and a row read from the store is only kept
//! when no change happened since the read began. No CLI command changes an
//! account, but two CA processes may share one store (a PostgreSQL
//! database, or one SQLite file): a deactivation or key change made by the
//! other is seen here within [`TTL`], the bound on staleness. Under load an
//! account makes many requests per second, so the TTL keeps the savings.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Account;

/// Entries kept at most; beyond it the cache starts over (accounts are
/// small, and a CA with more active accounts than this pays one read per
/// request, as without a cache).
const MAX_ENTRIES: usize = 100_000;

/// How long an entry is trusted: the longest another CA process sharing
/// the store can have changed an account without this one knowing. A
/// monotonic timer, not the CA's clock: this bounds staleness in real
/// time, whatever time the CA is told it is.
const TTL: Duration = Duration::from_secs(5);

/// The cache; see the module docs for its contract.
#[derive(Debug, Default)]
pub(super) struct AccountCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    accounts: HashMap<String, (Account, Instant)>,
}

/// Taken before a store read; [`AccountCache::fill`] keeps the row only if
/// no change came in between.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket(u64);

impl AccountCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached account, or a ticket to fill it with after reading the store.
    pub(super) fn get(&self, id: &str) -> Result<Account, Ticket> {
        let inner = self.lock();
        match inner.accounts.get(id) {
            Some((account, filled)) if filled.elapsed() < TTL => Ok(account.clone()),
            _ => Err(Ticket(inner.generation)),
        }
    }

    /// Keeps an account read from the store under `ticket`, unless an
    /// account changed since.
    pub(super) fn fill(&self, ticket: Ticket, account: &Account) {
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return;
        }
        if inner.accounts.len() >= MAX_ENTRIES {
            inner.accounts.clear();
        }
        inner
            .accounts
            .insert(account.row.id.clone(), (account.clone(), Instant::now()));
    }

    /// Forgets an account whose row was just written (called after the
    /// commit, so the next read sees the new row).
    pub(super) fn changed(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.accounts.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certkeeper_store::AccountRow;

    fn account(id: &str, status: &str) -> Account {
        Account {
            row: AccountRow {
                id: id.into(),
                thumbprint: "t".into(),
                status: status.into(),
                data: "{}".into(),
                created_at: 0,
            },
            doc: crate::objects::AccountDoc {
                key: serde_json::json!({}),
                contact: Vec::new(),
                terms_agreed: true,
                eab_kid: None,
            },
        }
    }

    #[test]
    fn a_read_that_raced_with_a_change_is_not_kept() {
        let cache = AccountCache::default();
        let Err(ticket) = cache.get("a") else {
            panic!("empty cache answered")
        };
        // The account is deactivated between the read and the fill.
        cache.changed("a");
        cache.fill(ticket, &account("a", "valid"));
        assert!(cache.get("a").is_err(), "the stale row was kept");
        let Err(ticket) = cache.get("a") else {
            panic!("empty cache answered")
        };
        cache.fill(ticket, &account("a", "deactivated"));
        assert_eq!(
            cache.get("a").map(|a| a.row.status).ok(),
            Some("deactivated".into())
        );
        cache.changed("a");
        assert!(cache.get("a").is_err(), "a changed account is forgotten");
    }
}
