//! Solvers that hand the challenge to something outside the process: a
//! webroot another web server serves (http-01), and operator commands that
//! publish a TXT record (dns-01; the built-in alternative is the RFC 2136
//! solver in `dns01.rs`).

use std::path::PathBuf;
use std::time::Duration;

use crate::acme::{ChallengeType, PendingChallenge, Solver, SolverError, SolverFuture};

/// http-01 by writing `WEBROOT/.well-known/acme-challenge/TOKEN`.
#[derive(Debug, Clone)]
pub struct WebrootSolver {
    /// The document root the web server serves for the names.
    pub root: PathBuf,
}

impl WebrootSolver {
    fn path(&self, c: &PendingChallenge) -> Result<PathBuf, SolverError> {
        // Tokens are base64url (RFC 8555 §8.1); refuse anything that could escape the directory.
        if c.token.is_empty()
            || !c
                .token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SolverError::new(format!(
                "refusing unsafe challenge token {:?}",
                c.token
            )));
        }
        Ok(self.root.join(".well-known/acme-challenge").join(&c.token))
    }
}

impl Solver for WebrootSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    fn present<'a>(&'a self, c: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(async move {
            let path = self.path(c)?;
            certkeeper_store::files::write_atomic(
                &path,
                c.key_authorization.as_bytes(),
                certkeeper_store::files::PUBLIC,
            )
            .map_err(|e| SolverError::new(format!("writing {}: {e}", path.display())))
        })
    }

    fn cleanup<'a>(&'a self, c: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(async move {
            let path = self.path(c)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(SolverError::new(format!(
                    "removing {}: {e}",
                    path.display()
                ))),
            }
        })
    }
}

/// dns-01 through operator commands (`sh -c`), given the record in the
/// environment: `CERTKEEPER_DOMAIN`, `CERTKEEPER_TXT_NAME`, `CERTKEEPER_TXT_VALUE`.
#[derive(Debug, Clone)]
pub struct ExecDnsSolver {
    /// Publishes the record.
    pub present: String,
    /// Removes it.
    pub cleanup: String,
    /// Wait after publishing, for secondaries to catch up; paid once per
    /// order (in [`Solver::wait_until_visible`]), not once per name.
    pub propagation: Duration,
}

/// Longest a hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

async fn run_hook(command: &str, c: &PendingChallenge) -> Result<(), SolverError> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("CERTKEEPER_DOMAIN", &c.identifier)
        .env(
            "CERTKEEPER_TXT_NAME",
            format!("_acme-challenge.{}", c.identifier),
        )
        .env("CERTKEEPER_TXT_VALUE", &c.dns_value)
        .kill_on_drop(true);
    let out = tokio::time::timeout(HOOK_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            SolverError::new(format!(
                "dns hook {command:?} timed out after {} s",
                HOOK_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| SolverError::new(format!("dns hook {command:?} could not start: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SolverError::new(format!(
            "dns hook {command:?} failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    Ok(())
}

impl Solver for ExecDnsSolver {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Dns01
    }

    fn present<'a>(&'a self, c: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(run_hook(&self.present, c))
    }

    fn cleanup<'a>(&'a self, c: &'a PendingChallenge) -> SolverFuture<'a> {
        Box::pin(run_hook(&self.cleanup, c))
    }

    fn wait_until_visible(&self) -> SolverFuture<'_> {
        Box::pin(async move {
            tokio::time::sleep(self.propagation).await;
            Ok(())
        })
    }
}
