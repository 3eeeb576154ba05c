//! certkeeper's built-in private ACME (RFC 8555) certificate authority.
//!
//! Boulder's separation of roles, inside one process:
//! - [`wfe`] (web front end) only parses and authenticates requests and turns
//!   errors into problem documents;
//! - [`ra`] (registration authority) makes every decision: policy, state
//!   transitions, revocation rules;
//! - [`va`] (validation authority) only validates challenges;
//! - [`issuer`] only signs (certificates and CRLs) and computes ARI windows;
//! - [`tlog`] logs every signed certificate before it can be downloaded.
//!
//! Dependencies point one way: `wfe → ra → {va, issuer, store}`.

pub mod clock;
pub mod conn;
pub mod error;
pub mod issuer;
pub mod objects;
pub mod policy;
pub mod ra;
pub mod server;
pub mod tlog;
pub mod va;
pub mod wfe;

pub use clock::{Clock, SystemClock};
pub use error::CaError;
pub use server::{CaConfig, RunningCa, start};
