//! Accounts: creation (with optional external account binding), lookup,
//! update, deactivation and key change (RFC 8555 §7.3).

use aws_lc_rs::hmac;
use certkeeper_proto::problem::ProblemType;
use certkeeper_proto::{Jwk, Jws, b64};
use certkeeper_store::AccountRow;
use serde::Deserialize;
use serde_json::Value;

use super::{Account, Ra, from_json, new_id, to_json};
use crate::CaError;
use crate::objects::AccountDoc;

/// The newAccount payload (RFC 8555 §7.3).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// `mailto:` URLs.
    #[serde(default)]
    pub contact: Vec<String>,
    /// Must be true: the directory advertises terms of service.
    #[serde(default)]
    pub terms_of_service_agreed: bool,
    /// Only look the account up, never create it (§7.3.1).
    #[serde(default)]
    pub only_return_existing: bool,
    /// RFC 8555 §7.3.4 binding to an account the CA knows out of band.
    pub external_account_binding: Option<Value>,
}

/// The account-update payload (RFC 8555 §7.3.2, §7.3.6).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountUpdate {
    contact: Option<Vec<String>>,
    status: Option<String>,
}

/// The key-change inner payload (RFC 8555 §7.3.5).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyChange {
    account: String,
    old_key: Value,
}

impl Ra {
    /// Finds an account by id (from a `kid`), refusing deactivated ones.
    pub async fn account(&self, id: &str) -> Result<Account, CaError> {
        let account = match self.accounts.get(id) {
            Ok(cached) => cached,
            Err(ticket) => {
                let row = self.store.account_by_id(id).await?.ok_or_else(|| {
                    CaError::acme(
                        ProblemType::AccountDoesNotExist,
                        format!("account {id} does not exist"),
                    )
                })?;
                let doc = from_json("account", &row.data)?;
                let account = Account { row, doc };
                self.accounts.fill(ticket, &account);
                account
            }
        };
        if account.row.status != "valid" {
            return Err(CaError::unauthorized(format!(
                "account {id} is {}",
                account.row.status
            )));
        }
        Ok(account)
    }

    /// newAccount: returns the account and whether it was created now.
    /// `url` is the request URL (an EAB must be bound to it).
    pub async fn new_account(
        &self,
        key: &Jwk,
        req: NewAccount,
        url: &str,
        client_ip: Option<std::net::IpAddr>,
    ) -> Result<(Account, bool), CaError> {
        check_account_key(key)?;
        let thumbprint = key.thumbprint();
        if let Some(row) = self.store.account_by_thumbprint(&thumbprint).await? {
            // RFC 8555 §7.3.6: "the server MUST NOT accept further requests
            // authorized by that account's key", newAccount included.
            if row.status != "valid" {
                return Err(CaError::unauthorized(format!(
                    "the account for this key is {}; generate a new account key",
                    row.status
                )));
            }
            // RFC 8555 §7.3.1: an existing key returns its account, 200 OK.
            let doc = from_json("account", &row.data)?;
            return Ok((Account { row, doc }, false));
        }
        if req.only_return_existing {
            return Err(CaError::acme(
                ProblemType::AccountDoesNotExist,
                "no account exists with this key",
            ));
        }
        if !req.terms_of_service_agreed {
            return Err(CaError::acme(
                ProblemType::UserActionRequired,
                "you must agree to the terms of service (termsOfServiceAgreed: true)",
            ));
        }
        check_contacts(&req.contact)?;
        let eab_kid = match &req.external_account_binding {
            Some(eab) => Some(self.verify_eab(eab, key, url).await?),
            None if self.eab_required => {
                return Err(CaError::acme(
                    ProblemType::ExternalAccountRequired,
                    "this CA requires external account binding; ask its operator for a key id and HMAC key",
                ));
            }
            None => None,
        };
        // Boulder spends NewRegistrationsPerIPAddress only for a registration
        // that would create an account, and refunds it when creation fails.
        let limit_txns: Vec<super::limits::Txn> = client_ip
            .map(|ip| {
                super::limits::Txn::new(
                    super::limits::LimitName::NewRegistrationsPerIPAddress,
                    ip.to_string(),
                    super::limits::Mode::CheckAndSpend,
                )
            })
            .into_iter()
            .collect();
        self.limits_spend(&limit_txns, None).await?;
        let created = self.create_account(key, req, thumbprint, eab_kid).await;
        if created.is_err() {
            self.limits_refund(&limit_txns).await;
        }
        created
    }

