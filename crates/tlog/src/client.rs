//! A third party's audit of a served log, with only the checkpoint key:
//! fetch the checkpoint and check its signature, fetch every entry bundle
//! and hash tile it covers, recompute every hash from the entries up, and
//! compare. The first difference is reported with its tile and position.

use std::future::Future;

use crate::TlogError;
use crate::hash::{Hash, leaf_hash};
use crate::note::{Checkpoint, NoteVerifier};
use crate::proof::{MemTree, inclusion_proof, tree_root, verify_inclusion};
use crate::tile::{self, HEIGHT, TileId, WIDTH};

/// Fetches log files by path relative to the log prefix (`checkpoint`,
/// `tile/…`); `Ok(None)` for a file the log does not have (404).
pub trait Fetch {
    /// The file's bytes.
    fn fetch(&self, path: &str) -> impl Future<Output = Result<Option<Vec<u8>>, TlogError>> + Send;
}

/// What an audit established.
#[derive(Clone, Debug)]
pub struct Audit {
    /// The verified checkpoint.
    pub checkpoint: Checkpoint,
    /// The signed note.
    pub note: String,
    /// Every entry, in order.
    pub entries: Vec<Vec<u8>>,
    /// Their leaf hashes.
    pub tree: MemTree,
}

impl Audit {
    /// Index of an entry with exactly these bytes, and its inclusion proof,
    /// verified against the checkpoint's root.
    pub fn prove(&self, entry: &[u8]) -> Result<(u64, Vec<Hash>), TlogError> {
        let index = self
            .entries
            .iter()
            .position(|e| e == entry)
            .ok_or_else(|| {
                TlogError::Missing(format!(
                    "the entry in the log of size {}: this certificate was not logged",
                    self.checkpoint.size
                ))
            })? as u64;
        let proof = inclusion_proof(&self.tree, index, self.checkpoint.size)?;
        verify_inclusion(
            index,
            self.checkpoint.size,
            &leaf_hash(entry),
            &proof,
            &self.checkpoint.root,
        )?;
        Ok((index, proof))
    }
}

/// Fetches a tile, falling back from a missing partial tile to the full one
/// (a log may delete partial tiles once the full tile exists).
async fn fetch_tile<F: Fetch>(f: &F, id: TileId) -> Result<Vec<u8>, TlogError> {
    if let Some(d) = f.fetch(&id.path()).await? {
        return Ok(d);
    }
    if id.is_partial()
        && let Some(full) = f.fetch(&id.full().path()).await?
    {
        return Ok(match id.level {
            Some(_) => full[..(usize::from(id.width) * 32).min(full.len())].to_vec(),
            None => {
                let es = tile::decode_bundle(&id.full().path(), &full)?;
                tile::encode_bundle(&es[..usize::from(id.width).min(es.len())])?
            }
        });
    }
    Err(TlogError::Missing(format!(
        "{} (the log does not serve it)",
        id.path()
    )))
}

/// Audits the whole log behind `f` against `verifier`.
pub async fn audit<F: Fetch>(f: &F, verifier: &NoteVerifier) -> Result<Audit, TlogError> {
    let note = f
        .fetch(crate::storage::CHECKPOINT)
        .await?
        .ok_or_else(|| TlogError::Missing("checkpoint".into()))?;
    let note = String::from_utf8(note)
        .map_err(|_| TlogError::MalformedNote("checkpoint is not UTF-8".into()))?;
    let cp = Checkpoint::open(&note, verifier)?;
    let size = cp.size;
    let mut entries = Vec::new();
    let mut level_hashes: Vec<Hash> = Vec::new();
    let bundles = size.div_ceil(WIDTH);
    for b in 0..bundles {
        let width = tile::width_for(0, b, size);
        let id = TileId::entries(b, width);
        let es = tile::decode_bundle(&id.path(), &fetch_tile(f, id).await?)?;
        if es.len() != usize::from(width) {
            return Err(TlogError::Mismatch {
                position: id.path(),
                detail: format!(
                    "{} entries, the checkpoint of size {size} needs {width}",
                    es.len()
                ),
            });
        }
        for e in &es {
            level_hashes.push(leaf_hash(e));
        }
        entries.extend(es);
    }
    let leaves = level_hashes.clone();
    // Each level's tiles must hold exactly the hashes recomputed from below.
    let mut level: u8 = 0;
    loop {
        let count = level_hashes.len() as u64;
        if count == 0 {
            break;
        }
        for t in 0..count.div_ceil(WIDTH) {
            let width = tile::width_for(level, t, size);
            let id = TileId::hashes(level, t, width);
            let got = tile::decode_hashes(&id.path(), &fetch_tile(f, id).await?, width)?;
            let start = (t * WIDTH) as usize;
            for (i, h) in got.iter().enumerate() {
                if *h != level_hashes[start + i] {
                    let pos = t * WIDTH + i as u64;
                    let what = if level == 0 {
                        format!("entry {pos}")
                    } else {
                        format!(
                            "entries {}..{}",
                            pos << (u32::from(level) * HEIGHT),
                            ((pos + 1) << (u32::from(level) * HEIGHT)).min(size)
                        )
                    };
                    return Err(TlogError::Mismatch {
                        position: format!("{} hash {i} ({what})", id.path()),
                        detail: "the tile's hash is not the one recomputed from the entries".into(),
                    });
                }
            }
        }
        // Up one tile level: every full group of 256 gives one hash.
        let next: Vec<Hash> = level_hashes
            .chunks_exact(WIDTH as usize)
            .map(|c| tree_root(&MemTree { leaves: c.to_vec() }, WIDTH))
            .collect::<Result<_, _>>()?;
        level_hashes = next;
        level += 1;
    }
    let tree = MemTree { leaves };
    let root = tree_root(&tree, size)?;
    if root != cp.root {
        return Err(TlogError::Mismatch {
            position: format!("the tree of size {size}"),
            detail: "the root recomputed from the tiles is not the signed checkpoint's".into(),
        });
    }
    Ok(Audit {
        checkpoint: cp,
        note,
        entries,
        tree,
    })
}

/// Fetches from a log directory on disk (a mirror, or the CA's own data).
#[derive(Clone, Debug)]
pub struct DirFetch(pub std::path::PathBuf);

impl Fetch for DirFetch {
    async fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, TlogError> {
        let p = self.0.join(path);
        match std::fs::read(&p) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TlogError::io(p, e)),
        }
    }
}
