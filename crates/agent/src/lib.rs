//! certkeeper's agent side: the ACME client that obtains certificates from
//! any RFC 8555 CA, and a load generator that measures a CA with it.

pub mod acme;
pub mod bench;
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod limits;
pub mod planner;
pub mod resolver;
pub mod solvers;
