//! The agent under test: a temporary directory with its `certkeeper.toml`,
//! the CLI run against it, and the daemon (`certkeeper up --config`)
//! started on it and stopped by SIGTERM as systemd would, or killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A directory holding one agent's configuration, data and logs.
pub struct AgentDir {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl AgentDir {
    /// An empty directory; `bin` is the certkeeper binary under test.
    pub fn new(bin: &Path) -> anyhow::Result<AgentDir> {
        Ok(AgentDir {
            dir: crate::tempdir("agent")?,
            bin: bin.to_path_buf(),
        })
    }

    /// A path inside the directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Where the configuration lives.
    pub fn config_path(&self) -> PathBuf {
        self.path("certkeeper.toml")
    }

    /// Writes the configuration.
    pub fn write_config(&self, toml: &str) -> anyhow::Result<()> {
        std::fs::write(self.config_path(), toml).context("writing certkeeper.toml")
    }

    /// Runs `certkeeper ARGS --config certkeeper.toml` with extra `env`.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).arg("--config").arg(self.config_path());
        cmd.envs(env.iter().copied());
        cmd.output()
            .with_context(|| format!("running certkeeper {args:?}"))
    }

    /// Runs a command that must succeed; its stdout and stderr together.
    pub fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.run(args, &[])?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!("certkeeper {args:?} failed ({}):\n{text}", out.status);
        }
        Ok(text)
    }

    /// `certkeeper status --json`, whole.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        let out = self.run(&["status", "--json"], &[])?;
        if !out.status.success() {
            bail!(
                "status failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).context("status --json is not JSON")
    }

    /// Starts the daemon with extra `env`; its output goes to `daemon.log`.
    pub fn spawn_daemon(&self, env: &[(&str, &str)]) -> anyhow::Result<Daemon> {
        Daemon::spawn(&self.bin, &self.config_path(), self.path("daemon.log"), env)
    }
}

/// A running `certkeeper up`; killed when dropped.
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `BIN up --config CONFIG` with extra `env`; its output goes to `log`.
    pub fn spawn(
        bin: &Path,
        config: &Path,
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Daemon> {
        let file = std::fs::File::create(&log).context("daemon log")?;
        let child = Command::new(bin)
            .arg("up")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .stdout(file.try_clone().context("daemon log")?)
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .context("spawning certkeeper up")?;
        Ok(Daemon { child, log })
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`"TERM"`, `"INT"`) and waits up to `within` for the
    /// process to exit.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        within: Duration,
    ) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{signal} {} failed", self.child.id());
        }
        let deadline = Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().context("waiting for certkeeper")? {
                return Ok(exit);
            }
            if Instant::now() >= deadline {
                bail!(
                    "certkeeper did not exit within {within:?} of SIG{signal}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `within`.
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
