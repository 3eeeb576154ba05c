//! Orders and authorizations this process just recorded in a settled state,
//! and the chains it just issued, so the client's next fetch of each is not
//! a store read: the poll after a validation, the finalize that reads the
//! order's authorizations, the poll after finalize and the download.
//!
//! Why this is safe: an entry is put only after the commit that wrote it,
//! never filled from a read, and only in a state the object leaves, if at
//! all, through a later state (an authorization `valid` → `deactivated`;
//! orders `valid` and `invalid` are final; a chain never changes). A put
//! never replaces a later state with an earlier one, so a validation whose
//! put comes late cannot undo the deactivation that followed its commit.
//! Another CA process sharing the store (PostgreSQL, or one SQLite file)
//! may deactivate an authorization: this one sees it within [`TTL`], the
//! same bound as for accounts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Authz, Order};

/// Entries kept at most per kind; beyond it that kind starts over (a miss
/// is one store read, as without the cache).
const MAX_ENTRIES: usize = 20_000;

/// How long an authorization or order is trusted (see the module docs).
/// A chain never changes, but is only kept for its download.
const TTL: Duration = Duration::from_secs(5);

/// The cache; see the module docs for its contract.
#[derive(Debug, Default)]
pub(super) struct Settled {
    authzs: Mutex<HashMap<String, (Authz, Instant)>>,
    orders: Mutex<HashMap<String, (Order, Instant)>>,
    chains: Mutex<HashMap<String, (Arc<str>, Instant)>>,
}

/// Orders states: an authorization only ever moves to a higher rank.
fn rank(status: &str) -> u8 {
    match status {
        "pending" => 0,
        "processing" => 1,
        "valid" | "invalid" => 2,
        _ => 3, // deactivated, revoked
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn get<T: Clone>(map: &Mutex<HashMap<String, (T, Instant)>>, id: &str) -> Option<T> {
    match lock(map).get(id) {
        Some((value, put)) if put.elapsed() < TTL => Some(value.clone()),
        _ => None,
    }
}

fn put<T>(map: &Mutex<HashMap<String, (T, Instant)>>, id: &str, value: T) {
    let mut map = lock(map);
    if map.len() >= MAX_ENTRIES && !map.contains_key(id) {
        map.clear();
    }
    map.insert(id.to_string(), (value, Instant::now()));
}

impl Settled {
    /// A settled authorization this process recorded, if recent.
    pub(super) fn authz(&self, id: &str) -> Option<Authz> {
        get(&self.authzs, id)
    }

    /// Keeps an authorization whose state was just committed, unless it is
    /// unsettled or a later state of it is kept already.
    pub(super) fn authz_recorded(&self, authz: &Authz) {
        let new = rank(&authz.row.status);
        if new < 2 {
            return;
        }
        let kept = lock(&self.authzs)
            .get(&authz.row.id)
            .map(|(a, _)| rank(&a.row.status));
        if kept.is_some_and(|kept| kept > new) {
            return;
        }
        put(&self.authzs, &authz.row.id, authz.clone());
    }

    /// A final order this process recorded, if recent.
    pub(super) fn order(&self, id: &str) -> Option<Order> {
        get(&self.orders, id)
    }

    /// Keeps an order whose final state (`valid`, `invalid`) was just committed.
    pub(super) fn order_recorded(&self, order: &Order) {
        if matches!(order.row.status.as_str(), "valid" | "invalid") {
            put(&self.orders, &order.row.id, order.clone());
        }
    }

    /// The chain of a certificate this process just issued, if recent.
    pub(super) fn chain(&self, serial: &str) -> Option<Arc<str>> {
        get(&self.chains, serial)
    }

    /// Keeps the chain of a certificate just recorded, for its download.
    pub(super) fn chain_recorded(&self, serial: &str, chain_pem: &str) {
        put(&self.chains, serial, Arc::from(chain_pem));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use certkeeper_store::AuthzRow;

    fn authz(status: &str) -> Authz {
        Authz {
            row: AuthzRow {
                id: "z".into(),
                account_id: "a".into(),
                identifier: "dns:a.test".into(),
                status: status.into(),
                expires_at: 0,
                data: "{}".into(),
            },
            doc: crate::objects::AuthzDoc {
                identifier: certkeeper_proto::Identifier::dns("a.test"),
                challenges: Vec::new(),
                wildcard: false,
            },
        }
    }

    #[test]
    fn only_settled_states_are_kept_and_never_moved_back() {
        let cache = Settled::default();
        cache.authz_recorded(&authz("pending"));
        assert!(
            cache.authz("z").is_none(),
            "a pending authorization was kept"
        );
        cache.authz_recorded(&authz("valid"));
        assert_eq!(
            cache.authz("z").map(|a| a.row.status).as_deref(),
            Some("valid")
        );
        cache.authz_recorded(&authz("deactivated"));
        // The validation's put arriving after the deactivation's.
        cache.authz_recorded(&authz("valid"));
        assert_eq!(
            cache.authz("z").map(|a| a.row.status).as_deref(),
            Some("deactivated")
        );
    }
}
