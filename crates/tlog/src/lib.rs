//! An append-only Merkle tree log of the certificates the built-in CA signs.
//!
//! - [`hash`]: RFC 6962 / RFC 9162 §2.1 leaf and node hashing;
//! - [`proof`]: inclusion and consistency proofs, made from any
//!   [`proof::HashSource`] and verified with nothing but hashes;
//! - [`tile`]: C2SP tlog-tiles paths, tiles and entry bundles;
//! - [`note`]: C2SP signed notes (Ed25519) and tlog-checkpoints;
//! - [`storage`]: the log on disk, immutable tiles written atomically, a
//!   checkpoint published only once the tiles it covers are durable;
//! - [`sequencer`]: batches concurrent appends into one write each;
//! - [`client`]: a third party's audit of a served log, with only the
//!   checkpoint key;
//! - [`monitor`]: follows a log poll by poll, proving each new checkpoint
//!   extends the last one it verified.

pub mod client;
pub mod error;
pub mod hash;
pub mod monitor;
pub mod note;
pub mod proof;
pub mod sequencer;
pub mod storage;
pub mod tile;

pub use error::TlogError;
pub use hash::{Hash, leaf_hash, node_hash};
pub use note::{Checkpoint, NoteSigner, NoteVerifier};
pub use sequencer::Sequencer;
pub use storage::FileLog;
