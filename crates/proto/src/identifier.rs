//! ACME identifiers ([RFC 8555 §7.1.4]), shared by orders, authorizations
//! and subproblems.
//!
//! [RFC 8555 §7.1.4]: https://www.rfc-editor.org/rfc/rfc8555#section-7.1.4

use core::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// An identifier a certificate can be issued for: `{"type", "value"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identifier {
    /// The identifier type; unknown types parse so the CA can answer
    /// `unsupportedIdentifier` instead of `malformed`.
    #[serde(rename = "type")]
    pub id_type: IdentifierType,
    /// The identifier itself, e.g. a DNS name or an IP address in text form.
    pub value: String,
}

impl Identifier {
    /// A `dns` identifier ([RFC 8555 §9.7.7]).
    ///
    /// [RFC 8555 §9.7.7]: https://www.rfc-editor.org/rfc/rfc8555#section-9.7.7
    pub fn dns(name: impl Into<String>) -> Self {
        Self {
            id_type: IdentifierType::Dns,
            value: name.into(),
        }
    }

    /// An `ip` identifier ([RFC 8738 §3]); IPv6 is written in the RFC 5952
    /// canonical form, which is what `IpAddr`'s `Display` produces.
    ///
    /// [RFC 8738 §3]: https://www.rfc-editor.org/rfc/rfc8738#section-3
    pub fn ip(addr: IpAddr) -> Self {
        Self {
            id_type: IdentifierType::Ip,
            value: addr.to_string(),
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id_type.as_str(), self.value)
    }
}

/// The `type` of an [`Identifier`], from the IANA "ACME Identifier Types"
/// registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum IdentifierType {
    /// `"dns"`: a fully qualified domain name, possibly a wildcard.
    Dns,
    /// `"ip"`: an IPv4 or IPv6 address ([RFC 8738]).
    ///
    /// [RFC 8738]: https://www.rfc-editor.org/rfc/rfc8738
    Ip,
    /// Any other type string, kept verbatim so it can be rejected politely.
    Other(String),
}

impl IdentifierType {
    /// The wire string for this type.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Dns => "dns",
            Self::Ip => "ip",
            Self::Other(other) => other,
        }
    }
}

impl From<String> for IdentifierType {
    fn from(value: String) -> Self {
        // RFC 8555 §9.7.7 registers lowercase names; matching is exact.
        match value.as_str() {
            "dns" => Self::Dns,
            "ip" => Self::Ip,
            _ => Self::Other(value),
        }
    }
}

impl From<IdentifierType> for String {
    fn from(value: IdentifierType) -> Self {
        match value {
            IdentifierType::Dns => "dns".into(),
            IdentifierType::Ip => "ip".into(),
            IdentifierType::Other(other) => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_shape() {
        let id = Identifier::dns("example.com");
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "dns", "value": "example.com"})
        );
        assert_eq!(serde_json::from_value::<Identifier>(json).unwrap(), id);

        let ip = Identifier::ip("2001:db8:0:0:0:0:0:1".parse().unwrap());
        assert_eq!(ip.value, "2001:db8::1");
        assert_eq!(
            serde_json::to_value(&ip).unwrap()["type"],
            serde_json::json!("ip")
        );
    }

    #[test]
    fn unknown_type_is_kept() {
        let id: Identifier =
            serde_json::from_str(r#"{"type":"email","value":"a@example.com"}"#).unwrap();
        assert_eq!(id.id_type, IdentifierType::Other("email".into()));
        assert_eq!(id.to_string(), "email:a@example.com");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            r#"{"type":"email","value":"a@example.com"}"#
        );
    }

    #[test]
    fn missing_members_fail() {
        assert!(serde_json::from_str::<Identifier>(r#"{"type":"dns"}"#).is_err());
        assert!(serde_json::from_str::<Identifier>(r#"{"value":"x"}"#).is_err());
        assert!(serde_json::from_str::<Identifier>(r#"{"type":1,"value":"x"}"#).is_err());
    }
}

/// The name a TLS-ALPN validator sends as SNI for an identifier
/// ([RFC 8738 §6]): the DNS name itself (lowercased), or the reverse-mapping
/// name of an IP address (`1.2.0.192.in-addr.arpa`, nibbles under
/// `ip6.arpa`). One function so the CA's validator and the agent's responder
/// can never disagree.
///
/// [RFC 8738 §6]: https://www.rfc-editor.org/rfc/rfc8738#section-6
pub fn reverse_dns_name(value: &str) -> String {
    match value.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        Ok(IpAddr::V6(v6)) => {
            let mut name = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0x0f, byte >> 4));
            }
            name.push_str("ip6.arpa");
            name
        }
        Err(_) => value.to_ascii_lowercase(),
    }
}

/// How CAs compare "the same set of names" (Let's Encrypt's
/// `CertificatesPerFQDNSet` key): lowercased, without a trailing dot,
/// sorted, duplicates removed, comma-joined.
pub fn identifier_set<S: AsRef<str>>(names: &[S]) -> String {
    let mut set: Vec<String> = names
        .iter()
        .map(|n| n.as_ref().trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    set.sort();
    set.dedup();
    set.join(",")
}

/// The bucket a name counts against for `CertificatesPerDomain`: its
/// registered domain by the Public Suffix List (`www.example.co.uk` →
/// `example.co.uk`; the last two labels when the list knows no suffix, as
/// for `example.test`); an IPv4 address as is; an IPv6 address by its /64,
/// the smallest block one subscriber usually holds. The CA counts with this
/// and the agent models the CA's count with it, so the two always agree.
pub fn registered_domain(value: &str) -> String {
    let name = value
        .trim()
        .trim_start_matches("*.")
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => return v4.to_string(),
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            return format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]);
        }
        Err(_) => {}
    }
    match psl::domain(name.as_bytes()) {
        Some(d) if d.suffix().is_known() => String::from_utf8_lossy(d.as_bytes()).into_owned(),
        _ => {
            let labels: Vec<&str> = name.rsplit('.').take(2).collect();
            labels.into_iter().rev().collect::<Vec<_>>().join(".")
        }
    }
}

#[cfg(test)]
mod shared_key_tests {
    use super::*;

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(registered_domain("a.b.example.com"), "example.com");
        assert_eq!(registered_domain("new.blog.example.co.uk"), "example.co.uk");
        assert_eq!(registered_domain("*.x.example.test"), "example.test");
        assert_eq!(registered_domain("example.test"), "example.test");
        assert_eq!(registered_domain("Example.COM."), "example.com");
    }

    #[test]
    fn ip_addresses_count_as_themselves_or_their_slash_64() {
        assert_eq!(registered_domain("192.0.2.7"), "192.0.2.7");
        assert_eq!(
            registered_domain("2001:db8:1:2:3:4:5:6"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            registered_domain("2001:db8:1:2::9"),
            registered_domain("2001:db8:1:2:ffff::1")
        );
    }

    #[test]
    fn identifier_sets_ignore_case_order_duplicates_and_trailing_dots() {
        assert_eq!(
            identifier_set(&["B.example.", "a.example", "b.example"]),
            "a.example,b.example"
        );
    }

    #[test]
    fn reverse_dns_names_for_ip_identifiers() {
        assert_eq!(reverse_dns_name("192.0.2.1"), "1.2.0.192.in-addr.arpa");
        assert_eq!(
            reverse_dns_name("2001:db8::1"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(reverse_dns_name("WWW.Example.test"), "www.example.test");
    }
}
