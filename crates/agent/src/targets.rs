//! The deploy targets of every managed certificate, built once from the
//! configuration behind the [`Deployer`] trait.
//!
//! Each `[[certificate.deploy]]` directory gets the **served** slot's
//! certificate (and runs its reload command), and a `backup/` subdirectory
//! gets the backup slot's certificate (no reload), so operators can inspect
//! the backup and a server can be pointed at it by hand.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::Config;
use crate::deploy::{DeployError, Deployer, FileTarget, ReloadCommand};

/// Which copy a target holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The certificate servers use: the served slot's.
    Served,
    /// The backup slot's, under `backup/`, for inspection.
    Backup,
}

/// Every certificate's targets.
pub struct Targets {
    targets: HashMap<(String, Role), Vec<Box<dyn Deployer>>>,
    /// Targets whose files are current but whose reload failed: deployed
    /// again (which re-runs the reload) on the next pass.
    reload_pending: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets")
            .field("certificates", &self.targets.len())
            .finish_non_exhaustive()
    }
}

impl Targets {
    /// The targets the configuration describes.
    pub fn from_config(config: &Config) -> Targets {
        let mut targets: HashMap<(String, Role), Vec<Box<dyn Deployer>>> = HashMap::new();
        for cert in &config.certificates {
            for d in &cert.deploy {
                let served = FileTarget {
                    dir: d.dir.clone(),
                    combined: d.combined,
                    reload: d.reload.as_ref().map(|command| ReloadCommand {
                        command: command.clone(),
                        timeout: Duration::from_secs(d.reload_timeout_seconds),
                        retries: d.reload_retries,
                    }),
                };
                targets
                    .entry((cert.name.clone(), Role::Served))
                    .or_default()
                    .push(Box::new(served));
                if cert.backup.is_some() {
                    let backup = FileTarget {
                        dir: d.dir.join("backup"),
                        combined: d.combined,
                        reload: None,
                    };
                    targets
                        .entry((cert.name.clone(), Role::Backup))
                        .or_default()
                        .push(Box::new(backup));
                }
            }
        }
        Targets {
            targets,
            reload_pending: Mutex::new(HashSet::new()),
        }
    }

    /// Adds a target built elsewhere (TLSA records need the clock).
    pub fn push(&mut self, name: &str, role: Role, target: Box<dyn Deployer>) {
        self.targets
            .entry((name.to_string(), role))
            .or_default()
            .push(target);
    }

    /// Whether `name` has any target in `role`.
    pub fn has(&self, name: &str, role: Role) -> bool {
        self.targets.contains_key(&(name.to_string(), role))
    }

    /// Writes `chain_pem`/`key_pem` to every target of `name` in `role`
    /// that does not hold them yet (and re-runs failed reloads). Returns how
    /// many targets were written; the first failure is returned after every
    /// target was tried.
    pub async fn ensure(
        &self,
        name: &str,
        role: Role,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<usize, DeployError> {
        let Some(list) = self.targets.get(&(name.to_string(), role)) else {
            return Ok(0);
        };
        let mut written = 0;
        let mut first_error = None;
        for target in list {
            let pending = (name.to_string(), target.describe());
            let is_pending = self
                .reload_pending
                .lock()
                .map(|p| p.contains(&pending))
                .unwrap_or(false);
            if !is_pending && target.is_current(chain_pem, key_pem).await.unwrap_or(false) {
                continue;
            }
            match target.deploy(chain_pem, key_pem).await {
                Ok(_) => {
                    written += 1;
                    if let Ok(mut p) = self.reload_pending.lock() {
                        p.remove(&pending);
                    }
                }
                Err(e) => {
                    if matches!(e, DeployError::Reload { .. })
                        && let Ok(mut p) = self.reload_pending.lock()
                    {
                        // The files are in place; only the reload must run again.
                        p.insert(pending);
                    }
                    tracing::warn!(certificate = name, target = %target.describe(), error = %e, "deploy failed; retrying next pass");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }
}
