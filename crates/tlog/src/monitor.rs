//! A monitor: follows a served log from poll to poll, hands over every new
//! entry, and proves each new checkpoint extends the last one it verified.
//!
//! The proof needs no hash tiles: the monitor keeps the right edge of the
//! tree it verified (one hash per set bit of its size), extends it with the
//! leaf hashes of the new entries, and the result must be the new signed
//! root. If it is, the new tree's first `old` entries are exactly the old
//! tree's (a collision aside); if not, the log was rewritten or forked, or
//! served entries its checkpoint does not commit to. Either way: alert.

use crate::TlogError;
use crate::client::Fetch;
use crate::hash::{Hash, Right, leaf_hash};
use crate::note::{Checkpoint, NoteVerifier};
use crate::tile::{self, TileId, WIDTH};

/// What a monitor remembers between polls (persist it with
/// [`MonitorState::to_text`]).
#[derive(Clone, Debug)]
pub struct MonitorState {
    /// The last verified checkpoint note.
    pub note: String,
    /// Its tree size and root.
    pub checkpoint: Checkpoint,
    edge: Right,
}

/// Why a poll raised an alarm rather than an error of transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorAlert {
    /// The new checkpoint has fewer entries than one verified before.
    #[error("the log shrank from {old} to {new} entries: it was rewritten")]
    Shrunk {
        /// Verified size.
        old: u64,
        /// Size now claimed.
        new: u64,
    },
    /// The new checkpoint does not extend the verified one.
    #[error(
        "the log at size {new} is not an extension of the verified tree of size {old}: it was rewritten or forked"
    )]
    Fork {
        /// Verified size.
        old: u64,
        /// Size now claimed.
        new: u64,
    },
    /// A checkpoint of the same size with another root.
    #[error("two checkpoints of size {size} with different roots: the log is forked")]
    SplitView {
        /// The size.
        size: u64,
    },
}

/// One poll's outcome.
#[derive(Debug)]
pub enum Polled {
    /// The checkpoint extends the verified one; these entries are new.
    Grew {
        /// (index, entry) in order.
        entries: Vec<(u64, Vec<u8>)>,
    },
    /// The log is inconsistent with what was verified: alert, and keep the
    /// old state (the evidence is the old and the new note).
    Alert {
        /// What is wrong.
        alert: MonitorAlert,
        /// The offending signed checkpoint.
        note: String,
    },
}

impl MonitorState {
    /// The state of a monitor that has seen nothing (size 0).
    pub fn empty(origin: &str) -> MonitorState {
        MonitorState {
            note: String::new(),
            checkpoint: Checkpoint {
                origin: origin.to_string(),
                size: 0,
                root: crate::hash::empty_root(),
            },
            edge: Right::default(),
        }
    }

    /// Text form: the edge, one `level hexhash` line each, a blank line, the note.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (l, h) in self.edge.nodes() {
            s.push_str(&format!("{l} {}\n", hex::encode(h)));
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parses [`MonitorState::to_text`], re-verifying the note and that the
    /// edge gives its root.
    pub fn from_text(text: &str, verifier: &NoteVerifier) -> Result<MonitorState, TlogError> {
        let bad = |d: &str| TlogError::MalformedNote(format!("monitor state: {d}"));
        let (edge_s, note) = text
            .split_once("\n\n")
            .unwrap_or(("", text.strip_prefix('\n').unwrap_or(text)));
        let mut nodes = Vec::new();
        for line in edge_s.lines().filter(|l| !l.is_empty()) {
            let (l, h) = line.split_once(' ').ok_or_else(|| bad("edge line"))?;
            let l: u32 = l.parse().map_err(|_| bad("edge level"))?;
            let h: Hash = hex::decode(h)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| bad("edge hash"))?;
            nodes.push((l, h));
        }
        let edge = Right::from_nodes(nodes).ok_or_else(|| bad("edge shape"))?;
        if note.is_empty() {
            if edge.size() != 0 {
                return Err(bad("edge without a checkpoint"));
            }
            return Ok(MonitorState::empty(verifier.name()));
        }
        let checkpoint = Checkpoint::open(note, verifier)?;
        if edge.size() != checkpoint.size || edge.root() != checkpoint.root {
            return Err(bad("edge does not give the checkpoint's root"));
        }
        Ok(MonitorState {
            note: note.to_string(),
            checkpoint,
            edge,
        })
    }

    /// Fetches the current checkpoint and the entries since the last poll,
    /// and checks that the log still extends what was verified. On
    /// [`Polled::Grew`] the state advances; on an alert it stays.
    pub async fn poll<F: Fetch>(
        &mut self,
        f: &F,
        verifier: &NoteVerifier,
    ) -> Result<Polled, TlogError> {
        let note = f
            .fetch(crate::storage::CHECKPOINT)
            .await?
            .ok_or_else(|| TlogError::Missing("checkpoint".into()))?;
        let note = String::from_utf8(note)
            .map_err(|_| TlogError::MalformedNote("checkpoint is not UTF-8".into()))?;
        let cp = Checkpoint::open(&note, verifier)?;
        let old = self.checkpoint.size;
        if cp.size < old {
            return Ok(Polled::Alert {
                alert: MonitorAlert::Shrunk { old, new: cp.size },
                note,
            });
        }
        if cp.size == old {
            if cp.root != self.checkpoint.root {
                return Ok(Polled::Alert {
                    alert: MonitorAlert::SplitView { size: old },
                    note,
                });
            }
            return Ok(Polled::Grew {
                entries: Vec::new(),
            });
        }
        let mut entries = Vec::new();
        let mut edge = self.edge.clone();
        let mut next = old;
        while next < cp.size {
            let b = next / WIDTH;
            let width = tile::width_for(0, b, cp.size);
            let id = TileId::entries(b, width);
            let data = match f.fetch(&id.path()).await? {
                Some(d) => d,
                None if id.is_partial() => f
                    .fetch(&id.full().path())
                    .await?
                    .ok_or_else(|| TlogError::Missing(id.path()))?,
                None => return Err(TlogError::Missing(id.path())),
            };
            let es = tile::decode_bundle(&id.path(), &data)?;
            if es.len() < usize::from(width) {
                return Err(TlogError::MalformedTile {
                    path: id.path(),
                    detail: format!("{} entries, need {width}", es.len()),
                });
            }
            for (i, e) in es
                .into_iter()
                .enumerate()
                .take(usize::from(width))
                .skip((next % WIDTH) as usize)
            {
                edge.push(leaf_hash(&e));
                entries.push((b * WIDTH + i as u64, e));
            }
            next = b * WIDTH + u64::from(width);
        }
        if edge.root() != cp.root {
            return Ok(Polled::Alert {
                alert: MonitorAlert::Fork { old, new: cp.size },
                note,
            });
        }
        self.edge = edge;
        self.checkpoint = cp;
        self.note = note;
        Ok(Polled::Grew { entries })
    }
}
