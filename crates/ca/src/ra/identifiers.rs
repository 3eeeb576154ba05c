//! Identifier policy: what a newOrder may ask for (RFC 8555 §7.4, RFC 8738).

use std::net::IpAddr;

use certkeeper_proto::problem::ProblemType;
use certkeeper_proto::{Identifier, IdentifierType};

use crate::CaError;
use crate::policy::IdentifierPolicy;

/// Normalises, checks and sorts an order's identifiers; duplicates collapse.
pub(crate) fn check(
    policy: &IdentifierPolicy,
    idents: &[Identifier],
) -> Result<Vec<Identifier>, CaError> {
    if idents.is_empty() {
        return Err(CaError::malformed("newOrder has no identifiers"));
    }
    let mut out: Vec<Identifier> = Vec::with_capacity(idents.len());
    for ident in idents {
        let checked = match &ident.id_type {
            IdentifierType::Dns => Identifier::dns(check_dns(policy, &ident.value)?),
            IdentifierType::Ip => {
                if !policy.allow_ip {
                    return Err(CaError::acme(
                        ProblemType::RejectedIdentifier,
                        format!("{}: this CA does not issue for IP addresses", ident.value),
                    ));
                }
                let ip: IpAddr = ident.value.parse().map_err(|_| {
                    CaError::malformed(format!("{:?} is not an IPv4 or IPv6 address", ident.value))
                })?;
                Identifier::ip(check_ip(ip)?)
            }
            IdentifierType::Other(t) => {
                return Err(CaError::acme(
                    ProblemType::UnsupportedIdentifier,
                    format!("identifier type {t:?} is not supported; use \"dns\" or \"ip\""),
                ));
            }
        };
        if !out.contains(&checked) {
            out.push(checked);
        }
    }
    if out.len() > policy.max_names {
        return Err(CaError::acme(
            ProblemType::RejectedIdentifier,
            format!(
                "an order may hold at most {} identifiers, this one has {}",
                policy.max_names,
                out.len()
            ),
        ));
    }
    out.sort_by(|a, b| (a.id_type.as_str(), &a.value).cmp(&(b.id_type.as_str(), &b.value)));
    Ok(out)
}

/// RFC 8738 addresses a certificate can meaningfully name: an IPv4-mapped
/// IPv6 address is the IPv4 address (one identity, one spelling);
/// unspecified, broadcast and multicast addresses identify no host.
fn check_ip(ip: IpAddr) -> Result<IpAddr, CaError> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let unusable = ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if unusable {
        return Err(CaError::acme(
            ProblemType::RejectedIdentifier,
            format!("{ip}: unspecified, broadcast and multicast addresses are not issued for"),
        ));
    }
    Ok(ip)
}

fn check_dns(policy: &IdentifierPolicy, raw: &str) -> Result<String, CaError> {
    let reject =
        |why: &str| CaError::acme(ProblemType::RejectedIdentifier, format!("{raw:?}: {why}"));
    let name = raw.to_ascii_lowercase();
    if name.is_empty() {
        return Err(reject("empty name"));
    }
    if name.ends_with('.') {
        return Err(reject(
            "name ends in a dot; send it without the trailing dot",
        ));
    }
    if name.len() > 253 {
        return Err(reject("name is longer than 253 characters"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(reject("an IP address must be sent as an \"ip\" identifier"));
    }
    let base = name.strip_prefix("*.").unwrap_or(&name);
    for label in base.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(reject("every label must be 1 to 63 characters"));
        }
        if label == "*" {
            return Err(reject("a wildcard may only be the leftmost label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(reject("labels may hold only letters, digits and hyphens"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(reject("a label may not start or end with a hyphen"));
        }
    }
    for blocked in &policy.blocked_domains {
        let blocked = blocked.trim_start_matches('.').to_ascii_lowercase();
        if base == blocked || base.ends_with(&format!(".{blocked}")) {
            return Err(reject("the CA's policy forbids issuance for this name"));
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> IdentifierPolicy {
        IdentifierPolicy {
            max_names: 3,
            blocked_domains: vec!["bad.test".into()],
            allow_ip: true,
        }
    }

    #[test]
    fn names_are_normalised_sorted_and_deduplicated() {
        let got = check(
            &policy(),
            &[
                Identifier::dns("B.test"),
                Identifier::dns("a.test"),
                Identifier::dns("b.test"),
            ],
        )
        .expect("valid");
        assert_eq!(
            got,
            vec![Identifier::dns("a.test"), Identifier::dns("b.test")]
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in [
            "a..test",
            "-a.test",
            "a.*.test",
            "a_b.test",
            "x.bad.test",
            "bad.test",
            "1.2.3.4",
            "a.test.",
        ] {
            let e = check(&policy(), &[Identifier::dns(bad)]).expect_err(bad);
            assert!(
                matches!(
                    e,
                    CaError::Acme {
                        kind: ProblemType::RejectedIdentifier,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn wildcards_and_ips_are_accepted() {
        assert!(check(&policy(), &[Identifier::dns("*.a.test")]).is_ok());
        assert!(check(&policy(), &[Identifier::ip("::1".parse().expect("ip"))]).is_ok());
    }

    #[test]
    fn unusable_ips_are_rejected_and_mapped_ones_normalised() {
        for bad in [
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "::ffff:0.0.0.0",
        ] {
            let ip = bad.parse().expect("ip");
            assert!(check(&policy(), &[Identifier::ip(ip)]).is_err(), "{bad}");
        }
        let mapped = "::ffff:1.2.3.4".parse().expect("ip");
        let out = check(&policy(), &[Identifier::ip(mapped)]).expect("mapped");
        assert_eq!(out[0].value, "1.2.3.4");
    }

    #[test]
    fn too_many_names() {
        let names: Vec<_> = (0..4)
            .map(|i| Identifier::dns(format!("n{i}.test")))
            .collect();
        assert!(check(&policy(), &names).is_err());
    }
}
