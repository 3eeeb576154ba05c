//! Deploy targets: put a certificate and its key where a server reads them,
//! then make the server load them.
//!
//! Deploying is the last step of a renewal and the one that can take a
//! service down, so a deployer checks its input before touching anything
//! (the leaf must match the key), replaces every file atomically, and never
//! rolls back what it wrote: once a new certificate is on disk, losing it to
//! a failed reload would be worse than a server that has not reloaded yet.

use std::fmt;
use std::future::Future;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use certkeeper_store::files::{PRIVATE, PUBLIC, write_atomic};
use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, info, warn};

/// The leaf certificate alone (PEM).
pub const CERT_FILE: &str = "cert.pem";
/// The intermediates, without the leaf (PEM; empty if the CA sent none).
pub const CHAIN_FILE: &str = "chain.pem";
/// Leaf then intermediates: what most servers want as their certificate.
pub const FULLCHAIN_FILE: &str = "fullchain.pem";
/// The private key (PEM, mode 0600).
pub const KEY_FILE: &str = "key.pem";
/// Key then leaf then intermediates in one file (mode 0600), for servers
/// that load the pair from one path (HAProxy, Postfix `smtpd_tls_chain_files`).
pub const COMBINED_FILE: &str = "combined.pem";

/// Suffix of a fully written file waiting for its rename into place.
const STAGED_SUFFIX: &str = ".certkeeper-staged";
/// How much of a failed reload command's stderr is kept for the report.
const STDERR_TAIL_BYTES: usize = 2048;
/// First pause between reload attempts; doubled after each, up to the cap.
const RELOAD_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Longest pause between reload attempts.
const RELOAD_RETRY_DELAY_MAX: Duration = Duration::from_secs(5);
/// How long to keep reading a finished reload command's output, in case it
/// left a background process holding the pipe.
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// Boxed future returned by [`Deployer`] methods, so targets can be chosen
/// at run time behind `&dyn Deployer`.
pub type DeployFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DeployError>> + Send + 'a>>;

/// Somewhere a certificate is served from: a directory of PEM files, later
/// TLSA records or an in-process rustls resolver.
///
/// The contract every implementation keeps:
/// - **Validate first.** Input that would break the server (unparsable PEM,
///   a leaf that is not for the key) is refused before anything is written.
/// - **Atomic per file.** Each file is replaced whole (temp file, fsync,
///   rename): a reader sees the old or the new content, never a torn one.
///   Several files are not replaced as one unit; an implementation documents
///   the order it uses and why.
/// - **Idempotent.** Deploying the same material again writes nothing and
///   re-runs the "make the server load it" step, so calling `deploy` again is
///   how a failed reload is retried.
/// - **Never loses the certificate.** A failure after files were written
///   (reload, hook) is reported; the written files stay in place.
/// - **Never logs private keys.**
/// - Callers do not deploy to the same target concurrently (the agent's
///   guard deduplicates jobs per certificate).
pub trait Deployer: Send + Sync {
    /// A short description for logs and reports, e.g. `files:/etc/nginx/tls`.
    fn describe(&self) -> String;
    /// Whether the target already holds exactly this certificate and key,
    /// i.e. whether `deploy` would write nothing; lets a restarted agent find
    /// a deploy a crash interrupted.
    fn is_current<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str) -> DeployFuture<'a, bool>;
    /// Installs `chain_pem` (leaf first) and `key_pem`, then makes the
    /// server load them.
    fn deploy<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str)
    -> DeployFuture<'a, DeployReport>;
}

/// A command that makes a server load the new files, e.g. `nginx -s reload`
/// or `systemctl reload haproxy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadCommand {
    /// Run with `sh -c`. It gets `CERTKEEPER_DIR`, `CERTKEEPER_CERT`,
    /// `CERTKEEPER_CHAIN`, `CERTKEEPER_FULLCHAIN`, `CERTKEEPER_KEY` (and
    /// `CERTKEEPER_COMBINED` when written) in its environment.
    pub command: String,
    /// Deadline per attempt; on expiry the command's whole process group is
    /// killed (SIGKILL) and the attempt counts as failed.
    pub timeout: Duration,
    /// Extra attempts after a failed first one (so `retries + 1` in all),
    /// with a pause of 200 ms doubling up to 5 s in between.
    pub retries: u32,
}

