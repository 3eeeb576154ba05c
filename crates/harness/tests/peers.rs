//! Proves the harness drives the real peers: BIND takes TSIG-signed
//! updates, pebble validates through BIND, and lego and certbot obtain (and
//! revoke) certificates with the flags the harness uses. When these pass,
//! pointing the same helpers at certkeeper's CA changes only the directory URL.

use certkeeper_harness::{Bind, Certbot, Lego, LegoChallenge, Pebble, openssl_verify};

#[test]
fn bind_accepts_tsig_update_and_dig_sees_it() -> anyhow::Result<()> {
    let bind = Bind::start()?;
    assert_eq!(
        bind.dig("anything.example.test", "A")?,
        vec!["127.0.0.1".to_string()],
        "wildcard A"
    );
    bind.nsupdate("update add _acme-challenge.t.example.test. 60 TXT \"harness-token\"")?;
    assert_eq!(
        bind.dig("_acme-challenge.t.example.test", "TXT")?,
        vec!["\"harness-token\"".to_string()]
    );
    bind.nsupdate("update delete _acme-challenge.t.example.test. TXT")?;
    assert!(
        bind.dig("_acme-challenge.t.example.test", "TXT")?
            .is_empty()
    );
    Ok(())
}

#[test]
fn bind_rejects_update_with_wrong_key() -> anyhow::Result<()> {
    let bind = Bind::start()?;
    let wrong = Bind::start()?; // same key name, different secret
    let script = "update add nope.example.test. 60 TXT \"x\"";
    let err = std::process::Command::new(certkeeper_harness::require_peer("nsupdate"))
        .args(["-t", "5", "-y"])
        .arg(format!(
            "hmac-sha256:{}:{}",
            wrong.tsig_key_name(),
            wrong.tsig_secret_b64()
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            let mut stdin = c.stdin.take().unwrap();
            writeln!(
                stdin,
                "server 127.0.0.1 {}\nzone example.test.\n{script}\nsend",
                bind.port()
            )?;
            drop(stdin);
            c.wait_with_output()
        })?;
    assert!(
        !err.status.success(),
        "an update signed with the wrong secret must fail"
    );
    assert!(bind.dig("nope.example.test", "TXT")?.is_empty());
    Ok(())
}

/// BIND with pebble validating through it, and pebble's issuing root on disk.
fn bind_and_pebble() -> anyhow::Result<(Bind, Pebble, std::path::PathBuf)> {
    let bind = Bind::start()?;
    let pebble = Pebble::start(Some(&bind), &[])?;
    let root = pebble.issuing_root_pem_path()?;
    Ok((bind, pebble, root))
}

#[test]
fn lego_obtains_from_pebble_via_http01() -> anyhow::Result<()> {
    let (_bind, pebble, root) = bind_and_pebble()?;
    let lego = Lego::new(&pebble.directory_url(), pebble.tls_ca_pem_path())?;
    let cert = lego.run(
        &["a.example.test"],
        &LegoChallenge::Http01 {
            port: pebble.http01_port(),
        },
    )?;
    openssl_verify(&root, &cert.cert)?;
    Ok(())
}

#[test]
fn lego_obtains_from_pebble_via_tlsalpn01() -> anyhow::Result<()> {
    let (_bind, pebble, root) = bind_and_pebble()?;
    let lego = Lego::new(&pebble.directory_url(), pebble.tls_ca_pem_path())?;
    let cert = lego.run(
        &["b.example.test"],
        &LegoChallenge::TlsAlpn01 {
            port: pebble.tlsalpn01_port(),
        },
    )?;
    openssl_verify(&root, &cert.cert)?;
    Ok(())
}

#[test]
fn lego_obtains_wildcard_from_pebble_via_dns01_rfc2136_and_revokes() -> anyhow::Result<()> {
    let (bind, pebble, root) = bind_and_pebble()?;
    let lego = Lego::new(&pebble.directory_url(), pebble.tls_ca_pem_path())?;
    let cert = lego.run(
        &["a.example.test", "*.a.example.test"],
        &LegoChallenge::Dns01Rfc2136 { bind: &bind },
    )?;
    openssl_verify(&root, &cert.cert)?;
    // lego removed its TXT records through RFC 2136 as well.
    assert!(
        bind.dig("_acme-challenge.a.example.test", "TXT")?
            .is_empty()
    );

    lego.revoke(&["a.example.test"], 1)?;
    let status = pebble.cert_status(&cert.cert)?;
    assert!(status.contains(r#""Status": "Revoked""#), "{status}");
    Ok(())
}

#[test]
fn certbot_obtains_from_pebble_and_revokes_with_the_certificate_key() -> anyhow::Result<()> {
    let (_bind, pebble, root) = bind_and_pebble()?;
    let certbot = Certbot::new(&pebble.directory_url(), pebble.tls_ca_pem_path())?;
    let cert = certbot.certonly_standalone(&["c.example.test"], pebble.http01_port(), &[])?;
    openssl_verify(&root, &cert.fullchain)?;
    assert!(
        pebble
            .cert_status(&cert.cert)?
            .contains(r#""Status": "Valid""#)
    );

    certbot.revoke(&cert.cert, Some(&cert.privkey), "keycompromise")?;
    let status = pebble.cert_status(&cert.cert)?;
    assert!(
        status.contains(r#""Status": "Revoked""#) && status.contains(r#""Reason": 1"#),
        "{status}"
    );
    Ok(())
}

#[test]
fn a_failing_client_reports_its_command_and_output() -> anyhow::Result<()> {
    let (_bind, pebble, _root) = bind_and_pebble()?;
    let lego = Lego::new(&pebble.directory_url(), pebble.tls_ca_pem_path())?;
    // Serve http-01 on a port pebble does not connect to: validation fails.
    let wrong_port = certkeeper_harness::free_port();
    let err = match lego.run(
        &["d.example.test"],
        &LegoChallenge::Http01 { port: wrong_port },
    ) {
        Ok(_) => panic!("lego must fail when pebble cannot reach its http-01 server"),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("{err}");
    assert!(
        err.contains("lego run") && err.contains("--http.port") && err.contains("stderr"),
        "{err}"
    );
    Ok(())
}
