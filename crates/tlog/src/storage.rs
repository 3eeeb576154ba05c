//! The log on disk, laid out as C2SP tlog-tiles so the directory can be
//! served as it is: `DIR/checkpoint`, `DIR/tile/L/N[.p/W]`,
//! `DIR/tile/entries/N[.p/W]`.
//!
//! Why the tiles are the only persistent state (no table in the store): the
//! published files *are* the log. A second copy in SQL could disagree with
//! what verifiers downloaded, and then one of them would be a fork. Every
//! piece of writer state is re-read from the rightmost tiles at open: the
//! partial tile of each level and the partial entry bundle.
//!
//! Durability order, which is what makes kill -9 safe:
//! 1. the batch's entry bundles and hash tiles, each written atomically and
//!    fsynced (with its directory), in parallel lanes;
//! 2. only then the checkpoint, atomically;
//! 3. only then are partial tiles superseded by a full tile deleted.
//!
//! So a published checkpoint always covers durable tiles. A crash between 1
//! and 2 leaves entries beyond the checkpoint: [`FileLog::open`] re-reads
//! them from the entry bundles and sequences them again at the same
//! positions. The tiles it writes are byte-identical to any that survived,
//! so no file ever changes content (tiles stay immutable) and the tree
//! extends every checkpoint ever published.

use std::path::{Path, PathBuf};

use crate::TlogError;
use crate::hash::{Hash, empty_root, leaf_hash, node_hash};
use crate::note::{Checkpoint, NoteSigner};
use crate::proof::HashSource;
use crate::tile::{self, HEIGHT, TileId, WIDTH};

/// The checkpoint's file name under the log directory.
pub const CHECKPOINT: &str = "checkpoint";

/// Entries found durable beyond the last checkpoint at open, with their indices.
pub type Recovered = Vec<(u64, Vec<u8>)>;

/// What a published checkpoint says, and the signed note itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// Tree size.
    pub size: u64,
    /// Tree root.
    pub root: Hash,
    /// The signed checkpoint note, as served.
    pub note: String,
}

/// The writer: the right edge of the tree in memory, tiles on disk.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    signer: NoteSigner,
    size: u64,
    /// Per tile level, the hashes of its rightmost (partial) tile.
    right: Vec<Vec<Hash>>,
    /// The entries of the rightmost (partial) entry bundle.
    bundle: Vec<Vec<u8>>,
    published: Published,
}

/// The root of a perfect subtree given its 2^k bottom hashes.
fn perfect_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    if hashes.len() == 1 {
        return hashes[0];
    }
    let (l, r) = hashes.split_at(hashes.len() / 2);
    node_hash(&perfect_root(l), &perfect_root(r))
}

