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
