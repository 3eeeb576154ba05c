//! dns-01 by RFC 2136 UPDATE signed with TSIG, against a real BIND 9 (and a
//! BIND secondary fed by NOTIFY/AXFR), with certificates from our CA and
//! from pebble, both validating through BIND. `dig` cross-checks the zone:
//! the solver adds and removes exactly its own records.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use certkeeper_harness::{Bind, CaOptions, CertkeeperCa, Pebble, openssl_verify};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_certkeeper"))
}

struct Setup {
    dir: tempfile::TempDir,
}

/// How the `[certificate.dns]` block differs from the harness BIND's defaults.
#[derive(Default)]
struct Dns<'a> {
    key_name: Option<&'a str>,
    secret_b64: Option<&'a str>,
    zone: Option<&'a str>,
    /// `nameservers` overrides, as TOML table entries.
    nameservers: Option<String>,
    propagation_timeout_seconds: Option<u64>,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes certkeeper.toml: one dns-01 certificate `web` for `names`.
    fn config(&self, directory: &str, root: &Path, bind: &Bind, names: &[&str], dns: Dns<'_>) {
        let secret = self.path("tsig.secret");
        std::fs::write(&secret, dns.secret_b64.unwrap_or(bind.tsig_secret_b64())).expect("secret");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut block = format!(
            "server = \"{}\"\ntsig_key = \"{}\"\ntsig_secret_file = \"{}\"\nnameserver_port = {}\n",
            bind.addr(),
            dns.key_name.unwrap_or(bind.tsig_key_name()),
            secret.display(),
            bind.port(),
        );
        if let Some(z) = dns.zone {
            block.push_str(&format!("zone = \"{z}\"\n"));
        }
        if let Some(t) = dns.propagation_timeout_seconds {
            block.push_str(&format!("propagation_timeout_seconds = {t}\n"));
        }
        if let Some(ns) = dns.nameservers {
            block.push_str(&format!("nameservers = {{ {ns} }}\n"));
        }
        let names = names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let text = format!(
            r#"data = "{data}"
[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"

[[certificate]]
name = "web"
names = [{names}]
issuer = "ca"
challenge = "dns-01"

[certificate.dns]
{block}
[[certificate.deploy]]
dir = "{deploy}"
"#,
            data = self.path("data").display(),
            root = root.display(),
            deploy = self.path("deploy").display(),
        );
        std::fs::write(self.path("certkeeper.toml"), text).expect("write config");
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .arg("--config")
            .arg(self.path("certkeeper.toml"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run certkeeper")
    }

    fn issue(&self) -> (bool, String) {
        let out = self.run(&["issue", "web"], &[]);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

fn ca_with(bind: &Bind) -> CertkeeperCa {
    CertkeeperCa::start(
        bin(),
        CaOptions {
            dns_resolver: Some(bind.addr()),
            ..Default::default()
        },
    )
    .expect("CA")
}

fn issued_by(ca: &CertkeeperCa) -> usize {
    ca.list()
        .expect("ca list")
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

const NEIGHBOUR: &str = "\"another-client-owns-this\"";

/// Apex + wildcard: two TXT values at one name, beside a record someone
/// else put there. From our CA (zone found by SOA) and from pebble (zone
/// configured). The neighbour survives and is all that is left.
#[test]
fn apex_and_wildcard_from_our_ca_and_pebble_leave_only_the_neighbour() {
    let bind = Bind::start().expect("BIND");
    let ca = ca_with(&bind);
    let pebble = Pebble::start(Some(&bind), &[("PEBBLE_WFE_NONCEREJECT", "0")]).expect("pebble");
    let pebble_root = pebble.issuing_root_pem_path().expect("pebble root");
    // (name, directory, TLS root, zone, issuing root)
    type Case<'a> = (&'a str, String, PathBuf, Option<&'a str>, PathBuf);
    let cases: [Case<'_>; 2] = [
        (
            "ours.example.test",
            ca.directory_url(),
            ca.root_pem_path(),
            None,
            ca.root_pem_path(),
        ),
        (
            "pebble.example.test",
            pebble.directory_url(),
            pebble.tls_ca_pem_path().to_owned(),
            Some("example.test"),
            pebble_root,
        ),
    ];
    for (name, directory, tls_root, zone, issuing_root) in cases {
        let challenge = format!("_acme-challenge.{name}.");
        bind.nsupdate(&format!("update add {challenge} 300 TXT {NEIGHBOUR}"))
            .expect("neighbour");
        let s = Setup::new();
        let wildcard = format!("*.{name}");
        s.config(
            &directory,
            &tls_root,
            &bind,
            &[name, &wildcard],
            Dns {
                zone,
                ..Dns::default()
            },
        );
        let (ok, out) = s.issue();
        assert!(ok && out.contains("obtained serial"), "{name}: {out}");
        assert_eq!(
            bind.dig(&challenge, "TXT").expect("dig"),
            vec![NEIGHBOUR],
            "{name}: only the neighbour is left"
        );
        openssl_verify(&issuing_root, &s.path("deploy/fullchain.pem")).expect("chain verifies");
    }
    assert_eq!(issued_by(&ca), 1);
}

/// Two authoritative servers: the order waits until the secondary (fed by
/// NOTIFY + IXFR/AXFR) serves the values too; with the secondary stopped,
/// the error names it, nothing is issued and nothing is left.
#[test]
fn waits_for_every_authoritative_server_and_names_the_one_down() {
    let primary = Bind::start_with_secondary().expect("primary");
    let secondary = Bind::start_secondary(&primary).expect("secondary");
    let ca = ca_with(&primary);
    let ns2 = format!("\"ns2.example.test.\" = \"{}\"", secondary.addr());
    let s = Setup::new();
    s.config(
        &ca.directory_url(),
        &ca.root_pem_path(),
        &primary,
        &["two.example.test"],
        Dns {
            nameservers: Some(ns2.clone()),
            ..Dns::default()
        },
    );
    let (ok, out) = s.issue();
    assert!(ok, "{out}");
    // The deletion reaches the secondary by NOTIFY + IXFR, a moment later.
    let mut left = Vec::new();
    for _ in 0..50 {
        left = secondary
            .dig("_acme-challenge.two.example.test", "TXT")
            .expect("dig");
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(left.is_empty(), "the secondary still serves {left:?}");
    let secondary_addr = secondary.addr();
    drop(secondary);

    let s = Setup::new();
    s.config(
        &ca.directory_url(),
        &ca.root_pem_path(),
        &primary,
        &["down.example.test"],
        Dns {
            nameservers: Some(ns2),
            propagation_timeout_seconds: Some(3),
            ..Dns::default()
        },
    );
    let (ok, out) = s.issue();
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("ns2.example.test. ({secondary_addr})")),
        "the error names the lagging server: {out}"
    );
    assert_eq!(issued_by(&ca), 1, "nothing more issued");
    assert!(
        primary
            .dig("_acme-challenge.down.example.test", "TXT")
            .expect("dig")
            .is_empty(),
        "cleaned up after the failure"
    );
}

/// A wrong secret, a wrong key name, a zone without allow-update, a secret
/// file others can read: each a clear error; nothing issued, nothing added.
#[test]
fn bad_credentials_and_a_locked_zone_are_clear_errors() {
    let bind = Bind::start().expect("BIND");
    let ca = ca_with(&bind);
    let cases: [(&str, Dns<'_>, &str); 3] = [
        (
            "badsig.example.test",
            Dns {
                secret_b64: Some("bm90IHRoZSBzZWNyZXQgYmluZCBoYXMgZm9yIHRoaXM="),
                ..Dns::default()
            },
            "(BADSIG): the secret does not match",
        ),
        (
            "badkey.example.test",
            Dns {
                key_name: Some("not-a-key-bind-knows."),
                ..Dns::default()
            },
            "does not know TSIG key not-a-key-bind-knows.",
        ),
        (
            "x.locked.test",
            Dns::default(),
            "does not allow updates to locked.test. with key certkeeper-test.",
        ),
    ];
    for (name, dns, expected) in cases {
        let s = Setup::new();
        s.config(
            &ca.directory_url(),
            &ca.root_pem_path(),
            &bind,
            &[name],
            dns,
        );
        let (ok, out) = s.issue();
        assert!(!ok, "{name}: {out}");
        assert!(
            out.contains(expected),
            "{name}: want {expected:?} in:\n{out}"
        );
        assert!(
            bind.dig(&format!("_acme-challenge.{name}"), "TXT")
                .expect("dig")
                .is_empty(),
            "{name}: nothing left in the zone"
        );
    }
    assert_eq!(issued_by(&ca), 0);

    let s = Setup::new();
    s.config(
        &ca.directory_url(),
        &ca.root_pem_path(),
        &bind,
        &["open.example.test"],
        Dns::default(),
    );
    std::fs::set_permissions(
        s.path("tsig.secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let out = Command::new(bin())
        .arg("check-config")
        .arg(s.path("certkeeper.toml"))
        .output()
        .expect("check-config");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("chmod 600"), "{text}");
}

/// `_acme-challenge.cn.example.test CNAME cn.delegated.test.`: the record
/// goes into the delegated zone, which the CA reaches through the CNAME.
#[test]
fn a_cname_delegates_the_challenge_to_another_zone() {
    let bind = Bind::start().expect("BIND");
    bind.nsupdate("update add _acme-challenge.cn.example.test. 60 CNAME cn.delegated.test.")
        .expect("cname");
    let ca = ca_with(&bind);
    let s = Setup::new();
    s.config(
        &ca.directory_url(),
        &ca.root_pem_path(),
        &bind,
        &["cn.example.test"],
        Dns::default(),
    );
    let (ok, out) = s.issue();
    assert!(ok, "{out}");
    assert!(out.contains("obtained serial"), "{out}");
    assert!(
        bind.dig("cn.delegated.test", "TXT")
            .expect("dig")
            .is_empty()
    );
    assert_eq!(
        bind.dig("_acme-challenge.cn.example.test", "CNAME")
            .expect("dig"),
        vec!["cn.delegated.test."],
        "the CNAME itself is untouched"
    );
}

/// Killed right after presenting (records in the zone, order pending): the
/// next start removes exactly those records and finishes the same order.
#[test]
fn records_left_by_a_crash_are_removed_at_the_next_start() {
    let bind = Bind::start().expect("BIND");
    let ca = ca_with(&bind);
    bind.nsupdate(&format!(
        "update add _acme-challenge.crash.example.test. 300 TXT {NEIGHBOUR}"
    ))
    .expect("neighbour");
    let s = Setup::new();
    s.config(
        &ca.directory_url(),
        &ca.root_pem_path(),
        &bind,
        &["crash.example.test", "*.crash.example.test"],
        Dns::default(),
    );
    let crashed = s.run(
        &["issue", "web"],
        &[("CERTKEEPER_CRASH_AT", "dns-presented")],
    );
    assert!(!crashed.status.success());
    assert_eq!(
        bind.dig("_acme-challenge.crash.example.test", "TXT")
            .expect("dig")
            .len(),
        3,
        "the crash left our two values beside the neighbour"
    );
    let (ok, out) = s.issue();
    assert!(ok, "{out}");
    assert_eq!(
        bind.dig("_acme-challenge.crash.example.test", "TXT")
            .expect("dig"),
        vec![NEIGHBOUR]
    );
    assert_eq!(issued_by(&ca), 1, "the same order, finished once");
}

/// One certificate, names in two zones, through shared `[[dns_server]]`
/// blocks: the one the certificate names (zone found by SOA) and one that
/// declares `zone = "delegated.test"` and so takes that zone's records.
#[test]
fn names_in_two_zones_through_shared_dns_servers() {
    let bind = Bind::start().expect("BIND");
    let ca = ca_with(&bind);
    let s = Setup::new();
    let secret = s.path("tsig.secret");
    std::fs::write(&secret, bind.tsig_secret_b64()).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let server_block = |name: &str, zone: &str| {
        format!(
            "[[dns_server]]\nname = \"{name}\"\nserver = \"{}\"\n{zone}tsig_key = \"{}\"\ntsig_secret_file = \"{}\"\nnameserver_port = {}\n",
            bind.addr(),
            bind.tsig_key_name(),
            secret.display(),
            bind.port()
        )
    };
    let text = format!(
        r#"data = "{data}"
{primary}
{delegated}
[[issuer]]
name = "ca"
directory = "{directory}"
root = "{root}"

[[certificate]]
name = "web"
names = ["multi.example.test", "multi.delegated.test"]
issuer = "ca"
challenge = "dns-01"
dns_server = "primary"
"#,
        data = s.path("data").display(),
        primary = server_block("primary", ""),
        delegated = server_block("delegated", "zone = \"delegated.test\"\n"),
        directory = ca.directory_url(),
        root = ca.root_pem_path().display(),
    );
    std::fs::write(s.path("certkeeper.toml"), text).expect("config");
    let (ok, out) = s.issue();
    assert!(ok && out.contains("obtained serial"), "{out}");
    for name in ["multi.example.test", "multi.delegated.test"] {
        assert!(
            bind.dig(&format!("_acme-challenge.{name}"), "TXT")
                .expect("dig")
                .is_empty(),
            "{name}: cleaned up"
        );
    }
    assert_eq!(issued_by(&ca), 1);
}
