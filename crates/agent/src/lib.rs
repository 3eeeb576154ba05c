//! certkeeper's agent: obtains, renews, backs up, deploys and replaces
//! certificates from any RFC 8555 CA, and a load generator that measures a
//! CA with its ACME client.
//!
//! The lifecycle is a pipeline of small seams: the [`planner`] decides what
//! is due (pure), the [`guard`] whether it may run now, the [`runner`] runs
//! it as a job, an [`issuer`] talks to the CA, [`targets`] deploy, the
//! [`monitor`] watches for revocation, and [`events`] tell the world.

pub mod acme;
pub mod bench;
mod bounded_http;
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod dns01;
pub mod dns_config;
pub mod error;
pub mod events;
pub mod faults;
pub mod fleet_bench;
pub mod guard;
pub mod issuer;
mod jobs;
pub mod limits;
pub mod model;
pub mod monitor;
pub mod planner;
pub mod reissue_bench;
pub mod resolver;
pub mod revocation;
pub mod runner;
pub mod secondary;
pub mod solver_set;
pub mod solvers;
pub mod status;
pub mod targets;
pub mod tlog_config;
pub mod tlsa_fetch;
pub mod tlsa_target;
pub mod x509;

pub use error::AgentError;
