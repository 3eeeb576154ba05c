//! Anti-replay nonces (RFC 8555 §6.5): random, single use, kept in memory.
//! A restart forgets them; clients then get `badNonce` with a fresh nonce
//! and retry, as RFC 8555 §6.5 requires them to.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use certkeeper_proto::b64;

/// Outstanding nonces, oldest evicted first.
#[derive(Debug)]
pub struct Nonces {
    inner: Mutex<(HashSet<String>, VecDeque<String>)>,
    capacity: usize,
}

impl Nonces {
    /// A pool remembering at most `capacity` unused nonces.
    pub fn new(capacity: usize) -> Nonces {
        Nonces {
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
            capacity,
        }
    }

    /// A fresh nonce.
    pub fn issue(&self) -> String {
        let nonce = b64::encode(&rand::random::<[u8; 16]>());
        if let Ok(mut guard) = self.inner.lock() {
            let (set, order) = &mut *guard;
            while order.len() >= self.capacity {
                if let Some(old) = order.pop_front() {
                    set.remove(&old);
                }
            }
            set.insert(nonce.clone());
            order.push_back(nonce.clone());
        }
        nonce
    }

    /// Consumes a nonce; false if it was never issued, already used or evicted.
    pub fn redeem(&self, nonce: &str) -> bool {
        // The queue keeps the used entry until it ages out; only the set decides.
        self.inner
            .lock()
            .map(|mut g| g.0.remove(nonce))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use() {
        let n = Nonces::new(10);
        let a = n.issue();
        assert!(n.redeem(&a));
        assert!(!n.redeem(&a));
        assert!(!n.redeem("never-issued"));
    }

    #[test]
    fn oldest_nonces_are_evicted() {
        let n = Nonces::new(2);
        let a = n.issue();
        let _b = n.issue();
        let _c = n.issue();
        assert!(!n.redeem(&a));
    }
}
