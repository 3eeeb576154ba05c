//! Certificates and CSRs as TLSA records, in the layout
//! dns-letsencrypt-secondary uses (OCaml's and MirageOS's domains): at
//! `_letsencrypt._tcp.HOST`,
//!
//! - the CSR as `3 255 0 <DER>` (usage DANE-EE, selector 255 "private use",
//!   matching 0 "full"),
//! - the leaf certificate as `3 0 0 <DER>` (DANE-EE, full certificate),
//! - each intermediate as `0 0 0 <DER>` (PKIX-TA, full certificate).
//!
//! Certificates and CSRs are public data; the private key never leaves the
//! service. Records are sent over TCP when large (a certificate is ~1 kB).

use hickory_proto::rr::rdata::TLSA;
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::{DnsError, Server, Update, UpdateClient, fqdn, query};

/// The owner-name prefix.
pub const PREFIX: &str = "_letsencrypt._tcp";

/// `_letsencrypt._tcp.HOST.`
pub fn tlsa_name(host: &str) -> Result<Name, DnsError> {
    fqdn(&format!("{PREFIX}.{}", host.trim_end_matches('.')))
}

/// What a TLSA record in this layout carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsaRole {
    /// `3 255 0`: a certificate signing request.
    Csr,
    /// `3 0 0`: the leaf certificate.
    Leaf,
    /// `0 0 0`: an intermediate CA certificate.
    Intermediate,
}

impl TlsaRole {
    /// (usage, selector, matching).
    fn params(self) -> (u8, u8, u8) {
        match self {
            TlsaRole::Csr => (3, 255, 0),
            TlsaRole::Leaf => (3, 0, 0),
            TlsaRole::Intermediate => (0, 0, 0),
        }
    }

    /// The role of a TLSA record, or `None` for records of other layouts
    /// (which are left alone).
    pub fn of(t: &TLSA) -> Option<TlsaRole> {
        let p = (
            u8::from(t.cert_usage),
            u8::from(t.selector),
            u8::from(t.matching),
        );
        [TlsaRole::Csr, TlsaRole::Leaf, TlsaRole::Intermediate]
            .into_iter()
            .find(|r| r.params() == p)
    }

    /// The record data carrying `der`.
    pub fn rdata(self, der: &[u8]) -> RData {
        let (u, s, m) = self.params();
        RData::TLSA(TLSA::new(
            CertUsage::from(u),
            Selector::from(s),
            Matching::from(m),
            der.to_vec(),
        ))
    }
}

/// The records at one `_letsencrypt._tcp` name, by role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsaSet {
    /// CSRs (normally one).
    pub csrs: Vec<Vec<u8>>,
    /// Leaf certificates (normally one).
    pub leaves: Vec<Vec<u8>>,
    /// Intermediates, in the order served (order in DNS is not meaningful).
    pub intermediates: Vec<Vec<u8>>,
}

impl TlsaSet {
    fn push(&mut self, role: TlsaRole, der: Vec<u8>) {
        match role {
            TlsaRole::Csr => self.csrs.push(der),
            TlsaRole::Leaf => self.leaves.push(der),
            TlsaRole::Intermediate => self.intermediates.push(der),
        }
    }
}

/// Reads the TLSA set at `_letsencrypt._tcp.HOST` from `server`.
pub async fn fetch(server: &Server, host: &str) -> Result<TlsaSet, DnsError> {
    let name = tlsa_name(host)?;
    let answer = query(server, &name, RecordType::TLSA).await?;
    let mut set = TlsaSet::default();
    for r in &answer.answers {
        if r.name != name {
            continue;
        }
        if let RData::TLSA(t) = &r.data
            && let Some(role) = TlsaRole::of(t)
        {
            set.push(role, t.cert_data.clone());
        }
    }
    Ok(set)
}

/// Publishes a leaf and its intermediates at `_letsencrypt._tcp.HOST` in
/// **one** UPDATE: the previous certificate records are deleted one by one
/// (RFC 2136 §2.5.4) and the new ones added in the same message, which the
/// server applies atomically (§3.4), so no query ever sees no certificate.
/// The CSR record and records of other layouts are left alone. Returns
/// whether anything changed.
pub async fn publish_certificate(
    client: &UpdateClient,
    zone: &Name,
    host: &str,
    ttl: u32,
    leaf: &[u8],
    intermediates: &[Vec<u8>],
) -> Result<bool, DnsError> {
    let name = tlsa_name(host)?;
    let current = fetch(client.server(), host).await?;
    let mut update = Update::new(zone.clone());
    let wanted_leaf = [leaf.to_vec()];
    replace(
        &mut update,
        &name,
        ttl,
        TlsaRole::Leaf,
        &current.leaves,
        &wanted_leaf,
    );
    replace(
        &mut update,
        &name,
        ttl,
        TlsaRole::Intermediate,
        &current.intermediates,
        intermediates,
    );
    if update.is_empty() {
        return Ok(false);
    }
    client.send(&update).await?;
    Ok(true)
}

/// Publishes a CSR at `_letsencrypt._tcp.HOST`, replacing any earlier CSR
/// in the same UPDATE and leaving the certificate records alone.
pub async fn publish_csr(
    client: &UpdateClient,
    zone: &Name,
    host: &str,
    ttl: u32,
    csr: &[u8],
) -> Result<bool, DnsError> {
    let name = tlsa_name(host)?;
    let current = fetch(client.server(), host).await?;
    let mut update = Update::new(zone.clone());
    replace(
        &mut update,
        &name,
        ttl,
        TlsaRole::Csr,
        &current.csrs,
        &[csr.to_vec()],
    );
    if update.is_empty() {
        return Ok(false);
    }
    client.send(&update).await?;
    Ok(true)
}

/// Adds to `update` what turns `current` into `wanted` for one role.
fn replace(
    update: &mut Update,
    name: &Name,
    ttl: u32,
    role: TlsaRole,
    current: &[Vec<u8>],
    wanted: &[Vec<u8>],
) {
    for old in current.iter().filter(|c| !wanted.contains(c)) {
        update.delete_rr(name.clone(), role.rdata(old));
    }
    for new in wanted.iter().filter(|w| !current.contains(w)) {
        update.add(name.clone(), ttl, role.rdata(new));
    }
}
