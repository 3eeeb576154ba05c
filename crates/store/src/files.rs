//! Crash-safe file writes for key material and deployed files.
//!
//! A reader sees either the old file or the new one, never a torn write:
//! write a temp file in the same directory (created with the final mode, so a
//! private key is never world-readable, not even briefly), fsync it, rename it
//! over the target, then fsync the directory so the rename itself is durable.
//!
//! The temp file gets a random name and is opened with `O_CREAT | O_EXCL |
//! O_NOFOLLOW`: in a directory others can write to (a shared webroot, a
//! deploy target), a predictable name lets them plant a symlink there and
//! have us truncate and overwrite whatever it points at, with our
//! privileges. With `O_EXCL` the open fails on any existing entry, link or
//! not, and we pick another name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode for private keys.
pub const PRIVATE: u32 = 0o600;
/// Mode for public material (certificates).
pub const PUBLIC: u32 = 0o644;

/// How many random names to try before giving up: a collision of 64 random
/// bits is only ever someone squatting on names, and that deserves an error.
const TEMP_ATTEMPTS: usize = 8;

/// Atomically replaces `path` with `data`, created with `mode`.
///
/// `path` itself may be a symlink: the rename replaces the link, never the
/// file it points to.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tmp, mut f) = create_temp(dir, &name, mode)?;
    let result = (|| {
        // `mode` is filtered by the umask at creation; set it exactly.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new, empty temp file beside the target under a random name,
/// never following or reusing an existing entry.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nofollow)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "no free temp name for {name} in {} after {TEMP_ATTEMPTS} random tries ({}); \
             something is creating files there: check who can write to that directory",
            dir.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"old", PRIVATE).expect("write");
        write_atomic(&p, b"new", PRIVATE).expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"new");
        assert_eq!(
            fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    /// A symlink planted where the old code put its temp file
    /// (`.NAME.tmp.PID`, predictable by anyone who can list the directory)
    /// must not redirect the write: the victim keeps its content and the
    /// target becomes a regular file with the data.
    #[test]
    fn planted_symlink_at_the_temp_path_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").expect("victim");
        let target = dir.path().join("key.pem");
        let planted = dir
            .path()
            .join(format!(".key.pem.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("symlink");

        write_atomic(&target, b"secret", PRIVATE).expect("write");

        assert_eq!(fs::read(&victim).expect("read victim"), b"precious");
        let meta = fs::symlink_metadata(&target).expect("target");
        assert!(meta.file_type().is_file(), "target is a regular file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read(&target).expect("read target"), b"secret");
        // The planted link is left alone (not ours to remove), and nothing else remains.
        assert!(
            fs::symlink_metadata(&planted)
                .expect("link")
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 3);
    }
}