    async fn create_account(
        &self,
        key: &Jwk,
        req: NewAccount,
        thumbprint: String,
        eab_kid: Option<String>,
    ) -> Result<(Account, bool), CaError> {
        let doc = AccountDoc {
            key: key.to_json(),
            contact: req.contact,
            terms_agreed: true,
            eab_kid: eab_kid.clone(),
        };
        let row = AccountRow {
            id: new_id(),
            thumbprint,
            status: "valid".into(),
            data: to_json(&doc)?,
            created_at: self.now(),
        };
        match eab_kid {
            Some(kid) => {
                if !self
                    .store
                    .insert_account_with_eab(&row, &kid)
                    .await
                    .map_err(conflict_is_race)?
                {
                    return Err(CaError::unauthorized(format!(
                        "external account binding key {kid} is already used"
                    )));
                }
            }
            None => self
                .store
                .insert_account(&row)
                .await
                .map_err(conflict_is_race)?,
        }
        Ok((Account { row, doc }, true))
    }

    /// RFC 8555 §7.3.4: the EAB is a JWS by the HMAC key over the account key.
    async fn verify_eab(&self, eab: &Value, key: &Jwk, url: &str) -> Result<String, CaError> {
        let bad = |m: &str| CaError::malformed(format!("externalAccountBinding: {m}"));
        let part = |name: &str| {
            eab.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&format!("missing {name}")))
        };
        let (protected_b64, payload_b64, signature_b64) =
            (part("protected")?, part("payload")?, part("signature")?);
        let protected: Value =
            serde_json::from_slice(&b64::decode(protected_b64).map_err(|_| bad("bad base64"))?)
                .map_err(|_| bad("protected header is not JSON"))?;
        let alg = match protected.get("alg").and_then(Value::as_str) {
            Some("HS256") => hmac::HMAC_SHA256,
            Some("HS384") => hmac::HMAC_SHA384,
            Some("HS512") => hmac::HMAC_SHA512,
            _ => {
                return Err(CaError::acme(
                    ProblemType::BadSignatureAlgorithm,
                    "externalAccountBinding must use HS256, HS384 or HS512",
                ));
            }
        };
        if protected.get("nonce").is_some() {
            return Err(bad("must not carry a nonce"));
        }
        if protected.get("url").and_then(Value::as_str) != Some(url) {
            return Err(bad("url must equal the newAccount URL"));
        }
        let kid = protected
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing kid"))?;
        // One answer for an unknown key id, a used one and a wrong MAC: a
        // prober learns nothing about which key ids exist.
        let refused = || {
            CaError::unauthorized(
                "external account binding refused: the key id is unknown or already used, or the MAC does not verify",
            )
        };
        let hmac_key = self.store.unbound_eab_key(kid).await?.ok_or_else(refused)?;
        let hmac_key = b64::decode(&hmac_key)
            .map_err(|_| CaError::Internal("stored EAB key is not base64url".into()))?;
        let signature = b64::decode(signature_b64).map_err(|_| bad("bad base64 signature"))?;
        hmac::verify(
            &hmac::Key::new(alg, &hmac_key),
            format!("{protected_b64}.{payload_b64}").as_bytes(),
            &signature,
        )
        .map_err(|_| refused())?;
        let bound: Value = serde_json::from_slice(
            &b64::decode(payload_b64).map_err(|_| bad("bad base64 payload"))?,
        )
        .map_err(|_| bad("payload is not a JWK"))?;
        let bound = Jwk::from_json(&bound).map_err(|e| bad(&e.to_string()))?;
        if bound != *key {
            return Err(bad("payload must be the account key being registered"));
        }
        Ok(kid.to_string())
    }

    /// Updates contacts or deactivates an account (RFC 8555 §7.3.2, §7.3.6).
    pub async fn update_account(
        &self,
        mut account: Account,
        payload: &[u8],
    ) -> Result<Account, CaError> {
        let update: AccountUpdate = serde_json::from_slice(payload)
            .map_err(|e| CaError::malformed(format!("account update: {e}")))?;
        if let Some(contact) = update.contact {
            check_contacts(&contact)?;
            account.doc.contact = contact;
        }
        match update.status.as_deref() {
            None | Some("valid") => {}
            Some("deactivated") => account.row.status = "deactivated".into(),
            Some(other) => {
                return Err(CaError::malformed(format!(
                    "account status may only become \"deactivated\", not {other:?}"
                )));
            }
        }
        account.row.data = to_json(&account.doc)?;
        let written = self.store.update_account(&account.row).await;
        self.accounts.changed(&account.row.id);
        written?;
        Ok(account)
    }

    /// keyChange (RFC 8555 §7.3.5): `inner` is the JWS signed by the new key.
    pub async fn key_change(
        &self,
        mut account: Account,
        account_url: &str,
        outer_url: &str,
        inner: &Jws,
    ) -> Result<Account, CaError> {
        let new_key = inner
            .protected
            .key
            .jwk()
            .ok_or_else(|| CaError::malformed("keyChange inner JWS must carry the new key as jwk"))?
            .clone();
        if inner.protected.url != outer_url {
            return Err(CaError::malformed(
                "keyChange inner JWS url must equal the outer url",
            ));
        }
        if inner.protected.nonce.is_some() {
            return Err(CaError::malformed(
                "keyChange inner JWS must not carry a nonce",
            ));
        }
        inner
            .verify(&new_key)
            .map_err(|e| CaError::malformed(format!("keyChange inner JWS: {e}")))?;
        check_account_key(&new_key)?;
        let change: KeyChange = inner
            .payload_json()
            .map_err(|e| CaError::malformed(format!("keyChange payload: {e}")))?;
        if change.account != account_url {
            return Err(CaError::malformed(
                "keyChange payload account must be the requesting account's URL",
            ));
        }
        let old = Jwk::from_json(&change.old_key)
            .map_err(|e| CaError::malformed(format!("keyChange oldKey: {e}")))?;
        if old.thumbprint() != account.row.thumbprint {
            return Err(CaError::unauthorized(
                "keyChange oldKey is not the account's current key",
            ));
        }
        let new_thumbprint = new_key.thumbprint();
        if let Some(other) = self.store.account_by_thumbprint(&new_thumbprint).await? {
            return Err(CaError::Conflict {
                detail: "the new key is already in use by an account".into(),
                location: format!("/acme/acct/{}", other.id),
            });
        }
        account.doc.key = new_key.to_json();
        account.row.thumbprint = new_thumbprint;
        account.row.data = to_json(&account.doc)?;
        let written = self.store.update_account(&account.row).await;
        self.accounts.changed(&account.row.id);
        written.map_err(conflict_is_race)?;
        Ok(account)
    }
}

