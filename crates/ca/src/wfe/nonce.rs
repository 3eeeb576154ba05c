//! Anti-replay nonces (RFC 8555 §6.5), stateless: a nonce is
//! `issued-at (8 bytes) || counter (8 bytes) || HMAC-SHA256(key, both)[..16]`,
//! with the key kept in the data directory. The CA stores no unused nonce,
//! so a flood of newNonce requests can evict nothing and a restart does not
//! invalidate the nonces clients hold. Single use is enforced by
//! remembering redeemed nonces until they expire (`LIFETIME_SECS`).
//!
//! Known weakness: the redeemed set lives in memory, so a request replayed
//! right after a restart, with a nonce redeemed just before it, inside the
//! lifetime, is not caught.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::hmac;
use certkeeper_proto::b64;

/// How long a nonce is good for: clients use one within seconds.
pub const LIFETIME_SECS: i64 = 600;
/// Most redeemed nonces remembered; at the bound, redemption fails closed
/// (`badNonce`) rather than forgetting one that could then be replayed.
const MAX_REDEEMED: usize = 1_000_000;
const MAC_LEN: usize = 16;

/// The identity of a nonce: its issued-at time and counter.
type NonceId = [u8; 16];

/// Redeemed nonces, as a set and in redemption order (to expire them).
#[derive(Debug, Default)]
struct Redeemed {
    set: HashSet<NonceId>,
    order: VecDeque<(i64, NonceId)>,
}

/// Issues and redeems nonces under one HMAC key.
#[derive(Debug)]
pub struct Nonces {
    key: hmac::Key,
    counter: AtomicU64,
    redeemed: Mutex<Redeemed>,
}

impl Nonces {
    /// Nonces under `key` (32 random bytes kept across restarts).
    pub fn new(key: &[u8]) -> Nonces {
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            // A random start keeps counters of successive processes apart.
            counter: AtomicU64::new(rand::random::<u64>() >> 1),
            redeemed: Mutex::new(Redeemed::default()),
        }
    }

    /// A fresh nonce, issued at `now` (unix seconds).
    pub fn issue(&self, now: i64) -> String {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&now.to_be_bytes());
        body[8..].copy_from_slice(&self.counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let tag = hmac::sign(&self.key, &body);
        let mut out = Vec::with_capacity(16 + MAC_LEN);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag.as_ref()[..MAC_LEN]);
        b64::encode(&out)
    }

    /// Consumes a nonce at `now`; false if it is forged, expired or used.
    pub fn redeem(&self, nonce: &str, now: i64) -> bool {
        let Ok(raw) = b64::decode(nonce) else {
            return false;
        };
        if raw.len() != 16 + MAC_LEN {
            return false;
        }
        let (body, mac) = raw.split_at(16);
        let tag = hmac::sign(&self.key, body);
        // Constant-time comparison of the truncated tag.
        if aws_lc_rs::constant_time::verify_slices_are_equal(&tag.as_ref()[..MAC_LEN], mac).is_err()
        {
            return false;
        }
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&body[..8]);
        let issued = i64::from_be_bytes(ts);
        if issued > now.saturating_add(60) || now.saturating_sub(issued) > LIFETIME_SECS {
            return false;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(body);
        let Ok(mut guard) = self.redeemed.lock() else {
            return false;
        };
        let Redeemed { set, order } = &mut *guard;
        while let Some((t, old)) = order.front().copied() {
            if now.saturating_sub(t) <= LIFETIME_SECS {
                break;
            }
            order.pop_front();
            set.remove(&old);
        }
        if set.len() >= MAX_REDEEMED || !set.insert(id) {
            return false;
        }
        order.push_back((issued, id));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use() {
        let n = Nonces::new(&[1; 32]);
        let a = n.issue(1000);
        assert!(n.redeem(&a, 1001));
        assert!(!n.redeem(&a, 1001));
        assert!(!n.redeem("never-issued", 1001));
    }

    /// A restarted CA with the same key accepts nonces issued before the
    /// restart; another key's nonces, old ones and tampered ones fail.
    #[test]
    fn nonces_survive_a_restart_and_expire() {
        let before = Nonces::new(&[2; 32]);
        let a = before.issue(1000);
        let b = before.issue(1000);
        let after = Nonces::new(&[2; 32]);
        assert!(after.redeem(&a, 1010));
        assert!(!after.redeem(&b, 1000 + LIFETIME_SECS + 1), "expired");
        assert!(!Nonces::new(&[3; 32]).redeem(&before.issue(1000), 1000));
        let mut raw = b64::decode(&before.issue(1000)).expect("b64");
        raw[3] ^= 1;
        assert!(!before.redeem(&b64::encode(&raw), 1000), "tampered");
    }

    /// Issuing stores nothing: a million newNonce calls cannot push out
    /// the one an honest client holds.
    #[test]
    fn a_flood_evicts_nothing() {
        let n = Nonces::new(&[4; 32]);
        let honest = n.issue(1000);
        for _ in 0..200_000 {
            n.issue(1000);
        }
        assert!(n.redeem(&honest, 1001));
    }
}
