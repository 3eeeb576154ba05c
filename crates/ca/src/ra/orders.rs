//! Orders, authorizations and challenges (RFC 8555 §7.4, §7.5), finalization
//! and certificate retrieval, and resuming all of it after a restart.

use std::sync::Arc;
use std::time::Duration;

use certkeeper_proto::jws::key_authorization;
use certkeeper_proto::problem::{Problem, ProblemType};
use certkeeper_proto::{Identifier, IdentifierType, Jwk};
use certkeeper_store::{AuthzRow, CertificateRow, Guarded, IssuanceRow, NewOrderFacts, OrderRow};
use serde::Deserialize;

use super::limits::{LimitName, Mode, Txn, fqdn_set_key, registered_domain};
use super::{Account, Ra, csr, from_json, identifiers, new_id, new_token, to_json};
use crate::CaError;
use crate::issuer::{LeafRequest, RenewalWindow, parse_cert_id, renewal_window};
use crate::objects::{AuthzDoc, ChallengeDoc, OrderDoc};
use crate::va::Validation;

/// How long a challenge POST waits for its validation before answering
/// `processing`: loopback validations finish well inside it, so most clients
/// see the result without polling, and a slow peer never holds a request long.
const INLINE_VALIDATION_WAIT: Duration = Duration::from_secs(3);

/// `Retry-After` for a challenge POST refused because every validation slot
/// is taken: validations take a second or two on a healthy network.
const VALIDATION_BUSY_RETRY_SECS: u64 = 5;

/// `Retry-After` when an account holds too many pending authorizations:
/// they clear as the client validates them, so a minute is a fair wait.
const PENDING_AUTHZ_RETRY_SECS: u64 = 60;

/// How far back an issuance of the same identifier set makes an order a
/// renewal, exempt from NewOrdersPerAccount and CertificatesPerDomain (Let's
/// Encrypt: "renewals" are orders for a set issued in the last 120 days).
const RENEWAL_LOOKBACK_SECS: i64 = 120 * 86400;

/// Which limits an order escapes.
#[derive(Clone, Copy, Debug, Default)]
struct Exemptions {
    /// ARI renewal (`replaces` a certificate of the account whose window has
    /// opened): Boulder exempts these from every limit.
    all: bool,
    /// Renewal of an identifier set recently issued to the same account
    /// (any account's would let anyone order without limit for any set
    /// that was ever issued).
    renewal: bool,
}

/// The newOrder payload (RFC 8555 §7.4).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// Requested identifiers.
    pub identifiers: Vec<Identifier>,
    /// Unsupported, as in Boulder.
    pub not_before: Option<String>,
    /// Unsupported, as in Boulder.
    pub not_after: Option<String>,
    /// Certificate profile (draft-ietf-acme-profiles).
    pub profile: Option<String>,
    /// ARI certID of the certificate being replaced (RFC 9773 §5).
    pub replaces: Option<String>,
}

/// An order with its document.
#[derive(Clone, Debug)]
pub struct Order {
    /// The stored row (status is authoritative).
    pub row: OrderRow,
    /// Its document.
    pub doc: OrderDoc,
}

/// An authorization with its document.
#[derive(Clone, Debug)]
pub struct Authz {
    /// The stored row (status is authoritative).
    pub row: AuthzRow,
    /// Its document.
    pub doc: AuthzDoc,
}

fn authz_key(ident: &Identifier, wildcard: bool) -> String {
    format!(
        "{}:{}{}",
        ident.id_type.as_str(),
        if wildcard { "*." } else { "" },
        ident.value
    )
}

fn challenges_for(ident: &Identifier, wildcard: bool) -> Vec<ChallengeDoc> {
    // RFC 8555 §7.1.4: wildcards only by dns-01; RFC 8738 §7: no dns-01 for IPs.
    let kinds: &[&str] = match (&ident.id_type, wildcard) {
        (_, true) => &["dns-01"],
        (IdentifierType::Ip, _) => &["http-01", "tls-alpn-01"],
        _ => &["http-01", "dns-01", "tls-alpn-01"],
    };
    kinds
        .iter()
        .map(|k| ChallengeDoc {
            id: new_id(),
            kind: (*k).to_string(),
            token: new_token(),
            status: "pending".into(),
            validated: None,
            error: None,
        })
        .collect()
}