/// The tree root from the partial tile of each level: each holds perfect
/// subtrees of 256^L leaves; split by the binary digits of its width they
/// give the tree's right edge, largest first, folded from the right.
fn root_of_edge(right: &[Vec<Hash>]) -> Hash {
    let mut edge = Vec::new();
    for hashes in right.iter().rev() {
        let mut off = 0usize;
        for bit in (0..HEIGHT).rev() {
            let chunk = 1usize << bit;
            if hashes.len() & chunk != 0 {
                edge.push(perfect_root(&hashes[off..off + chunk]));
                off += chunk;
            }
        }
    }
    let mut it = edge.iter().rev();
    let Some(first) = it.next() else {
        return empty_root();
    };
    let mut acc = *first;
    for left in it {
        acc = node_hash(left, &acc);
    }
    acc
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, TlogError> {
    match std::fs::read(path) {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(TlogError::io(path, e)),
    }
}

/// True when a tile is part of the tree of `size` (a published checkpoint):
/// only those are served. Files past it may exist after a crash and are
/// rewritten from the entry bundles at the next open.
pub fn covered(id: TileId, size: u64) -> bool {
    let have = tile::width_for(id.level.unwrap_or(0), id.index, size);
    have > 0 && id.width <= have
}

/// Reads tiles of a log directory for a tree of a given size: the proof
/// maker's [`HashSource`]. Readers never block the writer.
#[derive(Clone, Debug)]
pub struct TileReader {
    dir: PathBuf,
    size: u64,
}

impl TileReader {
    /// A reader of `dir` for the tree of `size` entries.
    pub fn new(dir: &Path, size: u64) -> TileReader {
        TileReader {
            dir: dir.to_path_buf(),
            size,
        }
    }

    /// Tree size read.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A tile's bytes: the partial file, or when a full tile has since
    /// replaced it, the full tile's prefix (hash tiles and bundles grow
    /// only at the end).
    pub fn tile_bytes(&self, id: TileId) -> Result<Vec<u8>, TlogError> {
        if let Some(d) = read_file(&self.dir.join(id.path()))? {
            return Ok(d);
        }
        if id.is_partial()
            && let Some(full) = read_file(&self.dir.join(id.full().path()))?
        {
            return Ok(match id.level {
                Some(_) => full[..(usize::from(id.width) * 32).min(full.len())].to_vec(),
                None => {
                    let entries = tile::decode_bundle(&id.full().path(), &full)?;
                    tile::encode_bundle(&entries[..usize::from(id.width).min(entries.len())])?
                }
            });
        }
        Err(TlogError::Missing(id.path()))
    }

    /// The hashes of a tile.
    pub fn tile_hashes(&self, id: TileId) -> Result<Vec<Hash>, TlogError> {
        tile::decode_hashes(&id.path(), &self.tile_bytes(id)?, id.width)
    }

    /// The entries of a bundle.
    pub fn bundle(&self, index: u64) -> Result<Vec<Vec<u8>>, TlogError> {
        let width = tile::width_for(0, index, self.size);
        if width == 0 {
            return Err(TlogError::OutOfRange {
                index: index * WIDTH,
                size: self.size,
            });
        }
        let id = TileId::entries(index, width);
        let entries = tile::decode_bundle(&id.path(), &self.tile_bytes(id)?)?;
        if entries.len() != usize::from(width) {
            return Err(TlogError::MalformedTile {
                path: id.path(),
                detail: format!("{} entries, expected {width}", entries.len()),
            });
        }
        Ok(entries)
    }

    /// Entry `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, TlogError> {
        if index >= self.size {
            return Err(TlogError::OutOfRange {
                index,
                size: self.size,
            });
        }
        let mut b = self.bundle(index / WIDTH)?;
        Ok(b.swap_remove((index % WIDTH) as usize))
    }
}

impl HashSource for TileReader {
    fn node(&self, level: u32, index: u64) -> Result<Hash, TlogError> {
        let tile_level = level / HEIGHT;
        let sub = level % HEIGHT;
        let start = index << sub;
        let t = start / WIDTH;
        let off = (start % WIDTH) as usize;
        let count = 1usize << sub;
        let l8 = u8::try_from(tile_level).map_err(|_| TlogError::OutOfRange {
            index,
            size: self.size,
        })?;
        let width = tile::width_for(l8, t, self.size);
        if off + count > usize::from(width) {
            return Err(TlogError::OutOfRange {
                index: (index + 1) << level,
                size: self.size,
            });
        }
        let hashes = self.tile_hashes(TileId::hashes(l8, t, width))?;
        Ok(perfect_root(&hashes[off..off + count]))
    }
}

impl FileLog {
    /// Opens (or creates) the log in `dir`, signing with `signer`.
    ///
    /// Returns the log and the entries it found durable beyond the last
    /// checkpoint (a crash after the tiles, before the checkpoint), with
    /// their indices: they are sequenced again, at the same positions, and
    /// a checkpoint covering them is published before this returns.
    pub fn open(dir: &Path, signer: NoteSigner) -> Result<(FileLog, Recovered), TlogError> {
        std::fs::create_dir_all(dir).map_err(|e| TlogError::io(dir, e))?;
        let cp_path = dir.join(CHECKPOINT);
        let published = match read_file(&cp_path)? {
            Some(bytes) => {
                let note = String::from_utf8(bytes).map_err(|_| {
                    TlogError::MalformedNote(format!("{} is not UTF-8", cp_path.display()))
                })?;
                let cp = Checkpoint::open(&note, &signer.verifier()).map_err(|e| {
                    TlogError::Mismatch {
                        position: cp_path.display().to_string(),
                        detail: format!(
                            "the stored checkpoint does not verify with the log key: {e}"
                        ),
                    }
                })?;
                Published {
                    size: cp.size,
                    root: cp.root,
                    note,
                }
            }
            None => {
                let cp = Checkpoint {
                    origin: signer.name().to_string(),
                    size: 0,
                    root: empty_root(),
                };
                Published {
                    size: 0,
                    root: cp.root,
                    note: signer.sign(&cp.text())?,
                }
            }
        };
        let size = published.size;
        let reader = TileReader::new(dir, size);
        let mut right = Vec::new();
        let mut level: u32 = 0;
        while level < 64 && (size >> (level * HEIGHT)) > 0 {
            let l8 = level as u8;
            let at = size >> (level * HEIGHT);
            let width = (at % WIDTH) as u16;
            let hashes = if width > 0 {
                reader.tile_hashes(TileId::hashes(l8, at / WIDTH, width))?
            } else {
                Vec::new()
            };
            right.push(hashes);
            level += 1;
        }
        let bundle = if size % WIDTH > 0 {
            reader.bundle(size / WIDTH)?
        } else {
            Vec::new()
        };
        let root = root_of_edge(&right);
        if root != published.root {
            return Err(TlogError::Mismatch {
                position: "the rightmost tiles".into(),
                detail: format!(
                    "they give a root that is not the checkpoint's for size {size}; the tiles on disk were altered"
                ),
            });
        }
        if size == 0 {
            certkeeper_store::files::write_atomic(
                &cp_path,
                published.note.as_bytes(),
                certkeeper_store::files::PUBLIC,
            )
            .map_err(|e| TlogError::io(&cp_path, e))?;
        }
        let mut log = FileLog {
            dir: dir.to_path_buf(),
            signer,
            size,
            right,
            bundle,
            published,
        };
        let tail = log.durable_tail()?;
        if !tail.is_empty() {
            tracing::warn!(
                from = size,
                count = tail.len(),
                "entries durable beyond the last checkpoint (crash before publishing): sequencing them again at the same positions"
            );
            let entries: Vec<Vec<u8>> = tail.iter().map(|(_, e)| e.clone()).collect();
            log.append_batch(&entries)?;
        }
        Ok((log, tail))
    }

