//! Our own TLS material for peers that serve HTTPS (pebble), and a tiny
//! blocking HTTPS client to probe them without an async runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, ServerName};

/// A throw-away CA plus a `localhost`/127.0.0.1 server certificate it
/// signed, written as PEM files, for peers that need an HTTPS listener.
///
/// Python and OpenSSL clients refuse a self-signed leaf used as its own
/// trust anchor, hence a separate CA certificate.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    ca_pem_path: PathBuf,
    cert_pem_path: PathBuf,
    key_pem_path: PathBuf,
}

impl TestCa {
    /// Generates the CA and a leaf for `localhost` + 127.0.0.1 and writes
    /// `ca.pem`, `localhost.pem` and `localhost.key` into `dir`.
    pub fn new(dir: &Path) -> anyhow::Result<TestCa> {
        let ca_key = KeyPair::generate().context("TestCa: generating the CA key")?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("certkeeper harness test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
        ca_params.not_after = rcgen::date_time_ymd(2099, 1, 1);
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("TestCa: self-signing the CA")?;
        let issuer = Issuer::new(ca_params, ca_key);

        let ca_pem_path = dir.join("ca.pem");
        write(&ca_pem_path, &ca_cert.pem())?;
        let (cert_pem, key_pem) = issue_leaf(&issuer, &["localhost", "127.0.0.1"])?;
        let cert_pem_path = dir.join("localhost.pem");
        let key_pem_path = dir.join("localhost.key");
        write(&cert_pem_path, &cert_pem)?;
        write(&key_pem_path, &key_pem)?;
        Ok(TestCa {
            issuer,
            ca_der: ca_cert.der().clone(),
            ca_pem_path,
            cert_pem_path,
            key_pem_path,
        })
    }

    /// PEM of the CA certificate: the trust anchor clients need.
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_pem_path
    }

    /// DER of the CA certificate, for Rust clients' root stores.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// PEM of the `localhost`/127.0.0.1 server certificate.
    pub fn cert_pem_path(&self) -> &Path {
        &self.cert_pem_path
    }

    /// PEM (PKCS#8) of the server certificate's private key.
    pub fn key_pem_path(&self) -> &Path {
        &self.key_pem_path
    }

    /// Issues another server certificate for `names` (DNS names or IP
    /// addresses); returns `(cert_pem, key_pem)`.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<(String, String)> {
        issue_leaf(&self.issuer, names)
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn issue_leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("TestCa: generating a leaf key")?;
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .with_context(|| format!("TestCa: bad names {names:?}"))?;
    params.distinguished_name = dn(names.first().copied().unwrap_or("certkeeper test leaf"));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params
        .signed_by(&key, issuer)
        .context("TestCa: signing a leaf")?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// `GET https://host:port/path` over a fresh connection that trusts only
/// `ca`; returns the status code and body. Blocking, for probes.
pub(crate) fn https_get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    ca: &CertificateDer<'static>,
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .context("adding the test CA to a root store")?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // HTTP/1.0 so the (Go) server neither chunks nor keeps the connection open.
    write!(
        tls,
        "GET {path} HTTP/1.0\r\nHost: {host}:{}\r\nAccept: */*\r\n\r\n",
        addr.port()
    )
    .with_context(|| {
        format!(
            "TLS handshake/write to https://{host}:{}{path}",
            addr.port()
        )
    })?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // A server that closes without close_notify still sent a complete HTTP/1.0 response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => {
            return Err(e).with_context(|| format!("reading https://{host}:{}{path}", addr.port()));
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header end in response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| anyhow!("bad HTTP status line: {:?}", head.lines().next()))?;
    if !head.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: {:?}", head.lines().next());
    }
    Ok((status, raw[split + 4..].to_vec()))
}