/// Account keys: RSA of at least 2048 bits, P-256, P-384 or Ed25519.
fn check_account_key(key: &Jwk) -> Result<(), CaError> {
    if let Jwk::Rsa { n, .. } = key
        && n.len() * 8 < 2048
    {
        return Err(CaError::acme(
            ProblemType::BadPublicKey,
            format!(
                "RSA account keys must have at least 2048 bits, this one has {}",
                n.len() * 8
            ),
        ));
    }
    Ok(())
}

/// Most contacts on one account (Boulder: 10).
const MAX_CONTACTS: usize = 10;
/// Longest contact address, RFC 5321 §4.5.3.1 limits: 64-octet local part,
/// 255-octet domain, and a path of at most 256 octets overall.
const MAX_LOCAL_PART: usize = 64;
const MAX_ADDRESS: usize = 254;

/// RFC 8555 §7.3 contacts, checked as Boulder does: `mailto:` only, one
/// address each, no header fields (`?`), no whitespace or control
/// characters (a CR/LF would smuggle mail headers), bounded length and
/// count, no duplicates.
fn check_contacts(contacts: &[String]) -> Result<(), CaError> {
    if contacts.len() > MAX_CONTACTS {
        return Err(CaError::acme(
            ProblemType::InvalidContact,
            format!(
                "{} contacts given; at most {MAX_CONTACTS} are accepted",
                contacts.len()
            ),
        ));
    }
    for (i, c) in contacts.iter().enumerate() {
        // Never echo an attacker's control characters or megabytes back.
        let shown: String = c.chars().take(80).filter(|ch| !ch.is_control()).collect();
        let invalid = |why: &str| {
            CaError::acme(
                ProblemType::InvalidContact,
                format!("contact {shown:?}: {why}"),
            )
        };
        let Some(addr) = c.strip_prefix("mailto:") else {
            return Err(CaError::acme(
                ProblemType::UnsupportedContact,
                format!("contact {shown:?}: only mailto: is supported"),
            ));
        };
        if addr.len() > MAX_ADDRESS {
            return Err(invalid("the address is longer than 254 characters"));
        }
        if addr.chars().any(|ch| {
            ch.is_control() || ch.is_whitespace() || matches!(ch, ',' | '?' | '<' | '>' | '"')
        }) {
            return Err(invalid(
                "one plain address, without header fields, spaces or control characters",
            ));
        }
        let Some((local, domain)) = addr.split_once('@') else {
            return Err(invalid("not an email address"));
        };
        if local.is_empty() || local.len() > MAX_LOCAL_PART || domain.contains('@') {
            return Err(invalid("not a single email address"));
        }
        let domain_ok = domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !domain_ok {
            return Err(invalid("the domain is not a valid host name"));
        }
        if contacts[..i].iter().any(|d| d.eq_ignore_ascii_case(c)) {
            return Err(invalid("listed twice"));
        }
    }
    Ok(())
}

