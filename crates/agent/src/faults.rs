//! Fault injection for crash tests, compiled in only with the
//! `fault-injection` feature (the test suites enable it; release builds do
//! not carry it, so no environment variable can abort a production agent).
//!
//! When `CERTKEEPER_CRASH_AT` names a point, the process aborts there, as
//! `kill -9` would; when `CERTKEEPER_STALL_AT` does, the job hangs there, as
//! it would on a CA that stops answering (for the shutdown tests). Real crashes cannot be scheduled at an exact step; this
//! is the mock DESIGN.md allows for a fault a real peer cannot produce.

/// Aborts the process here when `CERTKEEPER_CRASH_AT` is `point`.
#[cfg(feature = "fault-injection")]
pub fn crash_point(point: &str) {
    if std::env::var("CERTKEEPER_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("CERTKEEPER_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

/// Does nothing: fault injection is not compiled in.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}

/// Hangs here for an hour when `CERTKEEPER_STALL_AT` is `point`.
#[cfg(feature = "fault-injection")]
pub async fn stall_point(point: &str) {
    if std::env::var("CERTKEEPER_STALL_AT").is_ok_and(|p| p == point) {
        eprintln!("CERTKEEPER_STALL_AT={point}: stalling");
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

/// Does nothing: fault injection is not compiled in.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub async fn stall_point(_point: &str) {}
