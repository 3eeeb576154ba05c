//! Sans-IO ACME protocol core shared by the certkeeper CA and agent.
//!
//! This crate parses and produces the bytes that travel between an ACME
//! client and server: JWS request bodies ([RFC 8555 §6.2]), JWKs and their
//! thumbprints ([RFC 7517], [RFC 7638]), problem documents ([RFC 8555 §6.7])
//! and identifiers. It opens no sockets, reads no files and never looks at
//! the clock; every parser returns a [`Result`] and never panics on input.
//!
//! [RFC 8555 §6.2]: https://www.rfc-editor.org/rfc/rfc8555#section-6.2
//! [RFC 8555 §6.7]: https://www.rfc-editor.org/rfc/rfc8555#section-6.7
//! [RFC 7517]: https://www.rfc-editor.org/rfc/rfc7517
//! [RFC 7638]: https://www.rfc-editor.org/rfc/rfc7638

#![forbid(unsafe_code)]

pub mod b64;
pub mod clock;
mod der;
pub mod error;
pub mod identifier;
pub mod jwk;
pub mod jws;
pub mod problem;
pub mod serial;
#[cfg(test)]
mod testutil;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::ProtoError;
pub use identifier::{Identifier, IdentifierType};
pub use jwk::{Alg, EcCurve, Jwk};
pub use jws::{Jws, KeyRef, Protected, SigningKey};
pub use problem::{Problem, ProblemType, Subproblem};