/// Files in a directory that a server reads, plus an optional reload.
///
/// Writes [`CERT_FILE`], [`CHAIN_FILE`], [`FULLCHAIN_FILE`], [`KEY_FILE`]
/// and, when `combined`, [`COMBINED_FILE`]; the key files are mode 0600, the
/// others 0644. Files whose content and mode are already right are not
/// touched, and files this target no longer writes (a `combined.pem` from an
/// earlier configuration) are left alone: a deployer never deletes.
///
/// **Order, and what a reader sees mid-deploy.** Every changed file is first
/// written in full and fsynced under a staging name (nothing visible changes
/// yet; a full disk fails here and leaves the old pair intact). Then the
/// staged files are renamed into place back to back, in this order:
/// `combined.pem`, `key.pem`, `chain.pem`, `cert.pem`, `fullchain.pem`,
/// and the directory is fsynced once. Consequences:
/// - `combined.pem` is the only path whose key and certificate always match:
///   point servers that read the files at arbitrary moments (Postfix's
///   `smtpd` processes, file watchers) at it.
/// - When the key is reused (pinned keys, resumed orders), `key.pem` is not
///   touched and a reader of the separate files never sees a mismatch.
/// - When the key changes, a reader that opens `key.pem` and `fullchain.pem`
///   during the few microseconds between their renames can get a new key
///   with the old certificate (nginx then refuses the reload and keeps
///   serving from memory). The reload command runs only after every rename.
/// - `fullchain.pem` is renamed last, so it is the commit marker: if it
///   holds the new chain, every other file does too. A crash between renames
///   leaves the old `fullchain.pem`, which [`FileTarget::is_current`] (or a
///   comparison of that one file) detects, and the next deploy finishes.
///
/// Paths are replaced, not written through: a symlink at `fullchain.pem`
/// becomes a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTarget {
    /// Directory holding the files; created (with its parents) if missing.
    pub dir: PathBuf,
    /// Also write [`COMBINED_FILE`].
    pub combined: bool,
    /// Run after the files are in place.
    pub reload: Option<ReloadCommand>,
}

/// What a successful (or reload-failed) deploy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    /// The target's directory.
    pub dir: PathBuf,
    /// Files replaced by this deploy, in the order they were renamed.
    pub written: Vec<PathBuf>,
    /// Files that already had the right content and mode.
    pub unchanged: Vec<PathBuf>,
    /// The reload, if one is configured.
    pub reload: Option<ReloadOutcome>,
}

/// How the reload command went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// The command as configured.
    pub command: String,
    /// Attempts made (1 when the first succeeded).
    pub attempts: u32,
    /// Whether the last attempt exited 0.
    pub succeeded: bool,
    /// Why the last failed attempt failed ("exit status: 3", "timed out
    /// after 200ms, killed", a spawn error); `None` on success.
    pub failure: Option<String>,
    /// The end of the last attempt's stderr (lossy UTF-8, trimmed).
    pub stderr_tail: String,
    /// Time spent in all attempts, pauses included.
    pub elapsed: Duration,
}

