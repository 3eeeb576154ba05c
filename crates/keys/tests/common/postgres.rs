//! A throwaway PostgreSQL server: `initdb` in a temp dir, listening on a
//! free loopback port, stopped (immediate) when dropped. As root, the
//! server runs as the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// `postgres://…` URL of its `postgres` database.
    pub url: String,
}

fn find_bin() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Ok(real) = std::fs::canonicalize(&p) {
            return real.parent().unwrap().to_path_buf();
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().filter(|b| b.join("initdb").exists()).expect(
        "PostgreSQL is missing (initdb): run ./scripts/test, which installs the postgresql package",
    )
}

fn as_owner(bin: &Path, tool: &str, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Starts one.
    pub fn start() -> Postgres {
        use std::os::unix::fs::PermissionsExt;
        let bin = find_bin();
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        let data = dir.path().join("pgdata");
        std::fs::create_dir(&data).unwrap();
        if root {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["postgres:", data.to_str().unwrap()]);
                    c
                },
                "chown",
            );
        }
        let mut init = as_owner(&bin, "initdb", root);
        init.args(["-A", "trust", "-U", "certkeeper", "-E", "UTF8", "-D"])
            .arg(&data);
        run(init, "initdb");
        let port = certkeeper_harness::free_port();
        let mut start = as_owner(&bin, "pg_ctl", root);
        start
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(data.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                data.display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
        Postgres {
            dir,
            bin,
            url: format!("postgres://certkeeper@127.0.0.1:{port}/postgres"),
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_owner(&self.bin, "pg_ctl", is_root());
        stop.args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("pgdata"))
            .arg("stop");
        let _ = stop.output();
    }
}