impl Ra {
    /// newOrder: checks identifiers and profile, reuses valid authorizations,
    /// and stores the order with its new authorizations atomically.
    pub async fn new_order(&self, account: &Account, req: NewOrder) -> Result<Order, CaError> {
        if req.not_before.is_some() || req.not_after.is_some() {
            return Err(CaError::malformed(
                "notBefore and notAfter are not supported; validity comes from the profile",
            ));
        }
        let idents = identifiers::check(&self.policy.identifiers, &req.identifiers)?;
        let profile = self.policy.profile(req.profile.as_deref()).ok_or_else(|| {
            let offered: Vec<&str> = self
                .policy
                .profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            CaError::malformed(format!(
                "profile {:?} is not offered; choose one of {offered:?}",
                req.profile.unwrap_or_default()
            ))
        })?;
        if let Some(replaces) = &req.replaces {
            self.check_replaces(account, replaces, &idents).await?;
        }
        let bare: Vec<&str> = idents
            .iter()
            .map(|i| i.value.trim_start_matches("*."))
            .collect();
        let facts = self
            .store
            .new_order_facts(
                &account.row.id,
                &bare,
                &names_column(&idents),
                self.now() - RENEWAL_LOOKBACK_SECS,
                self.now(),
            )
            .await?;
        check_not_paused(account, &facts)?;
        let exempt = self
            .limit_exemptions(account, req.replaces.as_deref(), facts.renewal)
            .await?;
        let limit_txns = new_order_txns(account, &idents, exempt);
        let order = self
            .create_order(
                account,
                req.replaces,
                idents,
                profile.name.clone(),
                &limit_txns,
                facts.pending_authzs,
            )
            .await?;
        metrics::counter!("certkeeper_ca_orders_total", "profile" => profile.name.clone())
            .increment(1);
        Ok(order)
    }

    /// Which limits an order escapes (see [`Exemptions`]).
    async fn limit_exemptions(
        &self,
        account: &Account,
        replaces: Option<&str>,
        renewal: bool,
    ) -> Result<Exemptions, CaError> {
        let now = self.now();
        let mut exempt = Exemptions::default();
        if let Some(cert_id) = replaces
            && let Ok((_, serial)) = parse_cert_id(cert_id)
            && let Some(cert) = self.store.certificate_by_serial(&serial).await?
            && cert.account_id == account.row.id
        {
            let window = renewal_window(
                cert.not_before,
                cert.not_after,
                cert.status == "revoked",
                now,
            );
            // Inside the window, or past its start: the renewal ARI asked for.
            exempt.all = now >= window.start;
        }
        exempt.renewal = renewal;
        Ok(exempt)
    }

    /// Stores a new order with its new authorizations, in the same commit as
    /// the limit spends it pays (`limit_txns`).
    async fn create_order(
        &self,
        account: &Account,
        replaces: Option<String>,
        idents: Vec<Identifier>,
        profile: String,
        limit_txns: &[Txn],
        pending_authzs: i64,
    ) -> Result<Order, CaError> {
        let now = self.now();
        let lt = &self.policy.lifetimes;
        let mut authz_ids = Vec::with_capacity(idents.len());
        let mut new_authzs = Vec::new();
        // Every authorization of the order, in order, to derive its status
        // from without reading back what was just written.
        let mut known = Vec::with_capacity(idents.len());
        for ident in &idents {
            let wildcard = ident.id_type == IdentifierType::Dns && ident.value.starts_with("*.");
            let base = if wildcard {
                Identifier::dns(&ident.value[2..])
            } else {
                ident.clone()
            };
            let key = authz_key(&base, wildcard);
            // Boulder reuses a valid authorization that outlives the order by a day.
            if let Some(existing) = self
                .store
                .reusable_authz(&account.row.id, &key, now + 86400)
                .await?
            {
                authz_ids.push(existing.id.clone());
                let doc = from_json("authorization", &existing.data)?;
                known.push(Authz { row: existing, doc });
                continue;
            }
            let doc = AuthzDoc {
                challenges: challenges_for(&base, wildcard),
                identifier: base,
                wildcard,
            };
            let row = AuthzRow {
                id: new_id(),
                account_id: account.row.id.clone(),
                identifier: key,
                status: "pending".into(),
                expires_at: now + lt.pending_authz_secs(),
                data: to_json(&doc)?,
            };
            authz_ids.push(row.id.clone());
            new_authzs.push(row.clone());
            known.push(Authz { row, doc });
        }
        self.check_pending_authzs(account, pending_authzs, new_authzs.len())?;
        let doc = OrderDoc {
            identifiers: idents,
            authz_ids,
            profile,
            error: None,
            certificate_serial: None,
            replaces,
        };
        let row = OrderRow {
            id: new_id(),
            account_id: account.row.id.clone(),
            status: "pending".into(),
            expires_at: now + lt.order_secs(),
            data: to_json(&doc)?,
        };
        let guarded = Guarded::Order {
            order: &row,
            authzs: &new_authzs,
            now,
        };
        self.limits_spend(limit_txns, Some(guarded)).await?;
        // All authorizations may have been reused: the order can be ready at once.
        self.refresh_order_from(Order { row, doc }, &known).await
    }

