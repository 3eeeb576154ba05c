//! The CA's stored documents (the JSON in the store's `data` columns) and
//! their rendering as RFC 8555 §7.1 resources.
//!
//! Statuses live in the store's columns, not here, so a compare-and-set on
//! the column is the single source of truth.

use certkeeper_proto::identifier::Identifier;
use certkeeper_proto::problem::Problem;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An account's document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountDoc {
    /// The account key as a JWK.
    pub key: Value,
    /// `mailto:` contacts.
    pub contact: Vec<String>,
    /// Whether the client agreed to the terms of service.
    pub terms_agreed: bool,
    /// EAB key id the account was bound with, if any.
    pub eab_kid: Option<String>,
}

/// An order's document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderDoc {
    /// Identifiers, normalised and sorted.
    pub identifiers: Vec<Identifier>,
    /// One authorization per identifier, same order.
    pub authz_ids: Vec<String>,
    /// Profile name the certificate is issued under.
    pub profile: String,
    /// Why the order is invalid, if it is.
    pub error: Option<Problem>,
    /// Serial of the issued certificate, once valid.
    pub certificate_serial: Option<String>,
    /// ARI certID of the certificate this order replaces (RFC 9773 §5).
    pub replaces: Option<String>,
}

/// An authorization's document.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthzDoc {
    /// What is being authorized (a wildcard's base name, RFC 8555 §7.1.4).
    pub identifier: Identifier,
    /// True when the order asked for `*.` + identifier.
    pub wildcard: bool,
    /// The challenges offered.
    pub challenges: Vec<ChallengeDoc>,
}

/// One challenge inside an authorization.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChallengeDoc {
    /// Id, unique within the authorization.
    pub id: String,
    /// `http-01`, `dns-01` or `tls-alpn-01`.
    pub kind: String,
    /// Random token (RFC 8555 §8.1), base64url of 32 bytes.
    pub token: String,
    /// `pending`, `processing`, `valid` or `invalid`.
    pub status: String,
    /// When it was validated, unix seconds.
    pub validated: Option<i64>,
    /// Why validation failed.
    pub error: Option<Problem>,
}

/// RFC 3339 rendering of unix seconds.
pub use certkeeper_proto::clock::rfc3339;

/// The URL layout, rooted at the base URL the client used (`https://host:port`).
#[derive(Clone, Debug)]
pub struct Urls {
    /// `https://host:port`, no trailing slash.
    pub base: String,
}

impl Urls {
    /// Directory URL.
    pub fn directory(&self) -> String {
        format!("{}/directory", self.base)
    }
    /// Account URL (the `kid`).
    pub fn account(&self, id: &str) -> String {
        format!("{}/acme/acct/{id}", self.base)
    }
    /// Order URL.
    pub fn order(&self, id: &str) -> String {
        format!("{}/acme/order/{id}", self.base)
    }
    /// Authorization URL.
    pub fn authz(&self, id: &str) -> String {
        format!("{}/acme/authz/{id}", self.base)
    }
    /// Challenge URL.
    pub fn challenge(&self, authz_id: &str, chall_id: &str) -> String {
        format!("{}/acme/chall/{authz_id}/{chall_id}", self.base)
    }
    /// Certificate URL.
    pub fn certificate(&self, serial: &str) -> String {
        format!("{}/acme/cert/{serial}", self.base)
    }
}

/// RFC 8555 §7.1.2 account object.
pub fn account_json(urls: &Urls, id: &str, status: &str, doc: &AccountDoc) -> Value {
    let mut v = json!({
        "status": status,
        "contact": doc.contact,
        "termsOfServiceAgreed": doc.terms_agreed,
        "orders": format!("{}/orders", urls.account(id)),
        "key": doc.key,
    });
    if let Some(kid) = &doc.eab_kid {
        v["externalAccountBinding"] = json!({ "kid": kid });
    }
    v
}

/// RFC 8555 §7.1.3 order object.
pub fn order_json(urls: &Urls, id: &str, status: &str, expires_at: i64, doc: &OrderDoc) -> Value {
    let mut v = json!({
        "status": status,
        "expires": rfc3339(expires_at),
        "identifiers": doc.identifiers,
        "authorizations": doc.authz_ids.iter().map(|a| urls.authz(a)).collect::<Vec<_>>(),
        "finalize": format!("{}/finalize", urls.order(id)),
        "profile": doc.profile,
    });
    if let Some(e) = &doc.error {
        v["error"] = serde_json::to_value(e).unwrap_or(Value::Null);
    }
    if let (Some(serial), "valid") = (&doc.certificate_serial, status) {
        v["certificate"] = json!(urls.certificate(serial));
    }
    if let Some(r) = &doc.replaces {
        v["replaces"] = json!(r);
    }
    v
}

/// The status an authorization shows clients: `processing` is our internal
/// lock state and reads as `pending` (RFC 8555 §7.1.6 has no processing authz).
pub fn public_authz_status(status: &str) -> &str {
    if status == "processing" {
        "pending"
    } else {
        status
    }
}

/// RFC 8555 §7.1.4 authorization object.
pub fn authz_json(urls: &Urls, id: &str, status: &str, expires_at: i64, doc: &AuthzDoc) -> Value {
    let mut v = json!({
        "identifier": doc.identifier,
        "status": public_authz_status(status),
        "expires": rfc3339(expires_at),
        "challenges": doc.challenges.iter().map(|c| challenge_json(urls, id, c)).collect::<Vec<_>>(),
    });
    if doc.wildcard {
        v["wildcard"] = json!(true);
    }
    v
}

/// RFC 8555 §8 challenge object.
pub fn challenge_json(urls: &Urls, authz_id: &str, c: &ChallengeDoc) -> Value {
    let mut v = json!({
        "type": c.kind,
        "url": urls.challenge(authz_id, &c.id),
        "token": c.token,
        "status": c.status,
    });
    if let Some(t) = c.validated {
        v["validated"] = json!(rfc3339(t));
    }
    if let Some(e) = &c.error {
        v["error"] = serde_json::to_value(e).unwrap_or(Value::Null);
    }
    v
}
