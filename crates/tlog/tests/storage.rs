//! The tiled log on disk: what it writes, what survives a crash between the
//! tiles and the checkpoint, and what a third-party audit catches.

use certkeeper_tlog::client::{DirFetch, audit};
use certkeeper_tlog::hash::{leaf_hash, root_of};
use certkeeper_tlog::note::{Checkpoint, NoteSigner};
use certkeeper_tlog::proof::{
    MemTree, consistency_proof, inclusion_proof, tree_root, verify_consistency, verify_inclusion,
};
use certkeeper_tlog::storage::{FileLog, TileReader};
use certkeeper_tlog::{Sequencer, TlogError};

fn entry(i: u64) -> Vec<u8> {
    format!("certificate {i}").into_bytes()
}

fn signer(dir: &std::path::Path) -> NoteSigner {
    NoteSigner::load_or_create(dir, "example.test/log").unwrap()
}

#[test]
fn tiles_proofs_and_checkpoints_agree_with_the_reference_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let dir = tmp.path().join("log");
    let (mut log, tail) = FileLog::open(&dir, signer(&keys)).unwrap();
    assert!(tail.is_empty());
    let mut all = Vec::new();
    let mut checkpoints = Vec::new();
    // Batch sizes that cross tile boundaries at levels 0 and 1 in every way.
    for batch in [1u64, 2, 253, 1, 256, 300, 511, 1, 65_000, 300] {
        let start = all.len() as u64;
        let es: Vec<Vec<u8>> = (start..start + batch).map(entry).collect();
        assert_eq!(log.append_batch(&es).unwrap(), start);
        all.extend(es);
        checkpoints.push(log.published().clone());
    }
    let mem = MemTree {
        leaves: all.iter().map(|e| leaf_hash(e)).collect(),
    };
    let size = all.len() as u64;
    assert_eq!(log.published().root, root_of(&mem.leaves));
    let reader = TileReader::new(&dir, size);
    for cp in &checkpoints {
        // Every checkpoint's root is what the tiles give for its size, and
        // the final tree is consistent with it.
        assert_eq!(tree_root(&reader, cp.size).unwrap(), cp.root);
        let proof = consistency_proof(&reader, cp.size, size).unwrap();
        assert_eq!(proof, consistency_proof(&mem, cp.size, size).unwrap());
        verify_consistency(cp.size, size, &cp.root, &log.published().root, &proof).unwrap();
    }
    for index in [0u64, 1, 255, 256, 257, 65_535, 65_536, size - 1] {
        let proof = inclusion_proof(&reader, index, size).unwrap();
        assert_eq!(proof, inclusion_proof(&mem, index, size).unwrap());
        verify_inclusion(
            index,
            size,
            &mem.leaves[index as usize],
            &proof,
            &log.published().root,
        )
        .unwrap();
        assert_eq!(reader.entry(index).unwrap(), all[index as usize]);
    }
    // Partial tiles superseded by full ones were removed; the current ones stay.
    assert!(!dir.join("tile/0/000.p").exists());
    assert!(dir.join("tile/0/000").exists());
    assert!(
        dir.join(format!("tile/0/{:03}.p/{}", size / 256, size % 256))
            .exists()
            || size.is_multiple_of(256)
    );
    // Reopening reads the edge back from the tiles.
    let root = log.published().root;
    drop(log);
    let (mut log, tail) = FileLog::open(&dir, signer(&keys)).unwrap();
    assert!(tail.is_empty());
    assert_eq!(log.published().root, root);
    log.append_batch(&[entry(size)]).unwrap();
    all.push(entry(size));
    assert_eq!(
        log.published().root,
        root_of(&all.iter().map(|e| leaf_hash(e)).collect::<Vec<_>>())
    );
}

/// kill -9 between "tiles durable" and "checkpoint published": modelled by
/// putting the previous checkpoint file back (the rename never happened).
/// Reopening must sequence the durable entries again at the same positions,
/// write byte-identical tiles, and stay consistent with the old checkpoint.
#[test]
fn entries_durable_beyond_the_checkpoint_are_kept_at_their_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let dir = tmp.path().join("log");
    let (mut log, _) = FileLog::open(&dir, signer(&keys)).unwrap();
    log.append_batch(&(0..250).map(entry).collect::<Vec<_>>())
        .unwrap();
    let before = log.published().clone();
    let old_note = std::fs::read(dir.join("checkpoint")).unwrap();
    log.append_batch(&(250..700).map(entry).collect::<Vec<_>>())
        .unwrap();
    let after = log.published().clone();
    let tile0 = std::fs::read(dir.join("tile/0/000")).unwrap();
    drop(log);
    std::fs::write(dir.join("checkpoint"), &old_note).unwrap();
    // The crash also happened before the hash tiles of the last bundle.
    std::fs::remove_dir_all(dir.join("tile/0/002.p")).unwrap();
    let (log, tail) = FileLog::open(&dir, signer(&keys)).unwrap();
    assert_eq!(tail.len(), 450);
    assert_eq!(tail[0], (250, entry(250)));
    assert_eq!(tail[449], (699, entry(699)));
    assert_eq!(log.published().size, 700);
    assert_eq!(log.published().root, after.root, "same entries, same tree");
    assert_eq!(std::fs::read(dir.join("tile/0/000")).unwrap(), tile0);
    let reader = TileReader::new(&dir, 700);
    let proof = consistency_proof(&reader, before.size, 700).unwrap();
    verify_consistency(before.size, 700, &before.root, &after.root, &proof).unwrap();
}