    /// `capacity.max_pending_authzs_per_account`: an account may not pile up
    /// authorizations faster than it validates them. Counted before the
    /// insert, not in its transaction: concurrent orders of one account may
    /// overshoot by their own size, which bounds the overshoot too.
    fn check_pending_authzs(
        &self,
        account: &Account,
        held: i64,
        adding: usize,
    ) -> Result<(), CaError> {
        if adding == 0 {
            return Ok(());
        }
        let cap = u64::from(self.policy.capacity.max_pending_authzs_per_account);
        let held = u64::try_from(held).unwrap_or(0);
        if held.saturating_add(adding as u64) > cap {
            return Err(CaError::RateLimited {
                detail: format!(
                    "too many currently pending authorizations ({held} of {cap}) for account {}; \
                     complete or deactivate them, or let them expire, before ordering {adding} more",
                    account.row.id
                ),
                retry_after_secs: PENDING_AUTHZ_RETRY_SECS,
            });
        }
        Ok(())
    }

    /// RFC 9773 §5: `replaces` must name a certificate of this account that
    /// shares an identifier with the new order.
    async fn check_replaces(
        &self,
        account: &Account,
        cert_id: &str,
        idents: &[Identifier],
    ) -> Result<(), CaError> {
        let (aki, serial) =
            parse_cert_id(cert_id).map_err(|e| CaError::malformed(format!("replaces: {e}")))?;
        if aki != self.pki.intermediate_key_id() {
            return Err(CaError::malformed(
                "replaces: the certificate was not issued by this CA",
            ));
        }
        let cert = self
            .store
            .certificate_by_serial(&serial)
            .await?
            .ok_or_else(|| {
                CaError::malformed(format!("replaces: no certificate with serial {serial}"))
            })?;
        if cert.account_id != account.row.id {
            return Err(CaError::unauthorized(
                "replaces: that certificate belongs to another account",
            ));
        }
        if !idents
            .iter()
            .any(|i| cert.names.split(',').any(|n| n == i.value))
        {
            return Err(CaError::malformed(
                "replaces: the new order shares no identifier with that certificate",
            ));
        }
        Ok(())
    }

    /// Loads an order the account owns, with its current status.
    pub async fn order(&self, account: &Account, id: &str) -> Result<Order, CaError> {
        Ok(self.order_and_stored_status(account, id).await?.0)
    }

    /// [`Ra::order`], with the status as stored before it was derived
    /// (`ready` is never stored, so a ready order reads `pending`): what
    /// finalize compares-and-sets against, without reading the row twice.
    async fn order_and_stored_status(
        &self,
        account: &Account,
        id: &str,
    ) -> Result<(Order, String), CaError> {
        if let Some(settled) = self.settled.order(id)
            && settled.row.account_id == account.row.id
        {
            let stored = settled.row.status.clone();
            return Ok((settled, stored));
        }
        let row = self
            .store
            .order_by_id(id)
            .await?
            .ok_or_else(|| CaError::NotFound(format!("order {id}")))?;
        if row.account_id != account.row.id {
            return Err(CaError::NotFound(format!("order {id}")));
        }
        let doc = from_json("order", &row.data)?;
        let stored = row.status.clone();
        Ok((self.refresh_order(Order { row, doc }).await?, stored))
    }

    /// Derives a pending order's status from its authorizations and expiry
    /// (RFC 8555 §7.1.6). `invalid` is recorded; `ready` is not: it follows
    /// from the authorizations every time, and skipping the write saves a
    /// commit on the hot path. Finalize compares-and-sets from the stored status.
    async fn refresh_order(&self, order: Order) -> Result<Order, CaError> {
        let mut authzs = Vec::new();
        if order.row.status == "pending" && self.now() < order.row.expires_at {
            for id in &order.doc.authz_ids {
                authzs.push(self.load_authz(id).await?);
            }
        }
        self.refresh_order_from(order, &authzs).await
    }

