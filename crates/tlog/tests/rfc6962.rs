//! RFC 6962 / RFC 9162 §2.1 test vectors and properties.
//!
//! The 8-leaf vectors are the reference data of Certificate Transparency's
//! Go implementation (transparency-dev/merkle `testonly/constants.go`, also
//! used by Trillian and certificate-transparency-go): leaves, the root of
//! every prefix, and inclusion and consistency proofs between them.

use certkeeper_tlog::Hash;
use certkeeper_tlog::hash::{empty_root, leaf_hash, node_hash, root_of};
use certkeeper_tlog::proof::{
    MemTree, consistency_proof, inclusion_proof, tree_root, verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
/// Root of the first n leaves, n = 1..8.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn tree() -> MemTree {
    MemTree {
        leaves: LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect(),
    }
}

fn root(n: u64) -> Hash {
    if n == 0 {
        empty_root()
    } else {
        h(ROOTS[n as usize - 1])
    }
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn roots_of_every_prefix_match_the_reference() {
    let t = tree();
    for n in 1..=8u64 {
        assert_eq!(
            hex::encode(tree_root(&t, n).unwrap()),
            ROOTS[n as usize - 1],
            "size {n}"
        );
        assert_eq!(root_of(&t.leaves[..n as usize]), root(n), "size {n}, stack");
    }
}

#[test]
fn prefixes_are_0x00_for_leaves_and_0x01_for_nodes() {
    let t = tree();
    // Root of 2 = H(0x01 || H(0x00 || "") || H(0x00 || 0x00)).
    assert_eq!(node_hash(&t.leaves[0], &t.leaves[1]), root(2));
    assert_eq!(leaf_hash(b""), root(1));
}

/// (0-based index, tree size, proof) from the reference data.
fn inclusion_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

#[test]
fn inclusion_proofs_match_the_reference_and_verify() {
    let t = tree();
    for (index, size, want) in inclusion_vectors() {
        let got = inclusion_proof(&t, index, size).unwrap();
        assert_eq!(got, want, "PATH({index}, D[{size}])");
        verify_inclusion(index, size, &t.leaves[index as usize], &want, &root(size)).unwrap();
    }
}

fn consistency_vectors() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            2,
            8,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
    ]
}

#[test]
fn consistency_proofs_match_the_reference_and_verify() {
    let t = tree();
    for (old, new, want) in consistency_vectors() {
        let got = consistency_proof(&t, old, new).unwrap();
        assert_eq!(got, want, "PROOF({old}, D[{new}])");
        verify_consistency(old, new, &root(old), &root(new), &want).unwrap();
    }
}

#[test]
fn degenerate_consistency_cases() {
    verify_consistency(0, 8, &empty_root(), &root(8), &[]).unwrap();
    assert!(verify_consistency(0, 8, &root(1), &root(8), &[]).is_err());
    verify_consistency(4, 4, &root(4), &root(4), &[]).unwrap();
    assert!(verify_consistency(4, 4, &root(4), &root(5), &[]).is_err());
    assert!(verify_consistency(4, 4, &root(4), &root(4), &[[0; 32]]).is_err());
    assert!(verify_consistency(8, 6, &root(8), &root(6), &[]).is_err());
    assert!(verify_consistency(6, 8, &root(6), &root(8), &[]).is_err());
    assert!(inclusion_proof(&tree(), 8, 8).is_err());
    assert!(verify_inclusion(8, 8, &tree().leaves[5], &[], &root(8)).is_err());
}

fn leaves(n: usize) -> MemTree {
    MemTree {
        leaves: (0..n as u32).map(|i| leaf_hash(&i.to_le_bytes())).collect(),
    }
}

/// Every way of damaging a proof: flip a bit in one hash, drop one, add
/// one, swap two that differ.
fn tampered(proof: &[Hash], which: usize, bit: u8) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    if !proof.is_empty() {
        let i = which % proof.len();
        let mut p = proof.to_vec();
        p[i][usize::from(bit) % 32] ^= 1 << (bit % 8);
        out.push(p);
        let mut p = proof.to_vec();
        p.remove(i);
        out.push(p);
        if proof.len() >= 2 {
            let j = (i + 1) % proof.len();
            if proof[i] != proof[j] {
                let mut p = proof.to_vec();
                p.swap(i, j);
                out.push(p);
            }
        }
    }
    let mut p = proof.to_vec();
    p.push([0xab; 32]);
    out.push(p);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_inclusion_proof_verifies_and_every_tampered_one_fails(
        size in 1usize..600, index_seed in any::<u64>(), which in any::<usize>(), bit in any::<u8>()
    ) {
        let t = leaves(size);
        let index = index_seed % size as u64;
        let root = tree_root(&t, size as u64).unwrap();
        prop_assert_eq!(root, root_of(&t.leaves));
        let proof = inclusion_proof(&t, index, size as u64).unwrap();
        prop_assert!(verify_inclusion(index, size as u64, &t.leaves[index as usize], &proof, &root).is_ok());
        for bad in tampered(&proof, which, bit) {
            prop_assert!(verify_inclusion(index, size as u64, &t.leaves[index as usize], &bad, &root).is_err());
        }
        // The right proof for another leaf, index or size fails too.
        let other = (index + 1) % size as u64;
        if other != index {
            prop_assert!(verify_inclusion(other, size as u64, &t.leaves[index as usize], &proof, &root).is_err());
            prop_assert!(verify_inclusion(index, size as u64, &t.leaves[other as usize], &proof, &root).is_err());
        }
        // Against the root of a bigger tree, the proof for this size fails.
        let bigger = leaves(size + 1);
        let root2 = tree_root(&bigger, size as u64 + 1).unwrap();
        prop_assert!(verify_inclusion(index, size as u64 + 1, &t.leaves[index as usize], &proof, &root2).is_err());
    }

    #[test]
    fn every_consistency_proof_verifies_and_every_tampered_one_fails(
        new in 1usize..600, old_seed in any::<u64>(), which in any::<usize>(), bit in any::<u8>()
    ) {
        let t = leaves(new);
        let old = 1 + old_seed % new as u64;
        let (r1, r2) = (tree_root(&t, old).unwrap(), tree_root(&t, new as u64).unwrap());
        let proof = consistency_proof(&t, old, new as u64).unwrap();
        prop_assert!(verify_consistency(old, new as u64, &r1, &r2, &proof).is_ok());
        if old < new as u64 {
            for bad in tampered(&proof, which, bit) {
                prop_assert!(verify_consistency(old, new as u64, &r1, &r2, &bad).is_err());
            }
            // A forked tree: the same size, one entry rewritten.
            let mut forked = t.clone();
            let victim = (old_seed as usize / 7) % old as usize;
            forked.leaves[victim] = leaf_hash(b"rewritten");
            let f1 = tree_root(&forked, old).unwrap();
            prop_assert!(verify_consistency(old, new as u64, &f1, &r2, &proof).is_err());
            let fproof = consistency_proof(&forked, old, new as u64).unwrap();
            prop_assert!(verify_consistency(old, new as u64, &r1, &tree_root(&forked, new as u64).unwrap(), &fproof).is_err());
        }
    }
}