/// Why a deploy failed; each variant says whether files were changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The certificate or key is unusable; nothing was written.
    #[error("refusing to deploy to {dir}: {reason}; nothing was written")]
    Input {
        /// The target's directory.
        dir: PathBuf,
        /// What is wrong with the input (never contains key material).
        reason: String,
    },
    /// A file could not be written or read; nothing visible was changed.
    #[error(
        "cannot write {path}: {source}; nothing in {dir} was changed (check that certkeeper may create and write files there)",
        path = .path.display(),
        dir = .dir.display()
    )]
    Write {
        /// The target's directory.
        dir: PathBuf,
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A staged file could not be renamed into place, after some others were.
    #[error(
        "cannot move the new {path} into place: {source}; already replaced: [{replaced}]; deploy again to finish",
        path = .path.display(),
        replaced = display_paths(.replaced)
    )]
    Commit {
        /// The file that failed.
        path: PathBuf,
        /// Files already replaced before the failure.
        replaced: Vec<PathBuf>,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The files are in place but the reload command failed every attempt.
    #[error(
        "new files are in place in {dir}, but reload `{command}` failed after {attempts} attempt(s): {failure}{stderr}; the files were kept: fix the command or the server and deploy again",
        dir = .report.dir.display(),
        command = .outcome.command,
        attempts = .outcome.attempts,
        failure = .outcome.failure.as_deref().unwrap_or("failed"),
        stderr = stderr_suffix(&.outcome.stderr_tail)
    )]
    Reload {
        /// What was written (everything, since validation passed).
        report: Box<DeployReport>,
        /// The failed reload.
        outcome: Box<ReloadOutcome>,
    },
    /// A DNS target (TLSA records) could not be updated; the UPDATE is
    /// atomic, so the previous records are still served.
    #[error("cannot publish to {target}: {reason}; the previous records are unchanged")]
    Dns {
        /// The target, e.g. `tlsa:_letsencrypt._tcp.HOST`.
        target: String,
        /// The DNS error (names the server, zone, key and the fix).
        reason: String,
    },
}

impl DeployError {
    /// Whether new files may be on disk despite the error, so the caller
    /// records the certificate as (possibly) deployed rather than discarding
    /// anything.
    pub fn files_changed(&self) -> bool {
        match self {
            Self::Input { .. } | Self::Write { .. } | Self::Dns { .. } => false,
            Self::Commit { replaced, .. } => !replaced.is_empty(),
            Self::Reload { .. } => true,
        }
    }

    /// Whether deploying the same material again may succeed (a transient
    /// disk or server problem) rather than fail the same way (bad input).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Input { .. })
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; stderr: {tail}")
    }
}

/// One file to install: name in the target directory, bytes, mode.
struct Planned {
    name: &'static str,
    bytes: Vec<u8>,
    mode: u32,
}

impl fmt::Debug for Planned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes of key.pem and combined.pem are secret.
        f.debug_struct("Planned")
            .field("name", &self.name)
            .field("len", &self.bytes.len())
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

impl FileTarget {
    /// A target writing the four separate files to `dir`, with no reload.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            combined: false,
            reload: None,
        }
    }

    /// Writes the files (see the type's docs for the order) and runs the
    /// reload command, if any, once all of them are in place.
    ///
    /// The reload runs even when no file changed, so calling this again is
    /// how a failed reload is retried. A reload that fails every attempt is
    /// [`DeployError::Reload`], which carries the report: the files stay.
    pub async fn deploy(
        &self,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<DeployReport, DeployError> {
        let planned = render(&self.dir, chain_pem, key_pem, self.combined)?;
        let dir = self.dir.clone();
        let (written, unchanged) = tokio::task::spawn_blocking(move || install(&dir, planned))
            .await
            .map_err(|e| DeployError::Write {
                dir: self.dir.clone(),
                path: self.dir.clone(),
                source: io::Error::other(e.to_string()),
            })??;
        if written.is_empty() {
            debug!(dir = %self.dir.display(), "deploy: files already current");
        } else {
            info!(dir = %self.dir.display(), written = %display_paths(&written), "deployed certificate files");
        }
        let mut report = DeployReport {
            dir: self.dir.clone(),
            written,
            unchanged,
            reload: None,
        };
        if let Some(reload) = &self.reload {
            let outcome = run_reload(reload, &self.dir, self.combined).await;
            if !outcome.succeeded {
                warn!(
                    dir = %self.dir.display(),
                    command = %outcome.command,
                    attempts = outcome.attempts,
                    failure = outcome.failure.as_deref().unwrap_or(""),
                    stderr = %outcome.stderr_tail,
                    "reload failed; the new files are kept"
                );
                return Err(DeployError::Reload {
                    report: Box::new(report),
                    outcome: Box::new(outcome),
                });
            }
            report.reload = Some(outcome);
        }
        Ok(report)
    }

    /// Whether every file this target writes already has the content and
    /// mode a deploy of `chain_pem` and `key_pem` would give it.
    pub async fn is_current(&self, chain_pem: &str, key_pem: &str) -> Result<bool, DeployError> {
        let planned = render(&self.dir, chain_pem, key_pem, self.combined)?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            for file in &planned {
                let path = dir.join(file.name);
                if !already_there(&path, file).map_err(|source| DeployError::Write {
                    dir: dir.clone(),
                    path: path.clone(),
                    source,
                })? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await
        .map_err(|e| DeployError::Write {
            dir: self.dir.clone(),
            path: self.dir.clone(),
            source: io::Error::other(e.to_string()),
        })?
    }
}

impl Deployer for FileTarget {
    fn describe(&self) -> String {
        format!("files:{}", self.dir.display())
    }

    fn is_current<'a>(&'a self, chain_pem: &'a str, key_pem: &'a str) -> DeployFuture<'a, bool> {
        Box::pin(FileTarget::is_current(self, chain_pem, key_pem))
    }

    fn deploy<'a>(
        &'a self,
        chain_pem: &'a str,
        key_pem: &'a str,
    ) -> DeployFuture<'a, DeployReport> {
        Box::pin(FileTarget::deploy(self, chain_pem, key_pem))
    }
}