    /// [`Ra::refresh_order`] with the order's authorizations in hand (all of
    /// them, in the order's order, when it is pending).
    async fn refresh_order_from(
        &self,
        mut order: Order,
        authzs: &[Authz],
    ) -> Result<Order, CaError> {
        let now = self.now();
        let before = order.row.status.clone();
        if matches!(before.as_str(), "pending" | "ready") && now >= order.row.expires_at {
            order.row.status = "invalid".into();
            order.doc.error = Some(Problem::new(
                ProblemType::Malformed,
                "the order expired before it was finalized",
            ));
        } else if before == "pending" {
            let mut all_valid = true;
            for authz in authzs {
                match effective_authz_status(&authz.row, now) {
                    "valid" => {}
                    "pending" | "processing" => all_valid = false,
                    other => {
                        let cause = authz.doc.challenges.iter().find_map(|c| c.error.clone());
                        order.row.status = "invalid".into();
                        order.doc.error = Some(cause.unwrap_or_else(|| {
                            Problem::new(
                                ProblemType::Unauthorized,
                                format!(
                                    "authorization for {} is {other}",
                                    authz.doc.identifier.value
                                ),
                            )
                        }));
                        all_valid = false;
                        break;
                    }
                }
            }
            if all_valid {
                order.row.status = "ready".into();
            }
        }
        if order.row.status == "invalid" && before != "invalid" {
            order.row.data = to_json(&order.doc)?;
            if self.store.update_order_if(&order.row, &before, now).await? {
                self.settled.order_recorded(&order);
            } else {
                // Someone else moved it: report what the store holds now.
                let row = self
                    .store
                    .order_by_id(&order.row.id)
                    .await?
                    .ok_or_else(|| CaError::Internal("order vanished".into()))?;
                let doc = from_json("order", &row.data)?;
                return Ok(Order { row, doc });
            }
        }
        Ok(order)
    }

    async fn load_authz(&self, id: &str) -> Result<Authz, CaError> {
        if let Some(settled) = self.settled.authz(id) {
            return Ok(settled);
        }
        let row = self
            .store
            .authz_by_id(id)
            .await?
            .ok_or_else(|| CaError::NotFound(format!("authorization {id}")))?;
        let doc = from_json("authorization", &row.data)?;
        Ok(Authz { row, doc })
    }

    /// Loads an authorization the account owns, with its current status.
    pub async fn authz(&self, account: &Account, id: &str) -> Result<Authz, CaError> {
        let mut authz = self.load_authz(id).await?;
        if authz.row.account_id != account.row.id {
            return Err(CaError::NotFound(format!("authorization {id}")));
        }
        authz.row.status = effective_authz_status(&authz.row, self.now()).to_string();
        Ok(authz)
    }

    /// Deactivates an authorization (RFC 8555 §7.5.2).
    pub async fn deactivate_authz(&self, account: &Account, id: &str) -> Result<Authz, CaError> {
        let mut authz = self.authz(account, id).await?;
        let before = authz.row.status.clone();
        if !matches!(before.as_str(), "pending" | "valid") {
            return Err(CaError::malformed(format!(
                "only pending or valid authorizations can be deactivated, this one is {before}"
            )));
        }
        authz.row.status = "deactivated".into();
        if !self.store.update_authz_if(&authz.row, &before).await? {
            return Err(CaError::malformed(
                "the authorization changed concurrently; fetch it and retry",
            ));
        }
        self.settled.authz_recorded(&authz);
        Ok(authz)
    }

    /// Challenge response (RFC 8555 §7.5.1): starts validation and waits a
    /// moment for it, so a fast peer gets the result in this response.
    pub async fn respond_challenge(
        self: &Arc<Self>,
        account: &Account,
        authz_id: &str,
        chall_id: &str,
    ) -> Result<(Authz, String), CaError> {
        let mut authz = self.authz(account, authz_id).await?;
        let idx = authz
            .doc
            .challenges
            .iter()
            .position(|c| c.id == chall_id)
            .ok_or_else(|| CaError::NotFound(format!("challenge {chall_id}")))?;
        match authz.row.status.as_str() {
            "pending" => {}
            // Already decided or under way: answering again is harmless.
            "valid" | "processing" | "invalid" => return Ok((authz, chall_id.to_string())),
            other => {
                return Err(CaError::malformed(format!(
                    "authorization is {other}; create a new order"
                )));
            }
        }
        // A client that keeps failing is stopped here, not only at its next
        // newOrder: authorizations it already holds must not each buy one
        // more validation past the limit.
        let failed = Txn::new(
            LimitName::FailedAuthorizationsPerDomainPerAccount,
            format!("{}:{}", account.row.id, authz.doc.identifier.value),
            Mode::Check,
        );
        self.limits_spend(&[failed], None).await?;
        // The store says `pending` until the outcome is recorded: a second
        // POST meanwhile must not start a second validation.
        let Some(claim) = ValidationClaim::take(self, authz_id) else {
            authz.doc.challenges[idx].status = "processing".into();
            authz.row.status = "processing".into();
            return Ok((authz, chall_id.to_string()));
        };
        let slot = self.va.try_reserve().ok_or_else(|| CaError::RateLimited {
            detail: format!(
                "the CA is running its maximum of {} validations; retry this challenge in {VALIDATION_BUSY_RETRY_SECS} s",
                self.policy.capacity.max_concurrent_validations
            ),
            retry_after_secs: VALIDATION_BUSY_RETRY_SECS,
        })?;
        // Validate first, record after: a validation that finishes within
        // the inline wait (nearly all) writes its outcome once, and the
        // client hears of nothing before that commit. Only one that
        // outlasts the wait records `processing` (durably, before the
        // response says so), so a restart resumes it. A crash before either
        // write leaves the authorization pending and the client, whose POST
        // got no answer, posts again. Two CA replicas sharing the store may
        // both validate one authorization; the first outcome recorded wins
        // (compare-and-set).
        let ra = Arc::clone(self);
        let key = Jwk::from_json(&account.doc.key)
            .map_err(|e| CaError::Internal(format!("stored account key: {e}")))?;
        let validating = authz.clone();
        let task = tokio::spawn(async move {
            let recorded = ra.run_validation(validating, idx, key).await;
            drop((slot, claim));
            recorded
        });
        // The outcome the validation just wrote is the answer: no need to
        // read it back.
        match tokio::time::timeout(INLINE_VALIDATION_WAIT, task).await {
            Ok(Ok(Some(mut done))) => {
                done.row.status = effective_authz_status(&done.row, self.now()).to_string();
                return Ok((done, chall_id.to_string()));
            }
            Ok(_) => {}
            Err(_) => {
                authz.doc.challenges[idx].status = "processing".into();
                authz.row.status = "processing".into();
                authz.row.data = to_json(&authz.doc)?;
                // Loses only to the outcome itself, recorded meanwhile.
                self.store.update_authz_if(&authz.row, "pending").await?;
            }
        }
        Ok((self.authz(account, authz_id).await?, chall_id.to_string()))
    }

