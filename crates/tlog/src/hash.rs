//! RFC 9162 §2.1.1 hashing: SHA-256, with a 0x00 prefix for leaves and 0x01
//! for interior nodes, so a leaf can never be passed off as a node (the
//! second-preimage attack the prefixes exist to stop).

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// MTH({}) = SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// MTH({d}) = SHA-256(0x00 || d).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (n ≥ 2): RFC 9162's split point `k`.
pub(crate) fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The root of a whole list of leaf hashes, computed with RFC 9162's
/// recursion flattened into a stack (for callers that hold every leaf).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut stack = Right::default();
    for l in leaves {
        stack.push(*l);
    }
    stack.root()
}

/// The right edge of a tree: one perfect-subtree root per set bit of the
/// size, largest first. Appending is amortised O(1) and the root is a fold
/// from the right, because MTH(D[n]) = H(MTH(D[0:k]), MTH(D[k:n])) with the
/// left part always a perfect subtree.
#[derive(Clone, Debug, Default)]
pub struct Right {
    nodes: Vec<(u32, Hash)>,
    size: u64,
}

impl Right {
    /// Appends one leaf hash.
    pub fn push(&mut self, mut h: Hash) {
        let mut level = 0u32;
        while let Some((l, left)) = self.nodes.last() {
            if *l != level {
                break;
            }
            h = node_hash(left, &h);
            self.nodes.pop();
            level += 1;
        }
        self.nodes.push((level, h));
        self.size += 1;
    }

    /// The perfect-subtree roots of the edge, largest first, with their levels.
    pub fn nodes(&self) -> &[(u32, Hash)] {
        &self.nodes
    }

    /// An edge from its nodes (as [`Right::nodes`] gave them); `None` when
    /// they cannot be the edge of any tree (levels not strictly decreasing).
    pub fn from_nodes(nodes: Vec<(u32, Hash)>) -> Option<Right> {
        let mut size: u64 = 0;
        for w in nodes.windows(2) {
            if w[0].0 <= w[1].0 {
                return None;
            }
        }
        for (l, _) in &nodes {
            size = size.checked_add(1u64.checked_shl(*l)?)?;
        }
        Some(Right { nodes, size })
    }

    /// Leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// MTH of everything appended.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some((_, first)) = it.next() else {
            return empty_root();
        };
        let mut acc = *first;
        for (_, left) in it {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        for (n, k) in [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1000, 512)] {
            assert_eq!(split(n), k, "n = {n}");
        }
        assert_eq!(split((1 << 63) + 1), 1 << 63);
    }
}