    /// Entries in entry bundles past the checkpoint, in order.
    fn durable_tail(&self) -> Result<Recovered, TlogError> {
        let mut out = Vec::new();
        let mut next = self.size;
        loop {
            let b = next / WIDTH;
            let have = next % WIDTH;
            let full = TileId::entries(b, WIDTH as u16);
            let entries = if let Some(d) = read_file(&self.dir.join(full.path()))? {
                tile::decode_bundle(&full.path(), &d)?
            } else {
                // The widest partial bundle beyond what we have.
                let pdir = self.dir.join(full.partial_dir());
                let mut best: Option<u16> = None;
                match std::fs::read_dir(&pdir) {
                    Ok(rd) => {
                        for e in rd.flatten() {
                            if let Some(w) =
                                e.file_name().to_str().and_then(|s| s.parse::<u16>().ok())
                                && u64::from(w) > have
                                && u64::from(w) < WIDTH
                                && best.is_none_or(|b| w > b)
                            {
                                best = Some(w);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(TlogError::io(&pdir, e)),
                }
                let Some(w) = best else { break };
                let id = TileId::entries(b, w);
                let d = read_file(&self.dir.join(id.path()))?
                    .ok_or_else(|| TlogError::Missing(id.path()))?;
                tile::decode_bundle(&id.path(), &d)?
            };
            if (entries.len() as u64) <= have {
                break;
            }
            let complete = entries.len() as u64 == WIDTH;
            for (i, e) in entries.into_iter().enumerate().skip(have as usize) {
                out.push((b * WIDTH + i as u64, e));
            }
            next = (b + 1) * WIDTH;
            if !complete {
                break;
            }
        }
        Ok(out)
    }

    /// The last published checkpoint.
    pub fn published(&self) -> &Published {
        &self.published
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's origin (its key name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// Appends `entries` at the end; returns the index of the first. When it
    /// returns, the tiles and a checkpoint covering the entries are durable.
    /// An error leaves the in-memory edge unusable: the caller must stop
    /// appending (reopening recovers from the files).
    pub fn append_batch(&mut self, entries: &[Vec<u8>]) -> Result<u64, TlogError> {
        if let Some(e) = entries.iter().find(|e| e.len() > usize::from(u16::MAX)) {
            return Err(TlogError::EntryTooLarge(e.len()));
        }
        let first = self.size;
        if entries.is_empty() {
            return Ok(first);
        }
        let mut full_bundles: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
        let mut full_tiles: Vec<(TileId, Vec<Hash>)> = Vec::new();
        let mut touched = vec![false; self.right.len().max(1)];
        for e in entries {
            let index = self.size;
            self.bundle.push(e.clone());
            if self.bundle.len() as u64 == WIDTH {
                full_bundles.push((index / WIDTH, std::mem::take(&mut self.bundle)));
            }
            let mut h = leaf_hash(e);
            let mut level = 0usize;
            loop {
                if self.right.len() <= level {
                    self.right.push(Vec::new());
                }
                if touched.len() <= level {
                    touched.push(false);
                }
                touched[level] = true;
                self.right[level].push(h);
                if (self.right[level].len() as u64) < WIDTH {
                    break;
                }
                let hashes = std::mem::take(&mut self.right[level]);
                let tile_index = (index >> (level as u32 * HEIGHT)) / WIDTH;
                h = perfect_root(&hashes);
                full_tiles.push((
                    TileId::hashes(level as u8, tile_index, WIDTH as u16),
                    hashes,
                ));
                level += 1;
            }
            self.size += 1;
        }
        // 1. Every tile and bundle of the batch. Lanes (the bundles, and each
        // tile level) are written in parallel, so the batch pays about one
        // file fsync + one directory fsync before its checkpoint instead of
        // one pair per file. Order between lanes does not matter: nothing
        // past the published checkpoint is served (see `covered`), and
        // reopening re-derives every tile past it from the entry bundles.
        let mut lanes: Vec<Vec<(TileId, Vec<u8>)>> = Vec::new();
        let mut bundles = Vec::new();
        for (b, es) in &full_bundles {
            bundles.push((TileId::entries(*b, WIDTH as u16), tile::encode_bundle(es)?));
        }
        if !self.bundle.is_empty() {
            let id = TileId::entries(self.size / WIDTH, self.bundle.len() as u16);
            bundles.push((id, tile::encode_bundle(&self.bundle)?));
        }
        lanes.push(bundles);
        for (level, hashes) in self.right.iter().enumerate() {
            let mut lane: Vec<(TileId, Vec<u8>)> = full_tiles
                .iter()
                .filter(|(id, _)| id.level == Some(level as u8))
                .map(|(id, h)| (*id, tile::encode_hashes(h)))
                .collect();
            if touched.get(level).copied().unwrap_or(false) && !hashes.is_empty() {
                let at = self.size >> (level as u32 * HEIGHT);
                let id = TileId::hashes(level as u8, at / WIDTH, hashes.len() as u16);
                lane.push((id, tile::encode_hashes(hashes)));
            }
            lanes.push(lane);
        }
        let dir = &self.dir;
        let results: Vec<Result<(), TlogError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = lanes
                .iter()
                .filter(|l| !l.is_empty())
                .map(|lane| {
                    scope.spawn(move || {
                        for (id, data) in lane {
                            let path = dir.join(id.path());
                            certkeeper_store::files::write_atomic(
                                &path,
                                data,
                                certkeeper_store::files::PUBLIC,
                            )
                            .map_err(|e| TlogError::io(&path, e))?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(TlogError::Stopped("a tile writer panicked".into()))
                    })
                })
                .collect()
        });
        for r in results {
            r?;
        }
        // 2. The checkpoint, now that everything it covers is durable.
        let root = root_of_edge(&self.right);
        let cp = Checkpoint {
            origin: self.signer.name().to_string(),
            size: self.size,
            root,
        };
        let note = self.signer.sign(&cp.text())?;
        let cp_path = self.dir.join(CHECKPOINT);
        certkeeper_store::files::write_atomic(
            &cp_path,
            note.as_bytes(),
            certkeeper_store::files::PUBLIC,
        )
        .map_err(|e| TlogError::io(&cp_path, e))?;
        self.published = Published {
            size: self.size,
            root,
            note,
        };
        // 3. Partial versions of now-full tiles are garbage (tlog-tiles lets
        // a log drop them; clients fall back to the full tile). Best effort.
        for id in full_bundles
            .iter()
            .map(|(b, _)| TileId::entries(*b, WIDTH as u16))
            .chain(full_tiles.iter().map(|(id, _)| *id))
        {
            let _ = std::fs::remove_dir_all(self.dir.join(id.partial_dir()));
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::root_of;

    #[test]
    fn edge_root_matches_the_reference_root_for_many_sizes() {
        let leaves: Vec<Hash> = (0u32..70_000)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        for n in [
            0usize, 1, 2, 3, 255, 256, 257, 511, 512, 65535, 65536, 65537, 70_000,
        ] {
            // Build the edge as the writer would.
            let mut right: Vec<Vec<Hash>> = Vec::new();
            for h in &leaves[..n] {
                let mut h = *h;
                let mut level = 0;
                loop {
                    if right.len() <= level {
                        right.push(Vec::new());
                    }
                    right[level].push(h);
                    if right[level].len() < 256 {
                        break;
                    }
                    h = perfect_root(&std::mem::take(&mut right[level]));
                    level += 1;
                }
            }
            assert_eq!(root_of_edge(&right), root_of(&leaves[..n]), "size {n}");
        }
    }
}