    /// Validates one challenge and records the outcome on the authorization;
    /// returns the authorization as recorded (`None` when it could not be).
    async fn run_validation(&self, mut authz: Authz, idx: usize, key: Jwk) -> Option<Authz> {
        let chall = &authz.doc.challenges[idx];
        let job = Validation {
            identifier_type: authz.doc.identifier.id_type.as_str().to_string(),
            value: authz.doc.identifier.value.clone(),
            challenge: chall.kind.clone(),
            token: chall.token.clone(),
            key_authorization: key_authorization(&chall.token, &key),
        };
        let outcome = self.va.validate(&job).await;
        let now = self.now();
        let chall = &mut authz.doc.challenges[idx];
        match outcome {
            Ok(()) => {
                chall.status = "valid".into();
                chall.validated = Some(now);
                authz.row.status = "valid".into();
                authz.row.expires_at = now + self.policy.lifetimes.valid_authz_secs();
            }
            Err(e) => {
                tracing::info!(identifier = %job.value, challenge = %job.challenge, error = %e, "validation failed");
                chall.status = "invalid".into();
                chall.error = Some(crate::wfe::problem::problem_for(&e));
                authz.row.status = "invalid".into();
                let txn = Txn::new(
                    LimitName::FailedAuthorizationsPerDomainPerAccount,
                    format!("{}:{}", authz.row.account_id, job.value),
                    Mode::SpendOnly,
                );
                if let Err(e) = self.limits_spend(&[txn], None).await {
                    tracing::error!(error = %e, "cannot count the failed authorization");
                }
            }
        }
        authz.row.data = match to_json(&authz.doc) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode authorization");
                return None;
            }
        };
        let threshold = self.policy.pausing.consecutive_failures;
        let success = authz.row.status == "valid";
        match self
            .store
            .record_validation(&authz.row, &job.value, success, threshold, now)
            .await
        {
            Ok((recorded, paused)) => {
                if paused {
                    tracing::warn!(account = %authz.row.account_id, identifier = %job.value, threshold, "identifier paused");
                }
                if recorded {
                    self.settled.authz_recorded(&authz);
                }
                recorded.then_some(authz)
            }
            Err(e) => {
                tracing::error!(authz = %authz.row.id, error = %e, "cannot record validation outcome");
                None
            }
        }
    }

    /// finalize (RFC 8555 §7.4): checks the CSR, then signs synchronously.
    pub async fn finalize(
        &self,
        account: &Account,
        order_id: &str,
        csr_der: &[u8],
    ) -> Result<Order, CaError> {
        let (order, stored_status) = self.order_and_stored_status(account, order_id).await?;
        if order.row.status != "ready" {
            return Err(CaError::acme(
                ProblemType::OrderNotReady,
                format!(
                    "order is {}, not ready; complete its authorizations first",
                    order.row.status
                ),
            ));
        }
        let checked = csr::check(csr_der, &order.doc.identifiers, &self.policy.keys)?;
        let spki_hash = crate::issuer::sha256_hex(&checked.spki_der);
        let account_key =
            Jwk::from_json(&account.doc.key).map_err(|e| CaError::Internal(e.to_string()))?;
        if account_key.spki_der() == checked.spki_der {
            return Err(CaError::acme(
                ProblemType::BadCsr,
                "the CSR's key is the account key; use a separate certificate key",
            ));
        }
        let facts = self
            .store
            .finalize_facts(
                &spki_hash,
                &account.row.id,
                &names_column(&order.doc.identifiers),
                self.now() - RENEWAL_LOOKBACK_SECS,
            )
            .await?;
        if facts.key_blocked {
            return Err(CaError::acme(
                ProblemType::BadPublicKey,
                "this public key is blocked after a proven key compromise; generate a new key",
            ));
        }
        self.issue(
            account,
            order,
            &stored_status,
            checked.spki_der,
            facts.renewal,
        )
        .await
    }

    /// Signs the certificate of a ready order, then records it and moves the
    /// order to `valid` in one transaction, compared-and-set against the
    /// stored status: of two racing finalizations only one certificate is
    /// ever recorded or served (the loser's signature is discarded unseen).
    async fn issue(
        &self,
        account: &Account,
        order: Order,
        stored_status: &str,
        spki_der: Vec<u8>,
        renewal: bool,
    ) -> Result<Order, CaError> {
        let now = self.now();
        let profile = self
            .policy
            .profile(Some(&order.doc.profile))
            .ok_or_else(|| {
                CaError::Internal(format!(
                    "profile {} vanished from the policy",
                    order.doc.profile
                ))
            })?;
        let names: Vec<String> = order
            .doc
            .identifiers
            .iter()
            .map(|i| i.value.clone())
            .collect();
        // Certificate limits are checked at newOrder and spent here, before
        // signing. Boulder spends them after issuance without checking
        // (tolerating overshoot under a race); we check-and-spend atomically
        // so racing finalizations can never exceed the limit, and refund
        // when the issuance then fails. `account` owns the order (checked
        // when it was loaded), so it is not read again.
        let exempt = self
            .limit_exemptions(account, order.doc.replaces.as_deref(), renewal)
            .await?;
        let limit_txns = issuance_txns(&order.doc.identifiers, exempt);
        self.sign_and_record(
            order,
            stored_status,
            spki_der,
            profile,
            names,
            now,
            &limit_txns,
        )
        .await
    }

    /// Reserves the serial and records the intent, signs, then spends the
    /// certificate limits and records the certificate (and the intent's
    /// fulfilment) in one commit. A denial or a lost race discards the
    /// signed certificate unserved, but its DER stays in `ca_issuances`.
    #[allow(clippy::too_many_arguments)]
    async fn sign_and_record(
        &self,
        mut order: Order,
        stored_status: &str,
        spki_der: Vec<u8>,
        profile: &crate::policy::Profile,
        names: Vec<String>,
        now: i64,
        limit_txns: &[Txn],
    ) -> Result<Order, CaError> {
        let request = LeafRequest {
            names: names.clone(),
            spki_der,
            profile: profile.name.clone(),
            validity_secs: profile.validity_secs(),
        };
        // Boulder's order: reserve the serial and record the intent, then
        // sign. Every signature the key makes has a row, whatever follows.
        let spki_sha256 = crate::issuer::sha256_hex(&request.spki_der);
        let spki_sha256_for_audit = spki_sha256.clone();
        let signed = match self.pki.prepare(request, now) {
            Ok(prepared) => {
                let serial = prepared.serial_hex();
                self.store
                    .reserve_serial(&IssuanceRow {
                        serial: serial.clone(),
                        order_id: order.row.id.clone(),
                        account_id: order.row.account_id.clone(),
                        names: names.join(","),
                        spki_sha256,
                        profile: profile.name.clone(),
                        state: "intent".into(),
                        detail: None,
                        cert_der: None,
                        created_at: now,
                        updated_at: now,
                    })
                    .await?;
                // No signature without its audit record.
                let audited = self
                    .audit(
                        "signing",
                        serde_json::json!({
                            "serial": serial,
                            "names": names,
                            "account": order.row.account_id,
                            "order": order.row.id,
                            "spki_sha256": spki_sha256_for_audit,
                            "profile": profile.name,
                        })
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    )
                    .await;
                if let Err(e) = audited {
                    self.store
                        .close_issuance(&serial, "failed", &e.to_string(), None, now)
                        .await?;
                    return Err(e);
                }
                let signed = self.pki.sign(prepared);
                if let Err(e) = &signed {
                    self.store
                        .close_issuance(&serial, "failed", &e.to_string(), None, now)
                        .await?;
                }
                signed
            }
            Err(e) => Err(e),
        };
        let issued = match signed {
            Ok(issued) => issued,
            Err(e) => {
                tracing::error!(order = %order.row.id, error = %e, "issuance failed");
                order.row.status = "invalid".into();
                order.doc.error =
                    Some(Problem::new(ProblemType::ServerInternal, "issuance failed"));
                order.row.data = to_json(&order.doc)?;
                if self
                    .store
                    .update_order_if(&order.row, stored_status, now)
                    .await?
                {
                    self.settled.order_recorded(&order);
                }
                return Err(e);
            }
        };
        order.row.status = "valid".into();
        order.doc.certificate_serial = Some(issued.serial.clone());
        order.row.data = to_json(&order.doc)?;
        let cert = CertificateRow {
            serial: issued.serial.clone(),
            account_id: order.row.account_id.clone(),
            order_id: order.row.id.clone(),
            names: names.join(","),
            spki_sha256: issued.spki_sha256,
            not_before: issued.not_before,
            not_after: issued.not_after,
            profile: profile.name.clone(),
            chain_pem: issued.chain_pem,
            status: "valid".into(),
            revoked_at: None,
            revocation_reason: None,
            revoked_spki_sha256: None,
            issued_at: now,
            replaces: order.doc.replaces.clone(),
        };
        let guarded = Guarded::Certificate {
            cert: &cert,
            order: &order.row,
            expected: stored_status,
            now,
        };
        let recorded = self.limits_spend(limit_txns, Some(guarded)).await;
        let discarded = match &recorded {
            Ok(true) => None,
            Ok(false) => {
                Some("lost the race: the order was finalized by a concurrent request".to_string())
            }
            Err(e) => Some(format!("not recorded: {e}")),
        };
        if let Some(why) = discarded {
            // Signed but never served: keep the signature on the record.
            let der = certkeeper_proto::b64::encode(&issued.der);
            self.store
                .close_issuance(&cert.serial, "discarded", &why, Some(&der), now)
                .await?;
            tracing::info!(serial = %cert.serial, reason = %why, "signed certificate discarded");
            recorded?;
            return Err(CaError::acme(
                ProblemType::OrderNotReady,
                "order was finalized by a concurrent request",
            ));
        }
        self.settled.order_recorded(&order);
        self.settled.chain_recorded(&cert.serial, &cert.chain_pem);
        metrics::counter!("certkeeper_ca_issued_total", "profile" => profile.name.clone())
            .increment(1);
        tracing::info!(serial = %cert.serial, names = %cert.names, "issued");
        // The append starts now and runs while the client polls its order;
        // the download waits for it (the same once-per-serial cell), so no
        // client holds a certificate the log lacks, and the log's fsyncs
        // overlap the client's round trips instead of adding to finalize.
        if let Some(log) = self.tlog() {
            log.log_new(&cert.serial, issued.der.clone(), now);
        }
        Ok(order)
    }

    /// Ids of an account's most recent orders (RFC 8555 §7.1.2.1).
    pub async fn order_ids(&self, account: &Account) -> Result<Vec<String>, CaError> {
        Ok(self
            .store
            .order_ids_for_account(&account.row.id, 1000)
            .await?)
    }

    /// A certificate chain by serial, leaf first (any account may fetch it:
    /// certificates are public).
    pub async fn chain(&self, serial: &str) -> Result<Arc<str>, CaError> {
        if let Some(chain) = self.settled.chain(serial) {
            return Ok(chain);
        }
        Ok(Arc::from(self.certificate(serial).await?.chain_pem))
    }

    /// A certificate's row by serial.
    pub async fn certificate(&self, serial: &str) -> Result<CertificateRow, CaError> {
        self.store
            .certificate_by_serial(serial)
            .await?
            .ok_or_else(|| CaError::NotFound(format!("certificate {serial}")))
    }

    /// ARI (RFC 9773 §4.2): the suggested renewal window for a certID.
    pub async fn renewal_info(&self, cert_id: &str) -> Result<RenewalWindow, CaError> {
        let (aki, serial) = parse_cert_id(cert_id).map_err(CaError::malformed)?;
        if aki != self.pki.intermediate_key_id() {
            return Err(CaError::NotFound(
                "certificate not issued by this CA".into(),
            ));
        }
        let cert = self.certificate(&serial).await?;
        Ok(renewal_window(
            cert.not_before,
            cert.not_after,
            cert.status == "revoked",
            self.now(),
        ))
    }
}