/// Two requests registering the same key at once: the loser sees a conflict.
fn conflict_is_race(e: certkeeper_store::StoreError) -> CaError {
    if e.is_conflict() {
        CaError::malformed(
            "this key was registered by a concurrent request; retry newAccount to fetch it",
        )
    } else {
        e.into()
    }
}

#[cfg(test)]
mod contact_tests {
    use super::*;

    #[test]
    fn hostile_contacts_are_refused() {
        let long_local = format!("mailto:{}@example.com", "a".repeat(30_000));
        let many: Vec<String> = (0..11)
            .map(|i| format!("mailto:a{i}@example.com"))
            .collect();
        for bad in [
            vec!["mailto:a\r\nBcc: x@y@b.example".to_string()],
            vec!["mailto:a@b.example?subject=x".to_string()],
            vec!["mailto:a@b.example,c@d.example".to_string()],
            vec![long_local],
            vec![
                "mailto:a@b.example".to_string(),
                "mailto:A@b.example".to_string(),
            ],
            many,
            vec!["tel:+1555".to_string()],
        ] {
            assert!(
                check_contacts(&bad).is_err(),
                "{:?}",
                &bad[0][..bad[0].len().min(40)]
            );
        }
        assert!(check_contacts(&["mailto:ops+acme@svc.example.internal".to_string()]).is_ok());
    }
}
