//! Inclusion and consistency proofs (RFC 9162 §2.1.3 and §2.1.4).
//!
//! Proofs are *made* by the RFC's recursive definitions (PATH and SUBPROOF)
//! over a [`HashSource`], and *verified* by the RFC's iterative algorithms,
//! which need nothing but the hashes: two independent formulations, so a
//! mistake in one shows up as a failed verification in the tests.

use crate::TlogError;
use crate::hash::{Hash, empty_root, node_hash, split};

/// Where proof-making reads perfect-subtree roots from (tiles on disk, or
/// leaves in memory).
pub trait HashSource {
    /// The root of the perfect subtree of 2^`level` leaves starting at leaf
    /// `index << level`. Callers only ask for subtrees wholly inside the tree.
    fn node(&self, level: u32, index: u64) -> Result<Hash, TlogError>;
}

/// MTH(D[start:end]) from the source, using perfect subtrees where aligned.
pub fn subtree_root<S: HashSource + ?Sized>(
    src: &S,
    start: u64,
    end: u64,
) -> Result<Hash, TlogError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return src.node(n.trailing_zeros(), start / n);
    }
    if n == 1 {
        return src.node(0, start);
    }
    let k = split(n);
    Ok(node_hash(
        &subtree_root(src, start, start + k)?,
        &subtree_root(src, start + k, end)?,
    ))
}

/// The root of the first `size` leaves.
pub fn tree_root<S: HashSource + ?Sized>(src: &S, size: u64) -> Result<Hash, TlogError> {
    subtree_root(src, 0, size)
}

/// PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), leaf side first.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TlogError> {
    if index >= size {
        return Err(TlogError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(out)
}

fn path<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), TlogError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1).
pub fn consistency_proof<S: HashSource + ?Sized>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, TlogError> {
    if old > new {
        return Err(TlogError::OutOfRange {
            index: old,
            size: new,
        });
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    subproof(src, old, 0, new, true, &mut out)?;
    Ok(out)
}

fn subproof<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), TlogError> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(subtree_root(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(subtree_root(src, start, start + k)?);
    }
    Ok(())
}

/// The root an inclusion proof leads to (RFC 9162 §2.1.3.2), or `None`
/// when the proof has the wrong shape for (index, size).
pub fn root_from_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash]) -> Option<Hash> {
    if index >= size {
        return None;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return None;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    (snode == 0).then_some(r)
}

/// Checks that `leaf` is entry `index` of the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), TlogError> {
    match root_from_inclusion(index, size, leaf, proof) {
        Some(r) if &r == root => Ok(()),
        _ => Err(TlogError::ProofFailed(format!(
            "inclusion of entry {index} in the tree of size {size}"
        ))),
    }
}

/// Checks that the tree (`new`, `new_root`) extends (`old`, `old_root`)
/// (RFC 9162 §2.1.4.2): nothing in the first `old` entries was rewritten.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), TlogError> {
    let fail = || {
        Err(TlogError::ProofFailed(format!(
            "consistency of the tree of size {old} with the tree of size {new}"
        )))
    };
    if old > new {
        return fail();
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            fail()
        };
    }
    if old == 0 {
        // Every tree extends the empty one; its root is fixed.
        return if proof.is_empty() && *old_root == empty_root() {
            Ok(())
        } else {
            fail()
        };
    }
    if proof.is_empty() {
        return fail();
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return fail();
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if &fr == old_root && &sr == new_root && snode == 0 {
        Ok(())
    } else {
        fail()
    }
}

/// Leaf hashes held in memory: the reference source for tests and for a
/// verifier that has fetched every leaf.
#[derive(Clone, Debug, Default)]
pub struct MemTree {
    /// Leaf hashes, in log order.
    pub leaves: Vec<Hash>,
}

impl HashSource for MemTree {
    fn node(&self, level: u32, index: u64) -> Result<Hash, TlogError> {
        let width = 1u64 << level;
        let start = index * width;
        let end = start + width;
        if end > self.leaves.len() as u64 {
            return Err(TlogError::OutOfRange {
                index: end - 1,
                size: self.leaves.len() as u64,
            });
        }
        if level == 0 {
            return Ok(self.leaves[start as usize]);
        }
        Ok(node_hash(
            &self.node(level - 1, index * 2)?,
            &self.node(level - 1, index * 2 + 1)?,
        ))
    }
}
