//! `certkeeper audit …`: check the audit logs' hash chains.

use std::path::PathBuf;

use certkeeper_store::audit::{AUDIT_FILE, verify};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit logs in a data directory (the
    /// agent's, and the built-in CA's under `builtin-ca/`); names the first
    /// broken line. Prints each log's head hash: keep a copy elsewhere to
    /// detect an edit of the last record too.
    Verify {
        /// Data directory (of `certkeeper up`, or of `ca serve --data`).
        #[arg(long, default_value = "certkeeper-data")]
        data: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { data, json } = command;
    let logs: Vec<PathBuf> = [
        data.join(AUDIT_FILE),
        data.join("builtin-ca").join(AUDIT_FILE),
    ]
    .into_iter()
    .filter(|p| p.exists())
    .collect();
    if logs.is_empty() {
        anyhow::bail!(
            "no audit log in {} (expected {AUDIT_FILE} there or under builtin-ca/): pass the data directory with --data",
            data.display()
        );
    }
    let mut report = Vec::new();
    let mut broken = None;
    for path in &logs {
        match verify(path) {
            Ok(summary) => {
                if !json {
                    println!(
                        "{}: {} records, chain intact, head {}",
                        path.display(),
                        summary.records,
                        summary.head
                    );
                }
                report.push(serde_json::json!({
                    "path": path, "ok": true, "records": summary.records, "head": summary.head,
                }));
            }
            Err(e) => {
                if !json {
                    println!("{e}");
                }
                report.push(serde_json::json!({"path": path, "ok": false, "error": e.to_string()}));
                broken.get_or_insert(e);
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    match broken {
        Some(e) => Err(anyhow::anyhow!("audit log broken: {e}")),
        None => Ok(()),
    }
}
