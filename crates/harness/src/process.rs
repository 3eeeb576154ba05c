//! Running peer commands with timeouts, and owning long-running peers so
//! they die with their handle.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long to sleep between polls of a child or a readiness probe.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Environment variables that would send peers' HTTP through a proxy.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
];

/// Removes proxy settings so loopback traffic stays on loopback.
pub(crate) fn no_proxy(cmd: &mut Command) -> &mut Command {
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd
}

/// Runs `cmd` to completion (killing it after `timeout`), capturing its
/// output in files under `dir` so a chatty peer cannot fill a pipe and hang.
/// A non-zero exit is an error that quotes the command and its output.
pub(crate) fn run(
    cmd: &mut Command,
    what: &str,
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<Output> {
    run_with_stdin(cmd, what, dir, None, timeout)
}

/// Like [`run`], feeding `input` (if any) on stdin, as nsupdate needs.
pub(crate) fn run_with_stdin(
    cmd: &mut Command,
    what: &str,
    dir: &Path,
    input: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Output> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let stem: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = |ext: &str| dir.join(format!("{stem}.{n}.{ext}"));
    let (in_path, out_path, err_path) = (file("stdin"), file("stdout"), file("stderr"));
    let shown = describe(cmd);
    match input {
        Some(text) => {
            std::fs::write(&in_path, text)
                .with_context(|| format!("writing {}", in_path.display()))?;
            cmd.stdin(File::open(&in_path)?);
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    cmd.stdout(
        File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?,
    )
    .stderr(File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{what}: cannot start `{shown}`"))?;
    let status = wait_timeout(&mut child, timeout)?;
    let output = Output {
        status: match status {
            Some(s) => s,
            None => child.wait()?,
        },
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    if status.is_none() {
        bail!(
            "{what}: `{shown}` did not finish within {timeout:?} and was killed\n{}",
            show_output(&output)
        );
    }
    if !output.status.success() {
        bail!(
            "{what}: `{shown}` failed with {}\n{}",
            output.status,
            show_output(&output)
        );
    }
    Ok(output)
}

/// Waits up to `timeout`; on expiry kills the child and returns `None`.
fn wait_timeout(child: &mut Child, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// The command line as a human would type it (program and arguments).
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Both output streams of a finished command, trimmed to their tails.
pub(crate) fn show_output(out: &Output) -> String {
    format!(
        "--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
        tail(&String::from_utf8_lossy(&out.stdout), 60),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    )
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A long-running peer; dropping it kills and reaps the process.
pub(crate) struct Daemon {
    child: Child,
    name: &'static str,
    log: PathBuf,
    command: String,
}

impl Daemon {
    /// Spawns `cmd` with stdout and stderr written to a new `log`.
    pub(crate) fn spawn(
        name: &'static str,
        cmd: &mut Command,
        log: PathBuf,
    ) -> anyhow::Result<Daemon> {
        let file = File::create(&log)
            .with_context(|| format!("{name}: creating log {}", log.display()))?;
        Daemon::spawn_to(name, cmd, log, file)
    }

    /// Spawns `cmd` with stdout and stderr appended to `log` (kept across restarts).
    pub(crate) fn spawn_appending(
        name: &'static str,
        cmd: &mut Command,
        log: PathBuf,
    ) -> anyhow::Result<Daemon> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("{name}: opening log {}", log.display()))?;
        Daemon::spawn_to(name, cmd, log, file)
    }

    fn spawn_to(
        name: &'static str,
        cmd: &mut Command,
        log: PathBuf,
        file: File,
    ) -> anyhow::Result<Daemon> {
        let command = describe(cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("{name}: cannot start `{command}`"))?;
        Ok(Daemon {
            child,
            name,
            log,
            command,
        })
    }

    /// The peer's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The tail of the peer's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
    }

    /// Polls `ready` until it returns `Ok(true)`, failing early if the peer
    /// exits and with its log tail if `timeout` passes.
    pub(crate) fn wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_err = None;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during startup with {status}\ncommand: {}\n--- log {} (tail) ---\n{}",
                    self.name,
                    self.command,
                    self.log.display(),
                    self.log_tail()
                );
            }
            match ready() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_err = Some(e),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not become ready within {timeout:?} (last probe error: {})\ncommand: {}\n--- log {} (tail) ---\n{}",
                    self.name,
                    last_err
                        .map(|e| format!("{e:#}"))
                        .unwrap_or_else(|| "none".into()),
                    self.command,
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
