//! The key rotator: HPKE key configs and signing keys that move through
//! pending → active → expired → deleted without anyone waking up
//! (DESIGN.md story 6), after Janus's key rotator and fixing its weaknesses.
//!
//! - [`plan`] is pure: `(keys, policy, now) → operations`, each with its reason.
//! - [`rotator`] runs a plan in one store transaction that excludes other writers.
//! - [`kek`] seals private keys at rest (AES-256-GCM under a 0600 key file).
//! - [`hpke`] is RFC 9180 behind a runtime suite enum, and the RFC 9458 key
//!   config encoding; [`signing`] is Ed25519/ES256 keys and their JWKS.
//! - [`keyring`] is what a replica holds: every usable key, decrypted.
//! - [`serve`] publishes `/ohttp-keys` and `/.well-known/jwks.json`.

pub mod config;
mod error;
pub mod hpke;
pub mod kek;
pub mod keyring;
pub mod model;
pub mod plan;
pub mod rotator;
pub mod serve;
pub mod service;
pub mod signing;

pub use config::KeysConfig;
pub use error::KeysError;
pub use kek::Kek;
pub use keyring::Keyring;
pub use model::{Kind, State, Suite};
pub use plan::{Op, Plan, Timing};
pub use rotator::Rotator;
