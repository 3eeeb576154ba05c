//! Watching certificates after issuance: the CA's ARI window and the CRL
//! named in the certificate. What they find becomes store state (a window,
//! a revocation) that the planner acts on: swap to the backup, re-key.

pub mod ari;
pub mod crl;
pub mod ct_search;
pub mod log_watch;
pub mod tlog;