/// The `names` column of a certificate for these identifiers (as `issue` writes it).
fn names_column(idents: &[Identifier]) -> String {
    idents
        .iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Unique CertificatesPerDomain keys of an order.
fn domain_keys(idents: &[Identifier]) -> std::collections::BTreeSet<String> {
    idents.iter().map(registered_domain).collect()
}

/// newOrder's limits (Boulder `ra.NewOrder` → `newOrderLimitTransactions`):
/// spend NewOrdersPerAccount; check failed authorizations and the
/// certificate limits that finalize will spend.
fn new_order_txns(account: &Account, idents: &[Identifier], exempt: Exemptions) -> Vec<Txn> {
    if exempt.all {
        return Vec::new();
    }
    let mut txns: Vec<Txn> = idents
        .iter()
        .map(|i| {
            Txn::new(
                LimitName::FailedAuthorizationsPerDomainPerAccount,
                format!("{}:{}", account.row.id, i.value.trim_start_matches("*.")),
                Mode::Check,
            )
        })
        .collect();
    if !exempt.renewal {
        txns.push(Txn::new(
            LimitName::NewOrdersPerAccount,
            account.row.id.clone(),
            Mode::CheckAndSpend,
        ));
    }
    txns.extend(certificate_txns(idents, exempt, Mode::Check));
    txns
}

/// finalize's limits: the certificate limits, spent.
fn issuance_txns(idents: &[Identifier], exempt: Exemptions) -> Vec<Txn> {
    if exempt.all {
        return Vec::new();
    }
    certificate_txns(idents, exempt, Mode::CheckAndSpend)
}

fn certificate_txns(idents: &[Identifier], exempt: Exemptions, mode: Mode) -> Vec<Txn> {
    let mut txns = Vec::new();
    if !exempt.renewal {
        for key in domain_keys(idents) {
            txns.push(Txn::new(LimitName::CertificatesPerDomain, key, mode));
        }
    }
    txns.push(Txn::new(
        LimitName::CertificatesPerFQDNSet,
        fqdn_set_key(idents),
        mode,
    ));
    txns
}

/// Authorization status as of `now` (RFC 8555 §7.1.6: expiry is implicit).
fn effective_authz_status(row: &AuthzRow, now: i64) -> &str {
    match row.status.as_str() {
        "pending" | "valid" if now >= row.expires_at => "expired",
        s => s,
    }
}

/// Let's Encrypt's pausing: an identifier this account failed to validate
/// too many times in a row takes no new orders until an operator unpauses it.
fn check_not_paused(account: &Account, facts: &NewOrderFacts) -> Result<(), CaError> {
    let Some((value, failures)) = &facts.paused else {
        return Ok(());
    };
    Err(CaError::acme(
        ProblemType::RateLimited,
        format!(
            "account {} is paused for {value} after {failures} consecutive failed validations; fix \
             validation, then ask the CA operator to run `certkeeper ca unpause --account {} --identifier {value}`",
            account.row.id, account.row.id
        ),
    ))
}

/// This process's claim on validating one authorization; released on drop.
struct ValidationClaim {
    ra: Arc<Ra>,
    authz_id: String,
}

impl ValidationClaim {
    /// The claim, or `None` when a validation of `authz_id` is under way here.
    fn take(ra: &Arc<Ra>, authz_id: &str) -> Option<ValidationClaim> {
        let mut validating = ra.validating.lock().unwrap_or_else(|p| p.into_inner());
        validating
            .insert(authz_id.to_string())
            .then(|| ValidationClaim {
                ra: Arc::clone(ra),
                authz_id: authz_id.to_string(),
            })
    }
}

impl Drop for ValidationClaim {
    fn drop(&mut self) {
        let mut validating = self.ra.validating.lock().unwrap_or_else(|p| p.into_inner());
        validating.remove(&self.authz_id);
    }
}

/// Resumes validations interrupted by a restart.
pub(super) async fn resume(ra: &Arc<Ra>) -> Result<(), CaError> {
    for row in ra.store.authzs_with_status("processing").await? {
        let doc: AuthzDoc = from_json("authorization", &row.data)?;
        let Some(idx) = doc.challenges.iter().position(|c| c.status == "processing") else {
            continue;
        };
        let account = ra.store.account_by_id(&row.account_id).await?;
        let Some(account) = account else { continue };
        let account_doc: crate::objects::AccountDoc = from_json("account", &account.data)?;
        let key = Jwk::from_json(&account_doc.key).map_err(|e| CaError::Internal(e.to_string()))?;
        tracing::info!(authz = %row.id, "resuming validation interrupted by a restart");
        let ra = Arc::clone(ra);
        tokio::spawn(async move {
            let slot = ra.va.reserve().await;
            let _ = ra.run_validation(Authz { row, doc }, idx, key).await;
            drop(slot);
        });
    }
    Ok(())
}
