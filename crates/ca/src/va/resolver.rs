//! The DNS resolver every CA lookup goes through (dns-01 TXT, A/AAAA for
//! http-01 and tls-alpn-01). Uncached: a client that just published a record
//! must not be judged by an answer cached a second earlier.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use certkeeper_proto::problem::ProblemType;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::CaError;

/// A resolver bound to one name server.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
    server: SocketAddr,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DnsResolver({})", self.server)
    }
}

impl DnsResolver {
    /// A resolver that asks `server` (UDP, falling back to TCP) and reads
    /// `/etc/hosts` first, so `localhost` resolves as on the host.
    pub fn new(server: SocketAddr) -> Result<DnsResolver, CaError> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Always;
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| CaError::Internal(format!("DNS resolver for {server}: {e}")))?;
        Ok(DnsResolver { inner, server })
    }

    /// A resolver using the first `nameserver` of `/etc/resolv.conf`
    /// (127.0.0.1:53 when there is none).
    pub fn system() -> Result<DnsResolver, CaError> {
        let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let ip = conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .find_map(|rest| rest.trim().parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        DnsResolver::new(SocketAddr::new(ip, 53))
    }

    /// A and AAAA records of a name.
    pub async fn lookup_ip(&self, name: &str) -> Result<Vec<IpAddr>, CaError> {
        let fqdn = fqdn(name);
        match self.inner.lookup_ip(fqdn.as_str()).await {
            Ok(ips) => {
                let v: Vec<IpAddr> = ips.iter().collect();
                if v.is_empty() {
                    Err(no_records(name, "A/AAAA"))
                } else {
                    Ok(v)
                }
            }
            Err(e) if is_no_records(&e) => Err(no_records(name, "A/AAAA")),
            Err(e) => Err(CaError::acme(
                ProblemType::Dns,
                format!("DNS problem: looking up A/AAAA for {name}: {e}"),
            )),
        }
    }

    /// TXT records of a name, each one's strings concatenated (RFC 8555 §8.4
    /// values fit one string, but a split record must still compare).
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>, CaError> {
        match self
            .inner
            .lookup(fqdn(name).as_str(), RecordType::TXT)
            .await
        {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if is_no_records(&e) => Ok(Vec::new()),
            Err(e) => Err(CaError::acme(
                ProblemType::Dns,
                format!("DNS problem: looking up TXT for {name}: {e}"),
            )),
        }
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn is_no_records(e: &hickory_resolver::net::NetError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

fn no_records(name: &str, rtype: &str) -> CaError {
    CaError::acme(
        ProblemType::Dns,
        format!("DNS problem: no {rtype} records found for {name}"),
    )
}
