//! dns-01 (RFC 8555 §8.4): a TXT record at `_acme-challenge.NAME` holding
//! base64url(SHA-256(key authorization)).

use certkeeper_proto::jws::dns01_txt_value;
use certkeeper_proto::problem::ProblemType;

use super::DnsResolver;
use crate::CaError;

pub(crate) async fn validate(
    resolver: &DnsResolver,
    name: &str,
    key_auth: &str,
) -> Result<(), CaError> {
    let record = format!("_acme-challenge.{name}");
    let want = dns01_txt_value(key_auth);
    let found = resolver.lookup_txt(&record).await?;
    if found.iter().any(|v| v == &want) {
        return Ok(());
    }
    let detail = if found.is_empty() {
        format!("{name}: no TXT record found at {record}")
    } else {
        format!("{name}: TXT records at {record} do not include {want:?} (found {found:?})")
    };
    Err(CaError::acme(ProblemType::Unauthorized, detail))
}