#[test]
fn a_log_whose_tiles_were_altered_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let dir = tmp.path().join("log");
    let (mut log, _) = FileLog::open(&dir, signer(&keys)).unwrap();
    log.append_batch(&(0..10).map(entry).collect::<Vec<_>>())
        .unwrap();
    drop(log);
    let p = dir.join("tile/0/000.p/10");
    let mut t = std::fs::read(&p).unwrap();
    t[32 * 9] ^= 1;
    std::fs::write(&p, t).unwrap();
    let err = FileLog::open(&dir, signer(&keys)).unwrap_err();
    assert!(matches!(err, TlogError::Mismatch { .. }), "{err}");
}

#[tokio::test]
async fn audit_passes_on_a_good_log_and_names_the_position_of_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let dir = tmp.path().join("log");
    let s = signer(&keys);
    let verifier = s.verifier();
    let (mut log, _) = FileLog::open(&dir, s).unwrap();
    log.append_batch(&(0..600).map(entry).collect::<Vec<_>>())
        .unwrap();
    drop(log);
    let fetch = DirFetch(dir.clone());
    let a = audit(&fetch, &verifier).await.unwrap();
    assert_eq!(a.checkpoint.size, 600);
    let (index, _) = a.prove(&entry(321)).unwrap();
    assert_eq!(index, 321);
    assert!(a.prove(b"never logged").is_err());

    // A rewritten entry (the certificate swapped for another).
    let bundle = dir.join("tile/entries/001");
    let good = std::fs::read(&bundle).unwrap();
    let mut bad = good.clone();
    let at = bad.len() - 1;
    bad[at] ^= 1; // last byte of entry 511
    std::fs::write(&bundle, &bad).unwrap();
    let err = audit(&fetch, &verifier).await.unwrap_err().to_string();
    assert!(err.contains("tile/0/001 hash 255 (entry 511)"), "{err}");
    std::fs::write(&bundle, &good).unwrap();

    // A rewritten hash in a level-1 tile.
    let t1 = dir.join("tile/1/000.p/2");
    let mut t = std::fs::read(&t1).unwrap();
    t[40] ^= 1;
    std::fs::write(&t1, &t).unwrap();
    let err = audit(&fetch, &verifier).await.unwrap_err().to_string();
    assert!(
        err.contains("tile/1/000.p/2 hash 1 (entries 256..512)"),
        "{err}"
    );

    // A checkpoint signed by someone else.
    let (other, _) = NoteSigner::generate("example.test/log").unwrap();
    let cp = Checkpoint::parse(&a.note).unwrap();
    std::fs::write(dir.join("checkpoint"), other.sign(&cp.text()).unwrap()).unwrap();
    assert!(matches!(
        audit(&fetch, &verifier).await,
        Err(TlogError::BadSignature(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_are_batched_and_each_gets_its_own_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, _) = FileLog::open(&tmp.path().join("log"), signer(&tmp.path().join("k"))).unwrap();
    let seq = Sequencer::start(log);
    let mut tasks = Vec::new();
    for i in 0..500u64 {
        let seq = seq.clone();
        tasks.push(tokio::spawn(async move {
            (i, seq.append(entry(i)).await.unwrap())
        }));
    }
    let mut seen = std::collections::HashSet::new();
    let reader_size;
    {
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        reader_size = seq.published().size;
        let reader = seq.reader();
        for (i, index) in results {
            assert!(seen.insert(index));
            // Covered by the published checkpoint as soon as append returned.
            assert!(index < reader_size);
            assert_eq!(reader.entry(index).unwrap(), entry(i));
        }
    }
    assert_eq!(reader_size, 500);
}

/// The CA serves only tiles a published checkpoint covers: a crash can
/// leave files past it, which the next open rewrites.
#[test]
fn only_tiles_inside_the_published_tree_are_covered() {
    use certkeeper_tlog::storage::covered;
    use certkeeper_tlog::tile::TileId;
    let size = 300;
    assert!(covered(TileId::hashes(0, 0, 256), size));
    assert!(covered(TileId::hashes(0, 1, 44), size));
    assert!(covered(TileId::hashes(0, 1, 10), size), "an older partial");
    assert!(
        !covered(TileId::hashes(0, 1, 45), size),
        "past the checkpoint"
    );
    assert!(!covered(TileId::hashes(0, 1, 256), size));
    assert!(!covered(TileId::hashes(0, 2, 1), size));
    assert!(covered(TileId::hashes(1, 0, 1), size));
    assert!(!covered(TileId::hashes(1, 0, 2), size));
    assert!(covered(TileId::entries(1, 44), size));
    assert!(!covered(TileId::entries(1, 45), size));
}