/// Parses and cross-checks the input and renders every file, in commit
/// order. Output PEM is re-encoded from DER (64-column base64, LF), so the
/// files are the same whatever spacing the CA or the store used.
fn render(
    dir: &Path,
    chain_pem: &str,
    key_pem: &str,
    combined: bool,
) -> Result<Vec<Planned>, DeployError> {
    let refuse = |reason: String| DeployError::Input {
        dir: dir.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("the certificate chain is not valid PEM: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(refuse("the certificate chain holds no certificate".into()));
    };
    // Only the kind of error, never the input: this is key material.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        refuse("the private key is not a PEM PKCS#8, SEC1 or PKCS#1 private key".into())
    })?;
    let key_pair = KeyPair::try_from(&key)
        .map_err(|e| refuse(format!("the private key cannot be used: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| refuse(format!("the leaf certificate does not parse: {e}")))?;
    if parsed.public_key().raw != key_pair.subject_public_key_info().as_slice() {
        return Err(refuse(
            "the leaf certificate is not for this private key (a server would refuse the pair)"
                .into(),
        ));
    }

    let cert_pem = pem_block("CERTIFICATE", leaf.as_ref());
    let chain_only: String = chain[1..]
        .iter()
        .map(|c| pem_block("CERTIFICATE", c.as_ref()))
        .collect();
    let fullchain = format!("{cert_pem}{chain_only}");
    let key_label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let key_out = pem_block(key_label, key.secret_der());

    let mut files = Vec::with_capacity(5);
    if combined {
        files.push(Planned {
            name: COMBINED_FILE,
            bytes: format!("{key_out}{fullchain}").into_bytes(),
            mode: PRIVATE,
        });
    }
    files.push(Planned {
        name: KEY_FILE,
        bytes: key_out.into_bytes(),
        mode: PRIVATE,
    });
    files.push(Planned {
        name: CHAIN_FILE,
        bytes: chain_only.into_bytes(),
        mode: PUBLIC,
    });
    files.push(Planned {
        name: CERT_FILE,
        bytes: cert_pem.into_bytes(),
        mode: PUBLIC,
    });
    files.push(Planned {
        name: FULLCHAIN_FILE,
        bytes: fullchain.into_bytes(),
        mode: PUBLIC,
    });
    Ok(files)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = BASE64_STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // base64 is ASCII, so byte offsets are char boundaries.
    let mut start = 0;
    while start < b64.len() {
        let end = (start + 64).min(b64.len());
        out.push_str(&b64[start..end]);
        out.push('\n');
        start = end;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

fn staged_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}{STAGED_SUFFIX}"))
}

/// Whether `path` already has `file`'s bytes and mode. A missing file is
/// simply not there yet.
fn already_there(path: &Path, file: &Planned) -> io::Result<bool> {
    let mut handle = match std::fs::File::open(path) {
        Ok(handle) => handle,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = handle.metadata()?;
    if !meta.is_file()
        || meta.permissions().mode() & 0o777 != file.mode
        || meta.len() != file.bytes.len() as u64
    {
        return Ok(false);
    }
    let mut current = Vec::with_capacity(file.bytes.len());
    handle.read_to_end(&mut current)?;
    Ok(current == file.bytes)
}

/// Stages every changed file, then renames them into place back to back.
/// Returns (written, unchanged) paths.
fn install(dir: &Path, planned: Vec<Planned>) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DeployError> {
    let write_err = |path: &Path, source: io::Error| DeployError::Write {
        dir: dir.to_path_buf(),
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    // Left by a crash between staging and commit: stale, never valid input.
    for name in [
        COMBINED_FILE,
        KEY_FILE,
        CHAIN_FILE,
        CERT_FILE,
        FULLCHAIN_FILE,
    ] {
        let staged = staged_path(dir, name);
        match std::fs::remove_file(&staged) {
            Ok(()) => {
                debug!(path = %staged.display(), "removed a staged file left by an interrupted deploy")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(&staged, e)),
        }
    }

    let mut unchanged = Vec::new();
    let mut to_commit = Vec::new();
    for file in &planned {
        let path = dir.join(file.name);
        if already_there(&path, file).map_err(|e| write_err(&path, e))? {
            unchanged.push(path);
            continue;
        }
        let staged = staged_path(dir, file.name);
        if let Err(e) = write_atomic(&staged, &file.bytes, file.mode) {
            for (staged, _) in &to_commit {
                let _ = std::fs::remove_file(staged);
            }
            return Err(write_err(&path, e));
        }
        to_commit.push((staged, path));
    }

    let mut written = Vec::with_capacity(to_commit.len());
    for (index, (staged, path)) in to_commit.iter().enumerate() {
        if let Err(source) = std::fs::rename(staged, path) {
            for (staged, _) in &to_commit[index..] {
                let _ = std::fs::remove_file(staged);
            }
            return Err(DeployError::Commit {
                path: path.clone(),
                replaced: written,
                source,
            });
        }
        written.push(path.clone());
    }
    if !written.is_empty() {
        // The renames are durable only once the directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| write_err(dir, e))?;
    }
    Ok((written, unchanged))
}

/// Runs the reload command until it succeeds or the attempts run out.
async fn run_reload(reload: &ReloadCommand, dir: &Path, combined: bool) -> ReloadOutcome {
    let started = Instant::now();
    let mut delay = RELOAD_RETRY_DELAY;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = run_once(reload, dir, combined).await;
        let (failure, stderr_tail) = match attempt {
            Ok(stderr_tail) => {
                debug!(command = %reload.command, attempts, "reload succeeded");
                return ReloadOutcome {
                    command: reload.command.clone(),
                    attempts,
                    succeeded: true,
                    failure: None,
                    stderr_tail,
                    elapsed: started.elapsed(),
                };
            }
            Err(failed) => failed,
        };
        if attempts > reload.retries {
            return ReloadOutcome {
                command: reload.command.clone(),
                attempts,
                succeeded: false,
                failure: Some(failure),
                stderr_tail,
                elapsed: started.elapsed(),
            };
        }
        warn!(command = %reload.command, attempt = attempts, %failure, retry_in = ?delay, "reload failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RELOAD_RETRY_DELAY_MAX);
    }
}

/// One attempt: `Ok(stderr tail)` on exit 0, else `Err((why, stderr tail))`.
async fn run_once(
    reload: &ReloadCommand,
    dir: &Path,
    combined: bool,
) -> Result<String, (String, String)> {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&reload.command)
        .env("CERTKEEPER_DIR", dir)
        .env("CERTKEEPER_CERT", dir.join(CERT_FILE))
        .env("CERTKEEPER_CHAIN", dir.join(CHAIN_FILE))
        .env("CERTKEEPER_FULLCHAIN", dir.join(FULLCHAIN_FILE))
        .env("CERTKEEPER_KEY", dir.join(KEY_FILE))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what `sh` started too
        // (a `sleep` or a stuck `systemctl` would otherwise outlive it).
        .process_group(0)
        .kill_on_drop(true);
    if combined {
        cmd.env("CERTKEEPER_COMBINED", dir.join(COMBINED_FILE));
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| (format!("cannot start `sh -c`: {e}"), String::new()))?;
    let stderr = child.stderr.take();
    let reader = tokio::spawn(read_tail(stderr));

    let status = match tokio::time::timeout(reload.timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            kill_group(&mut child);
            let _ = child.wait().await;
            let tail = collect(reader).await;
            return Err((
                format!("timed out after {:?}, killed", reload.timeout),
                tail,
            ));
        }
    };
    let tail = collect(reader).await;
    match status {
        Ok(status) if status.success() => Ok(tail),
        Ok(status) => Err((status.to_string(), tail)),
        Err(e) => Err((format!("cannot wait for the command: {e}"), tail)),
    }
}

/// SIGKILL to the command's process group; falls back to the shell alone.
fn kill_group(child: &mut tokio::process::Child) {
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw);
    let killed = group.is_some_and(|pid| {
        rustix::process::kill_process_group(pid, rustix::process::Signal::KILL).is_ok()
    });
    if !killed {
        let _ = child.start_kill();
    }
}

/// Waits briefly for the output reader: a background process the command
/// started may hold the pipe open long after the command itself exited.
async fn collect(reader: tokio::task::JoinHandle<Vec<u8>>) -> String {
    let abort = reader.abort_handle();
    match tokio::time::timeout(OUTPUT_GRACE, reader).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => {
            abort.abort();
            String::new()
        }
    }
}

/// Reads a pipe to its end, keeping only the last [`STDERR_TAIL_BYTES`].
async fn read_tail<R: AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer};

    /// A leaf for `name` signed by a throwaway CA: (chain PEM, key PEM).
    fn material(name: &str) -> (String, String) {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec![name.to_owned()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf cert");
        // Blank line and CRLF on purpose: the files must come out clean anyway.
        let chain = format!("{}\r\n{}", leaf.pem(), ca_cert.pem());
        (chain, leaf_key.serialize_pem())
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn certs_in(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("PEM")
    }

    #[tokio::test]
    async fn writes_every_file_with_content_and_mode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("tls");
        let (chain, key) = material("files.example.test");
        let target = FileTarget {
            combined: true,
            ..FileTarget::new(&dir)
        };
        let report = target.deploy(&chain, &key).await.expect("deploy");
        assert_eq!(report.written.len(), 5);
        assert!(report.unchanged.is_empty());
        assert_eq!(report.written.last(), Some(&dir.join(FULLCHAIN_FILE)));

        let sent = certs_in(&chain);
        assert_eq!(certs_in(&read(&dir.join(CERT_FILE))), sent[..1]);
        assert_eq!(certs_in(&read(&dir.join(CHAIN_FILE))), sent[1..]);
        assert_eq!(certs_in(&read(&dir.join(FULLCHAIN_FILE))), sent);
        let key_file = read(&dir.join(KEY_FILE));
        assert_eq!(
            PrivateKeyDer::from_pem_slice(key_file.as_bytes())
                .expect("key.pem parses")
                .secret_der(),
            PrivateKeyDer::from_pem_slice(key.as_bytes())
                .expect("input key")
                .secret_der()
        );
        let combined = read(&dir.join(COMBINED_FILE));
        assert!(combined.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            combined,
            format!("{key_file}{}", read(&dir.join(FULLCHAIN_FILE)))
        );
        assert!(!read(&dir.join(FULLCHAIN_FILE)).contains('\r'));
        assert!(!read(&dir.join(FULLCHAIN_FILE)).contains("\n\n"));

        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir.join(COMBINED_FILE)), 0o600);
        for public in [CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE] {
            assert_eq!(mode(&dir.join(public)), 0o644, "{public}");
        }
        assert!(target.is_current(&chain, &key).await.expect("check"));
    }

    #[tokio::test]
    async fn redeploy_is_idempotent_atomic_and_leaves_no_temp_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let target = FileTarget {
            combined: true,
            ..FileTarget::new(dir)
        };
        let (chain_a, key_a) = material("a.example.test");
        target.deploy(&chain_a, &key_a).await.expect("first deploy");

        let again = target.deploy(&chain_a, &key_a).await.expect("same again");
        assert!(again.written.is_empty(), "{again:?}");
        assert_eq!(again.unchanged.len(), 5);

        // Someone loosened the key's mode: the same content is rewritten 0600.
        std::fs::set_permissions(dir.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        assert!(!target.is_current(&chain_a, &key_a).await.expect("check"));
        let fixed = target.deploy(&chain_a, &key_a).await.expect("fix mode");
        assert_eq!(fixed.written, vec![dir.join(KEY_FILE)]);
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);

        // A crash between staging and commit left a staged file behind.
        std::fs::write(staged_path(dir, FULLCHAIN_FILE), "stale").expect("stale");
        let (chain_b, key_b) = material("b.example.test");
        assert!(!target.is_current(&chain_b, &key_b).await.expect("check"));
        let renewed = target.deploy(&chain_b, &key_b).await.expect("new pair");
        assert_eq!(renewed.written.len(), 5);
        assert_eq!(
            certs_in(&read(&dir.join(FULLCHAIN_FILE))),
            certs_in(&chain_b)
        );
        assert_eq!(
            listing(dir),
            [
                CERT_FILE,
                CHAIN_FILE,
                COMBINED_FILE,
                FULLCHAIN_FILE,
                KEY_FILE
            ]
        );
    }

    #[tokio::test]
    async fn key_for_another_certificate_is_refused_before_writing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (chain_a, key_a) = material("a.example.test");
        let (_, key_b) = material("b.example.test");
        let target = FileTarget::new(tmp.path());
        target.deploy(&chain_a, &key_a).await.expect("deploy");
        let before = read(&tmp.path().join(KEY_FILE));

        let err = target
            .deploy(&chain_a, &key_b)
            .await
            .expect_err("mismatched pair");
        assert!(matches!(err, DeployError::Input { .. }), "{err}");
        assert!(!err.files_changed() && !err.is_retryable());
        assert!(
            err.to_string().contains("not for this private key"),
            "{err}"
        );
        assert_eq!(read(&tmp.path().join(KEY_FILE)), before);

        let err = target
            .deploy(&chain_a, "not a key")
            .await
            .expect_err("no key");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        let err = target.deploy("", &key_a).await.expect_err("no chain");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    /// Private keys never reach messages, reports or Debug output.
    #[tokio::test]
    async fn key_material_is_never_in_errors_or_reports() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (chain, key) = material("secret.example.test");
        let (_, other_key) = material("other.example.test");
        let key_body: String = key.lines().nth(1).expect("a base64 line").to_owned();
        let target = FileTarget {
            combined: true,
            reload: Some(ReloadCommand {
                command: "exit 1".into(),
                timeout: Duration::from_secs(5),
                retries: 0,
            }),
            ..FileTarget::new(tmp.path())
        };
        let err = target.deploy(&chain, &key).await.expect_err("reload fails");
        let mismatch = target
            .deploy(&chain, &other_key)
            .await
            .expect_err("mismatch");
        for text in [
            err.to_string(),
            format!("{err:?}"),
            mismatch.to_string(),
            format!("{mismatch:?}"),
        ] {
            assert!(!text.contains(&key_body), "key leaked: {text}");
        }
    }

    #[tokio::test]
    async fn reload_runs_after_the_files_are_in_place() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("nginx");
        let (chain, key) = material("reload.example.test");
        let d = dir.display();
        let target = FileTarget {
            combined: false,
            reload: Some(ReloadCommand {
                command: format!(
                    "test -s {d}/fullchain.pem && test -s \"$CERTKEEPER_KEY\" && echo ok > {d}/reloaded"
                ),
                timeout: Duration::from_secs(5),
                retries: 0,
            }),
            dir: dir.clone(),
        };
        // Through the trait, as the agent holds its targets.
        let deployer: &dyn Deployer = &target;
        assert_eq!(deployer.describe(), format!("files:{d}"));
        let report = deployer.deploy(&chain, &key).await.expect("deploy");
        assert_eq!(read(&dir.join("reloaded")), "ok\n");
        let outcome = report.reload.expect("reload ran");
        assert!(outcome.succeeded && outcome.failure.is_none());
        assert_eq!(outcome.attempts, 1);
        assert_eq!(report.written.len(), 4, "no combined.pem");
        assert!(!dir.join(COMBINED_FILE).exists());
    }

    #[tokio::test]
    async fn failing_reload_is_retried_reported_and_keeps_the_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (chain, key) = material("broken.example.test");
        let target = FileTarget {
            combined: true,
            reload: Some(ReloadCommand {
                command: format!(
                    "echo attempt >> {}/attempts; echo 'nginx: [emerg] broken config' >&2; exit 3",
                    dir.display()
                ),
                timeout: Duration::from_secs(5),
                retries: 2,
            }),
            ..FileTarget::new(dir)
        };
        let err = target.deploy(&chain, &key).await.expect_err("reload fails");
        let DeployError::Reload { report, outcome } = &err else {
            panic!("expected a reload error, got {err}");
        };
        assert_eq!(outcome.attempts, 3);
        assert!(!outcome.succeeded);
        assert_eq!(read(&dir.join("attempts")).lines().count(), 3);
        assert!(
            outcome
                .failure
                .as_deref()
                .unwrap_or("")
                .contains("exit status: 3"),
            "{outcome:?}"
        );
        assert!(outcome.stderr_tail.contains("broken config"), "{outcome:?}");
        // 200 ms + 400 ms between the three attempts.
        assert!(outcome.elapsed >= Duration::from_millis(600), "{outcome:?}");
        assert_eq!(report.written.len(), 5);
        assert!(err.files_changed() && err.is_retryable());
        let message = err.to_string();
        assert!(message.contains("failed after 3 attempt(s)"), "{message}");
        assert!(message.contains("broken config"), "{message}");
        assert!(message.contains("files were kept"), "{message}");

        // Nothing was rolled back.
        assert!(target.is_current(&chain, &key).await.expect("check"));
        assert_eq!(certs_in(&read(&dir.join(FULLCHAIN_FILE))), certs_in(&chain));
    }

    #[tokio::test]
    async fn hanging_reload_is_killed_with_its_children() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let (chain, key) = material("hang.example.test");
        let pid_file = dir.join("sleep.pid");
        let target = FileTarget {
            combined: false,
            reload: Some(ReloadCommand {
                // `sleep` as a child of `sh`, so killing only `sh` would leak it.
                command: format!("sleep 10 & echo $! > {}; wait", pid_file.display()),
                timeout: Duration::from_millis(200),
                retries: 0,
            }),
            dir: dir.to_path_buf(),
        };
        let started = Instant::now();
        let err = target.deploy(&chain, &key).await.expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(3), "{err}");
        let DeployError::Reload { outcome, .. } = &err else {
            panic!("expected a reload error, got {err}");
        };
        assert_eq!(outcome.attempts, 1);
        assert!(
            outcome
                .failure
                .as_deref()
                .unwrap_or("")
                .contains("timed out after 200ms"),
            "{outcome:?}"
        );
        assert!(dir.join(FULLCHAIN_FILE).exists());

        // The orphaned `sleep` was killed too (gone, or a zombie until reaped).
        let pid = read(&pid_file).trim().to_owned();
        let stat = PathBuf::from(format!("/proc/{pid}/stat"));
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let alive = std::fs::read_to_string(&stat)
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(Instant::now() < deadline, "sleep {pid} still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
