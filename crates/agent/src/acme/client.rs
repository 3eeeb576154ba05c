//! Accounts and the complete order flow on top of instant-acme.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, CertificateIdentifier, ChallengeStatus,
    ExternalAccountKey, Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, PublicKeyData};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use tracing::{debug, warn};
use x509_parser::extensions::GeneralName;

use super::error::{AcmeError, FailedAuthorization, Step};
use super::http::{RetryAfterCell, TimedHttpClient, TlogLinks};
use super::key::{CertificateKey, KeyAlgorithm};
use super::solver::{PendingChallenge, Solver, challenge_name};

/// How far in the future a leaf's notBefore may be, in seconds, and still
/// be accepted: clocks of a CA and an agent host disagree by seconds to a
/// few minutes even with NTP, and CAs backdate by about that much for the
/// same reason. Beyond it, a client that checks validity would refuse the
/// certificate, so it must not be deployed.
pub const CLOCK_SKEW_ALLOWANCE: i64 = 5 * 60;

/// Where the CA is and how to reach it.
#[derive(Debug, Clone)]
pub struct AcmeDirectory {
    /// The directory URL, e.g. `https://127.0.0.1:14000/dir`.
    pub url: String,
    /// PEM file with the roots that sign the CA's HTTPS certificate; `None`
    /// uses the platform's trust store.
    pub root_pem: Option<PathBuf>,
    /// Deadline for each HTTP request (headers and body).
    pub request_timeout: Duration,
}

impl AcmeDirectory {
    /// A directory with a 30 s request timeout and platform trust.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            root_pem: None,
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Trusts the roots in `path` (every certificate in the file) for the CA's HTTPS.
    pub fn with_root_pem(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_pem = Some(path.into());
        self
    }

    fn builder(
        &self,
    ) -> Result<(instant_acme::AccountBuilder, RetryAfterCell, TlogLinks), AcmeError> {
        let allow_http = self.url.starts_with("http://");
        let retry_after = RetryAfterCell::default();
        let tlog_links = TlogLinks::default();
        let http = TimedHttpClient::new(
            self.root_pem.as_deref(),
            allow_http,
            self.request_timeout,
            retry_after.clone(),
            tlog_links.clone(),
        )?;
        Ok((
            Account::builder_with_http(Box::new(http)),
            retry_after,
            tlog_links,
        ))
    }
}

/// External account binding (RFC 8555 §7.3.4), for CAs that require one.
#[derive(Clone)]
pub struct ExternalAccountBinding {
    /// The key identifier the CA issued.
    pub key_id: String,
    /// The raw (already base64-decoded) HMAC key.
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("key_id", &self.key_id)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// Options for registering a new account.
#[derive(Debug, Clone, Default)]
pub struct NewAccountOptions {
    /// Contact URLs, e.g. `mailto:ops@example.com`.
    pub contact: Vec<String>,
    /// External account binding, if the CA requires it.
    pub eab: Option<ExternalAccountBinding>,
}

/// How fast to poll the CA while it validates and issues.
///
/// The defaults poll quickly so measured latency is the server's, not ours;
/// the CA's `Retry-After` overrides them when present.
#[derive(Debug, Clone, Copy)]
pub struct PollPolicy {
    /// Wait before the first poll.
    pub initial_delay: Duration,
    /// Multiplier applied to the delay after each poll.
    pub backoff: f32,
    /// Give up waiting after this long (per wait: ready, then certificate).
    pub timeout: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            // 20, 26, 34, 44, 57, 74, 96 ms...: a fast CA is seen within
            // one short step, a slow one is not hammered for long.
            initial_delay: Duration::from_millis(20),
            backoff: 1.3,
            timeout: Duration::from_secs(60),
        }
    }
}

impl PollPolicy {
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(self.initial_delay)
            .backoff(self.backoff)
            .timeout(self.timeout)
    }
}

/// Which key the certificate gets.
#[derive(Debug, Clone)]
pub enum KeyChoice {
    /// A fresh key of this algorithm (the default is ECDSA P-256).
    Generate(KeyAlgorithm),
    /// Reuse this key, e.g. when clients pin it.
    Reuse(CertificateKey),
}

impl Default for KeyChoice {
    fn default() -> Self {
        Self::Generate(KeyAlgorithm::default())
    }
}

/// One certificate request.
#[derive(Debug, Clone, Default)]
pub struct OrderRequest {
    /// DNS names (`*.` for wildcards) or IP addresses; the first is the main name.
    pub names: Vec<String>,
    /// An ACME profile advertised in the directory's `meta.profiles`.
    pub profile: Option<String>,
    /// ARI: the certificate this order replaces (RFC 9773).
    pub replaces: Option<CertificateIdentifier<'static>>,
    /// Key for the new certificate.
    pub key: KeyChoice,
    /// Polling behaviour.
    pub poll: PollPolicy,
}

impl OrderRequest {
    /// A request for `names` with a fresh P-256 key and default polling.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            names: names.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Where the time of one order went, to tell the CA's latency from ours.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimings {
    /// `newOrder` round trip.
    pub new_order: Duration,
    /// Fetching authorizations, presenting responses, and the challenge POSTs.
    pub challenges: Duration,
    /// Waiting for the CA to validate (order `ready`).
    pub validation: Duration,
    /// The `finalize` round trip.
    pub finalize: Duration,
    /// Waiting for issuance and downloading the chain.
    pub download: Duration,
}

/// A completed order's chain, whoever holds the key: what
/// [`AcmeAccount::complete_order_csr`] returns for a CSR made elsewhere
/// (the DNS certificate secondary holds no private key).
#[derive(Debug, Clone)]
pub struct IssuedChain {
    /// The order URL, for the issuance ledger and the CA's support.
    pub order_url: String,
    /// The names requested.
    pub names: Vec<String>,
    /// The chain as the CA sent it (PEM, leaf first).
    pub chain_pem: String,
    /// The chain in DER, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
    /// Time spent in each step.
    pub timings: StepTimings,
    /// Where the CA says the certificate is logged (its download's
    /// `Link: <…>;rel="tlog-entry"`), when it said so.
    pub tlog_entry: Option<String>,
}

impl IssuedChain {
    fn with_key(self, key: CertificateKey) -> IssuedCertificate {
        IssuedCertificate {
            order_url: self.order_url,
            names: self.names,
            chain_pem: self.chain_pem,
            chain: self.chain,
            key,
            not_before: self.not_before,
            not_after: self.not_after,
            timings: self.timings,
            tlog_entry: self.tlog_entry,
        }
    }
}

/// The result of a completed order.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The order URL, for the issuance ledger and the CA's support.
    pub order_url: String,
    /// The names requested.
    pub names: Vec<String>,
    /// The chain as the CA sent it (PEM, leaf first).
    pub chain_pem: String,
    /// The chain in DER, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The certificate's private key (never log it).
    pub key: CertificateKey,
    /// Start of the leaf's validity.
    pub not_before: OffsetDateTime,
    /// End of the leaf's validity.
    pub not_after: OffsetDateTime,
    /// Time spent in each step.
    pub timings: StepTimings,
    /// Where the CA says the certificate is logged (its download's
    /// `Link: <…>;rel="tlog-entry"`), when it said so.
    pub tlog_entry: Option<String>,
}

/// A registered ACME account bound to one CA.
///
/// Cheap to clone: clones share the HTTP connection pool.
#[derive(Clone)]
pub struct AcmeAccount {
    account: Account,
    directory_url: String,
    retry_after: RetryAfterCell,
    tlog_links: TlogLinks,
}

impl std::fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeAccount")
            .field("id", &self.account.id())
            .field("directory", &self.directory_url)
            .finish()
    }
}

impl AcmeAccount {
    /// Registers a new account (terms of service agreed) and returns the
    /// credentials to persist; they hold the account's private key.
    pub async fn create(
        directory: &AcmeDirectory,
        options: &NewAccountOptions,
    ) -> Result<(Self, AccountCredentials), AcmeError> {
        let contact: Vec<&str> = options.contact.iter().map(String::as_str).collect();
        let eab = options
            .eab
            .as_ref()
            .map(|eab| ExternalAccountKey::new(eab.key_id.clone(), &eab.hmac_key));
        let (builder, retry_after, tlog_links) = directory.builder()?;
        let (account, credentials) = builder
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                directory.url.clone(),
                eab.as_ref(),
            )
            .await
            .map_err(account_error(directory, &retry_after))?;
        debug!(account = account.id(), directory = %directory.url, "ACME account registered");
        Ok((
            Self {
                account,
                directory_url: directory.url.clone(),
                retry_after,
                tlog_links,
            },
            credentials,
        ))
    }

    /// Restores an account from persisted credentials (fetches the directory,
    /// no account request).
    pub async fn load(
        directory: &AcmeDirectory,
        credentials: AccountCredentials,
    ) -> Result<Self, AcmeError> {
        let (builder, retry_after, tlog_links) = directory.builder()?;
        let account = builder
            .from_credentials(credentials)
            .await
            .map_err(account_error(directory, &retry_after))?;
        Ok(Self {
            account,
            directory_url: directory.url.clone(),
            retry_after,
            tlog_links,
        })
    }

    /// The account URL.
    pub fn id(&self) -> &str {
        self.account.id()
    }

    /// The underlying instant-acme account, for ARI, revocation and key rollover.
    pub fn inner(&self) -> &Account {
        &self.account
    }

    /// Runs one complete order: new order, challenges via `solver`,
    /// finalize with our own CSR, download and check the chain.
    ///
    /// Equivalent to [`create_order`](Self::create_order) followed by
    /// [`complete_order`](Self::complete_order), minus the chance to persist
    /// the order in between: use those two when a restart must resume it.
    pub async fn issue(
        &self,
        request: &OrderRequest,
        solver: &dyn Solver,
    ) -> Result<IssuedCertificate, AcmeError> {
        let names = request.names.join(",");
        let csr_err = |reason: String| AcmeError::Csr {
            names: names.clone(),
            reason,
        };
        // Build the key and CSR before talking to the CA: a bad name or key
        // then fails without spending an order against the CA's limits.
        let key = match &request.key {
            KeyChoice::Reuse(key) => key.clone(),
            KeyChoice::Generate(
                alg @ (KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096),
            ) => {
                // RSA generation takes tens of ms to seconds: keep it off the reactor.
                let alg = *alg;
                tokio::task::spawn_blocking(move || CertificateKey::generate(alg))
                    .await
                    .map_err(|e| csr_err(e.to_string()))?
                    .map_err(|e| csr_err(e.to_string()))?
            }
            KeyChoice::Generate(alg) => {
                CertificateKey::generate(*alg).map_err(|e| csr_err(e.to_string()))?
            }
        };
        let csr = SignedCsr::new(&request.names, &key)?;

        let mark = Instant::now();
        let order = self.new_order(request).await?;
        let timings = StepTimings {
            new_order: mark.elapsed(),
            ..StepTimings::default()
        };
        self.drive(
            order,
            &request.names,
            &csr,
            solver,
            &request.poll,
            Drive::Fresh(timings),
            unix_now(),
        )
        .await
        .map(|chain| chain.with_key(key))
    }

    /// Creates the order (`newOrder`: identifiers, profile, `replaces`) and
    /// returns its URL without driving it.
    ///
    /// The caller persists the URL together with the certificate key before
    /// calling [`complete_order`](Self::complete_order), so that a restart
    /// (even after `kill -9`) resumes this order instead of spending another
    /// one against the CA's rate limits. `request.key` and `request.poll` are
    /// not used here. `replaces` is dropped when the CA has no `renewalInfo`
    /// in its directory (RFC 9773 §5: only send it to CAs that offer ARI).
    pub async fn create_order(&self, request: &OrderRequest) -> Result<String, AcmeError> {
        self.retry_after.clear();
        let order = self
            .new_order(request)
            .await
            .map_err(|e| with_retry_after(&self.retry_after, e))?;
        Ok(order.url().to_owned())
    }

    /// Loads the order at `order_url` and drives it to a certificate from
    /// wherever it is.
    ///
    /// - `pending`: presents challenges through `solver` for the
    ///   authorizations still pending (valid ones are skipped, challenges
    ///   already being validated are not triggered again), then finalizes;
    /// - `ready`: finalizes with a CSR for `names` signed by `key`;
    /// - `processing` / `valid`: only waits for and downloads the chain, so
    ///   an order finalized before a crash is never finalized again;
    /// - `invalid`: [`AcmeError::OrderInvalid`] with the CA's reasons.
    ///
    /// `names` and `key` must be the ones the order was created for and
    /// finalized with; the order's identifiers are checked against `names`
    /// before anything is sent, and the leaf against `key` after download.
    /// The leaf is refused ([`AcmeError::CertificateNotCurrent`]) unless it
    /// is valid at `now` (unix seconds, the caller's clock; validity is
    /// judged against it, not the wall clock, and it is taken as the time
    /// of download: a long poll makes the notAfter check at most that much
    /// lenient).
    ///
    /// On an error, [`AcmeError::needs_new_order`] says whether this order
    /// is dead (discard it) or may be resumed again later.
    pub async fn complete_order(
        &self,
        order_url: &str,
        names: &[String],
        key: &CertificateKey,
        solver: &dyn Solver,
        poll: &PollPolicy,
        now: i64,
    ) -> Result<IssuedCertificate, AcmeError> {
        self.retry_after.clear();
        self.complete_order_inner(order_url, names, key, solver, poll, now)
            .await
            .map_err(|e| with_retry_after(&self.retry_after, e))
    }

    async fn complete_order_inner(
        &self,
        order_url: &str,
        names: &[String],
        key: &CertificateKey,
        solver: &dyn Solver,
        poll: &PollPolicy,
        now: i64,
    ) -> Result<IssuedCertificate, AcmeError> {
        let csr = SignedCsr::new(names, key)?;
        self.resume(order_url, names, &csr, solver, poll, now)
            .await
            .map(|chain| chain.with_key(key.clone()))
    }

    /// [`complete_order`](Self::complete_order) for a CSR made by whoever
    /// holds the key (`csr_der`, self-signature already checked by the
    /// caller): finalizes with it as sent, and checks the leaf against the
    /// CSR's public key.
    pub async fn complete_order_csr(
        &self,
        order_url: &str,
        names: &[String],
        csr_der: &[u8],
        solver: &dyn Solver,
        poll: &PollPolicy,
        now: i64,
    ) -> Result<IssuedChain, AcmeError> {
        self.retry_after.clear();
        let csr = SignedCsr::foreign(names, csr_der)?;
        self.resume(order_url, names, &csr, solver, poll, now)
            .await
            .map_err(|e| with_retry_after(&self.retry_after, e))
    }

    async fn resume(
        &self,
        order_url: &str,
        names: &[String],
        csr: &SignedCsr,
        solver: &dyn Solver,
        poll: &PollPolicy,
        now: i64,
    ) -> Result<IssuedChain, AcmeError> {
        let order = self
            .account
            .order(order_url.to_owned())
            .await
            .map_err(|source| AcmeError::Protocol {
                step: Step::LoadOrder,
                names: names.join(","),
                source: Box::new(source),
            })?;
        self.drive(order, names, csr, solver, poll, Drive::Resumed, now)
            .await
    }

    /// Asks the CA when to renew `leaf` (RFC 9773 ACME Renewal Information).
    ///
    /// Returns the suggested window `(start, end)` and how long to wait
    /// before asking again (the CA's `Retry-After`, as sent: the caller
    /// clamps it to its own minimum and maximum poll interval). `Ok(None)`
    /// when the CA's directory has no `renewalInfo` resource: renew on the
    /// certificate's own schedule then.
    pub async fn renewal_window(
        &self,
        leaf: &CertificateDer<'_>,
    ) -> Result<Option<(OffsetDateTime, OffsetDateTime, Duration)>, AcmeError> {
        let id = cert_id(leaf)?;
        match self.account.renewal_info(&id).await {
            Ok((info, retry_after)) => {
                let window = info.suggested_window;
                // RFC 9773 §4.2: a window whose end is not after its start is invalid.
                if window.end <= window.start {
                    return Err(AcmeError::BadRenewalInfo {
                        cert_id: id.to_string(),
                        reason: format!(
                            "suggested window ends ({}) before it starts ({})",
                            window.end, window.start
                        ),
                    });
                }
                Ok(Some((window.start, window.end, retry_after)))
            }
            // instant-acme checks the directory before sending anything.
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(source) => Err(AcmeError::Protocol {
                step: Step::RenewalInfo,
                names: id.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Sends `newOrder` for `request`; the shared first half of
    /// [`issue`](Self::issue) and [`create_order`](Self::create_order).
    async fn new_order(&self, request: &OrderRequest) -> Result<Order, AcmeError> {
        let names = request.names.join(",");
        if request.names.is_empty() {
            return Err(AcmeError::Csr {
                names,
                reason: "no names requested".into(),
            });
        }
        // The same check the CSR will get later, so a name we could never
        // finalize does not cost an order.
        CertificateParams::new(request.names.clone()).map_err(|e| AcmeError::Csr {
            names: names.clone(),
            reason: e.to_string(),
        })?;
        let identifiers: Vec<Identifier> = request
            .names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => Identifier::Dns(name.clone()),
            })
            .collect();
        let build = |with_replaces: bool| {
            let mut new_order = NewOrder::new(&identifiers);
            if let Some(profile) = &request.profile {
                new_order = new_order.profile(profile);
            }
            if let Some(replaces) = request.replaces.as_ref().filter(|_| with_replaces) {
                new_order = new_order.replaces(replaces.clone());
            }
            new_order
        };
        let result = match self.account.new_order(&build(true)).await {
            // Refused locally, nothing was sent: the CA has no ARI.
            Err(instant_acme::Error::Unsupported(what)) if request.replaces.is_some() => {
                debug!(%names, unsupported = what, "CA has no ARI; ordering without `replaces`");
                self.account.new_order(&build(false)).await
            }
            other => other,
        };
        let order = result.map_err(|source| AcmeError::Protocol {
            step: Step::NewOrder,
            names: names.clone(),
            source: Box::new(source),
        })?;
        debug!(order_url = order.url(), %names, "order created");
        Ok(order)
    }

    /// Drives `order` from its current status to a checked certificate.
    #[allow(clippy::too_many_arguments)]
    async fn drive(
        &self,
        mut order: Order,
        requested: &[String],
        csr: &SignedCsr,
        solver: &dyn Solver,
        poll: &PollPolicy,
        how: Drive,
        now: i64,
    ) -> Result<IssuedChain, AcmeError> {
        let names = requested.join(",");
        let order_url = order.url().to_owned();
        let proto = |step: Step| {
            let names = names.clone();
            move |source| AcmeError::Protocol {
                step,
                names,
                source: Box::new(source),
            }
        };
        let (mut timings, resumed) = match how {
            Drive::Fresh(timings) => (timings, false),
            Drive::Resumed => (StepTimings::default(), true),
        };
        let status = order.state().status;
        if resumed {
            debug!(%order_url, %names, ?status, "resuming order");
        }
        match status {
            OrderStatus::Invalid => {
                let problem = order.state().error.clone().map(Box::new);
                return Err(self.invalid_order(&mut order, &names, problem).await);
            }
            // Before finalizing a persisted order, make sure it is the one
            // we think: a CSR for other names would make the CA reject it.
            OrderStatus::Pending | OrderStatus::Ready if resumed => {
                check_identifiers(&mut order, requested, &names).await?;
            }
            _ => {}
        }

        if status == OrderStatus::Pending {
            // Always withdraw what we published, even when validation failed.
            let mut presented = Vec::new();
            let authorized = self
                .authorize(
                    &mut order,
                    solver,
                    requested,
                    &names,
                    poll,
                    &mut presented,
                    &mut timings,
                )
                .await;
            for challenge in &presented {
                if let Err(e) = solver.cleanup(challenge).await {
                    warn!(name = %challenge.identifier, error = %e, "challenge cleanup failed");
                }
            }
            authorized?;
        }

        if order.state().status == OrderStatus::Ready {
            let mark = Instant::now();
            order
                .finalize_csr(&csr.der)
                .await
                .map_err(proto(Step::Finalize))?;
            timings.finalize = mark.elapsed();
            crate::faults::crash_point("finalized");
        }

        // Pebble and Boulder may already be `valid` in the finalize response;
        // `certificate()` then downloads at once instead of sleeping first.
        let started = Instant::now();
        let chain_pem = match order.certificate().await {
            Ok(Some(pem)) => pem,
            Ok(None) => order.poll_certificate(&poll.retry()).await.map_err(|e| {
                wait_error(
                    e,
                    Step::PollCertificate,
                    &names,
                    &order_url,
                    started.elapsed(),
                )
            })?,
            Err(e) => return Err(proto(Step::PollCertificate)(e)),
        };
        timings.download = started.elapsed();
        let tlog_entry = order
            .state()
            .certificate
            .as_deref()
            .and_then(|url| self.tlog_links.take(url));

        let bad = |reason: String| AcmeError::BadCertificate {
            names: names.clone(),
            order_url: order_url.clone(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("chain is not valid PEM: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| bad("empty certificate chain".into()))?;
        let (not_before, not_after) = check_leaf(leaf, &csr.spki, requested).map_err(bad)?;
        let (not_before_unix, not_after_unix) =
            (not_before.unix_timestamp(), not_after.unix_timestamp());
        if !valid_at(not_before_unix, not_after_unix, now) {
            warn!(%order_url, %names, not_before = %not_before, not_after = %not_after, now,
                "refusing a certificate that is not valid now");
            return Err(AcmeError::CertificateNotCurrent {
                names,
                order_url,
                not_before: not_before_unix,
                not_after: not_after_unix,
                now,
            });
        }

        Ok(IssuedChain {
            order_url,
            names: requested.to_vec(),
            chain_pem,
            chain,
            not_before,
            not_after,
            timings,
            tlog_entry,
        })
    }

    /// Presents every pending authorization's challenge, then tells the CA
    /// to validate them all and waits until the order is `ready`.
    #[allow(clippy::too_many_arguments)]
    async fn authorize(
        &self,
        order: &mut Order,
        solver: &dyn Solver,
        requested: &[String],
        names: &str,
        poll: &PollPolicy,
        presented: &mut Vec<PendingChallenge>,
        timings: &mut StepTimings,
    ) -> Result<(), AcmeError> {
        let mark = Instant::now();
        let kind = solver.challenge_type();
        let kind_name = challenge_name(&kind);
        let proto = |step: Step| {
            let names = names.to_owned();
            move |source| AcmeError::Protocol {
                step,
                names,
                source: Box::new(source),
            }
        };

        // Phase 1: read every authorization and decide what to present,
        // presenting nothing yet: one the order never asked for must stop
        // the order before any response is published for any name.
        let order_url = order.url().to_owned();
        let mut to_present = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(proto(Step::Authorization))?;
            let name = authz.identifier().to_string();
            if !is_requested(&name, requested) {
                return Err(AcmeError::UnrequestedIdentifier {
                    identifier: name,
                    names: names.to_owned(),
                    order_url,
                });
            }
            match authz.status {
                // Reused from an earlier order: nothing to prove.
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => {
                    let problem = authz.challenges.iter().find_map(|c| c.error.clone());
                    return Err(AcmeError::Authorization(Box::new(FailedAuthorization {
                        name,
                        status,
                        problem,
                    })));
                }
            }
            let offered = authz
                .challenges
                .iter()
                .map(|c| challenge_name(&c.r#type))
                .collect::<Vec<_>>()
                .join(", ");
            let Some(challenge) = authz.challenge(kind.clone()) else {
                return Err(AcmeError::ChallengeUnavailable {
                    name,
                    challenge: kind_name,
                    offered,
                });
            };
            let identifier = challenge.identifier();
            let (identifier, is_ip) = match identifier.identifier {
                Identifier::Dns(dns) => (dns.clone(), false),
                Identifier::Ip(ip) => (ip.to_string(), true),
                other => (format!("{other:?}"), false),
            };
            let wildcard = challenge.identifier().wildcard;
            let key_auth = challenge.key_authorization();
            let mut digest = [0u8; 32];
            digest.copy_from_slice(key_auth.digest().as_ref());
            let pending = PendingChallenge {
                identifier,
                wildcard,
                is_ip,
                token: challenge.token.clone(),
                key_authorization: key_auth.as_str().to_owned(),
                digest,
                dns_value: key_auth.dns_value(),
            };
            to_present.push((name, pending));
        }

        // Phase 2: publish all responses, then wait for them once (DNS
        // propagation is paid per order, not per name), before triggering any.
        let to_validate = !to_present.is_empty();
        for (name, pending) in to_present {
            solver
                .present(&pending)
                .await
                .map_err(|source| AcmeError::Solver {
                    name,
                    challenge: kind_name.clone(),
                    source,
                })?;
            presented.push(pending);
        }
        if to_validate {
            solver
                .wait_until_visible()
                .await
                .map_err(|source| AcmeError::Solver {
                    name: names.to_owned(),
                    challenge: kind_name.clone(),
                    source,
                })?;
        }

        // Phase 3: the authorizations are cached in the order now, so this
        // pass makes only the challenge POSTs.
        if to_validate {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(proto(Step::Authorization))?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                let name = authz.identifier().to_string();
                if let Some(mut challenge) = authz.challenge(kind.clone()) {
                    // A resumed order may have asked already: the CA is
                    // validating (it sees our response again), and a second
                    // POST would be refused by some CAs.
                    if challenge.status != ChallengeStatus::Pending {
                        continue;
                    }
                    challenge
                        .set_ready()
                        .await
                        .map_err(|source| AcmeError::Protocol {
                            step: Step::ChallengeReady,
                            names: name,
                            source: Box::new(source),
                        })?;
                }
            }
        }

        timings.challenges = mark.elapsed();
        if order.state().status == OrderStatus::Ready {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.wait_ready(order, names, poll).await;
        timings.validation = started.elapsed();
        result
    }

    async fn wait_ready(
        &self,
        order: &mut Order,
        names: &str,
        poll: &PollPolicy,
    ) -> Result<(), AcmeError> {
        let started = Instant::now();
        let order_url = order.url().to_owned();
        match order.poll_ready(&poll.retry()).await {
            Ok(OrderStatus::Ready) => Ok(()),
            Ok(_) => Err(self.invalid_order(order, names, None).await),
            Err(instant_acme::Error::Api(problem)) => Err(self
                .invalid_order(order, names, Some(Box::new(problem)))
                .await),
            Err(e) => Err(wait_error(
                e,
                Step::PollReady,
                names,
                &order_url,
                started.elapsed(),
            )),
        }
    }

    /// Collects the failed authorizations' reasons: an invalid order alone
    /// says nothing about which name failed or why.
    async fn invalid_order(
        &self,
        order: &mut Order,
        names: &str,
        problem: Option<Box<instant_acme::Problem>>,
    ) -> AcmeError {
        let mut failed = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            // Best effort: the cached state predates validation.
            if authz.refresh().await.is_err() {
                continue;
            }
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            failed.push(FailedAuthorization {
                name: authz.identifier().to_string(),
                status: authz.status,
                problem: authz.challenges.iter().find_map(|c| c.error.clone()),
            });
        }
        AcmeError::OrderInvalid {
            names: names.to_owned(),
            order_url: order.url().to_owned(),
            problem,
            failed,
        }
    }
}

/// The wall clock in unix seconds, for [`AcmeAccount::issue`] only: it is
/// the one-shot entry point (bench, tests, `certkeeper` one-offs) where the
/// wall clock is the right one. The agent passes its own clock's `now` to
/// [`AcmeAccount::complete_order`].
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// How [`AcmeAccount::drive`] got its order.
enum Drive {
    /// Just created by `issue`, with the `newOrder` time already measured.
    Fresh(StepTimings),
    /// Loaded from a persisted URL; its identifiers must be checked.
    Resumed,
}

/// A CSR for the requested names, plus the key's SubjectPublicKeyInfo to
/// check the issued leaf against.
struct SignedCsr {
    der: Vec<u8>,
    spki: Vec<u8>,
}

impl SignedCsr {
    fn new(names: &[String], key: &CertificateKey) -> Result<Self, AcmeError> {
        let csr_err = |reason: String| AcmeError::Csr {
            names: names.join(","),
            reason,
        };
        if names.is_empty() {
            return Err(csr_err("no names requested".into()));
        }
        let key_pair = key.key_pair().map_err(|e| csr_err(e.to_string()))?;
        let mut params =
            CertificateParams::new(names.to_vec()).map_err(|e| csr_err(e.to_string()))?;
        // The CA takes names from the SANs; an empty subject is what
        // Let's Encrypt recommends and avoids CN length limits.
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&key_pair)
            .map_err(|e| csr_err(e.to_string()))?;
        Ok(Self {
            der: csr.der().to_vec(),
            spki: key_pair.subject_public_key_info(),
        })
    }

    /// A CSR someone else signed, sent as it is; only its public key is
    /// read here (to check the leaf against).
    fn foreign(names: &[String], der: &[u8]) -> Result<Self, AcmeError> {
        use x509_parser::prelude::FromDer;
        let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
            .map_err(|e| AcmeError::Csr {
                names: names.join(","),
                reason: format!("the CSR does not parse: {e}"),
            })?;
        Ok(Self {
            der: der.to_vec(),
            spki: csr.certification_request_info.subject_pki.raw.to_vec(),
        })
    }
}

/// The ARI certificate identifier (RFC 9773 §4.1: base64url AKI keyIdentifier
/// "." base64url serial) of `leaf`, for [`OrderRequest::replaces`] and
/// [`AcmeAccount::renewal_window`].
pub fn cert_id(leaf: &CertificateDer<'_>) -> Result<CertificateIdentifier<'static>, AcmeError> {
    CertificateIdentifier::try_from(leaf)
        .map(CertificateIdentifier::into_owned)
        .map_err(|reason| AcmeError::CertificateId { reason })
}

/// One name as the CA and the leaf spell it: DNS names are case-insensitive,
/// IP addresses have one canonical text form.
fn normalize_name(name: &str) -> String {
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// Whether `identifier` (as an authorization spells it, `*.` for wildcards)
/// is one of the `requested` names.
fn is_requested(identifier: &str, requested: &[String]) -> bool {
    let identifier = normalize_name(identifier);
    requested
        .iter()
        .any(|name| normalize_name(name) == identifier)
}

/// Refuses to drive a persisted order whose identifiers are not `requested`.
async fn check_identifiers(
    order: &mut Order,
    requested: &[String],
    names: &str,
) -> Result<(), AcmeError> {
    let order_url = order.url().to_owned();
    let mut have = BTreeSet::new();
    let mut identifiers = order.identifiers();
    while let Some(identifier) = identifiers.next().await {
        let identifier = identifier.map_err(|source| AcmeError::Protocol {
            step: Step::Authorization,
            names: names.to_owned(),
            source: Box::new(source),
        })?;
        have.insert(normalize_name(&identifier.to_string()));
    }
    let want: BTreeSet<String> = requested.iter().map(|n| normalize_name(n)).collect();
    // Everything we asked for plus more: the CA added an identifier, which
    // is its fault, not a stale order of ours (that one is OrderMismatch).
    if want.is_subset(&have)
        && let Some(extra) = have.difference(&want).next()
    {
        return Err(AcmeError::UnrequestedIdentifier {
            identifier: extra.clone(),
            names: names.to_owned(),
            order_url,
        });
    }
    if have != want {
        return Err(AcmeError::OrderMismatch {
            order_url,
            order_names: have.into_iter().collect::<Vec<_>>().join(","),
            names: names.to_owned(),
        });
    }
    Ok(())
}

fn wait_error(
    e: instant_acme::Error,
    step: Step,
    names: &str,
    order_url: &str,
    waited: Duration,
) -> AcmeError {
    match e {
        instant_acme::Error::Timeout(_) => AcmeError::Timeout {
            step,
            names: names.to_owned(),
            order_url: order_url.to_owned(),
            waited,
        },
        source => AcmeError::Protocol {
            step,
            names: names.to_owned(),
            source: Box::new(source),
        },
    }
}

/// Refuses a leaf that is not for our key or misses a requested name: such
/// a certificate would take the service down once deployed.
fn check_leaf(
    leaf: &CertificateDer<'_>,
    our_spki: &[u8],
    names: &[String],
) -> Result<(OffsetDateTime, OffsetDateTime), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("leaf does not parse: {e}"))?;
    if cert.public_key().raw != our_spki {
        return Err("leaf public key is not the key we sent in the CSR".into());
    }
    let mut have = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for general_name in &san.value.general_names {
            match general_name {
                GeneralName::DNSName(dns) => {
                    have.insert(dns.to_ascii_lowercase());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        have.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let missing: Vec<&str> = names
        .iter()
        .filter(|name| !have.contains(&normalize_name(name)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(format!("leaf lacks names: {}", missing.join(", ")));
    }
    let validity = cert.validity();
    Ok((
        validity.not_before.to_datetime(),
        validity.not_after.to_datetime(),
    ))
}

/// Whether a leaf with this validity (unix seconds) may be deployed at
/// `now`: not expired, and valid from no later than
/// [`CLOCK_SKEW_ALLOWANCE`] ahead. Pure, so the caller's clock decides.
fn valid_at(not_before: i64, not_after: i64, now: i64) -> bool {
    not_after > now && not_before <= now.saturating_add(CLOCK_SKEW_ALLOWANCE)
}

/// Maps a failed account request (register or load) to our error, with the
/// CA's Retry-After when it sent one.
fn account_error<'a>(
    directory: &'a AcmeDirectory,
    retry_after: &'a RetryAfterCell,
) -> impl FnOnce(instant_acme::Error) -> AcmeError + 'a {
    move |source| {
        let e = AcmeError::Protocol {
            step: Step::Account,
            names: directory.url.clone(),
            source: Box::new(source),
        };
        with_retry_after(retry_after, e)
    }
}

/// Attaches the CA's Retry-After to the error of the step that drew a 429
/// or 503, so the caller can obey it.
fn with_retry_after(cell: &RetryAfterCell, e: AcmeError) -> AcmeError {
    match cell.take() {
        Some(at) => AcmeError::RetryLater {
            retry_after: at
                .at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default(),
            capped_from: at.capped_from,
            source: Box::new(e),
        },
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::KeyPair;

    fn leaf(names: &[&str], key: &KeyPair) -> CertificateDer<'static> {
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.self_signed(key).expect("cert").der().clone()
    }

    /// DESIGN story 5: a certificate that drops a name must never be installed.
    #[test]
    fn leaf_missing_a_name_is_refused() {
        let key = KeyPair::generate().expect("key");
        let spki = key.subject_public_key_info();
        let cert = leaf(&["a.example.test"], &key);
        let names = vec!["a.example.test".to_owned(), "b.example.test".to_owned()];
        let err = check_leaf(&cert, &spki, &names).expect_err("b is missing");
        assert!(err.contains("b.example.test"), "{err}");
    }

    #[test]
    fn leaf_for_another_key_is_refused() {
        let ours = KeyPair::generate().expect("key");
        let theirs = KeyPair::generate().expect("key");
        let cert = leaf(&["a.example.test"], &theirs);
        let err = check_leaf(
            &cert,
            &ours.subject_public_key_info(),
            &["a.example.test".into()],
        )
        .expect_err("wrong key");
        assert!(err.contains("public key"), "{err}");
    }

    #[test]
    fn requested_identifiers_match_as_the_ca_spells_them() {
        let requested = vec![
            "A.Example.Test".to_owned(),
            "*.b.example.test".to_owned(),
            "2001:db8::1".to_owned(),
        ];
        assert!(is_requested("a.example.test", &requested));
        assert!(is_requested("*.b.example.test", &requested));
        assert!(is_requested("2001:0db8:0000::0001", &requested));
        // The wildcard does not cover its base name, nor the reverse.
        assert!(!is_requested("b.example.test", &requested));
        assert!(!is_requested("*.a.example.test", &requested));
        assert!(!is_requested("evil.example.test", &requested));
    }

    #[test]
    fn validity_is_judged_at_the_given_now_with_five_minutes_of_skew() {
        let now = 1_800_000_000;
        let day = 86_400;
        assert!(valid_at(now - day, now + 90 * day, now));
        // notAfter must be in the future, strictly.
        assert!(!valid_at(now - 90 * day, now, now));
        assert!(!valid_at(now - 90 * day, now - 1, now));
        assert!(valid_at(now - 90 * day, now + 1, now));
        // notBefore up to 5 minutes ahead is clock skew; more is refused.
        assert!(valid_at(now + CLOCK_SKEW_ALLOWANCE, now + day, now));
        assert!(!valid_at(now + CLOCK_SKEW_ALLOWANCE + 1, now + day, now));
        // Extremes do not overflow.
        assert!(!valid_at(i64::MIN, i64::MIN, i64::MAX));
        assert!(valid_at(i64::MIN, i64::MAX, i64::MAX - 1));
    }

    #[test]
    fn leaf_matches_names_case_insensitively_and_ips() {
        let key = KeyPair::generate().expect("key");
        let cert = leaf(&["a.example.test", "*.b.example.test", "192.0.2.7"], &key);
        let names = vec![
            "A.Example.Test".to_owned(),
            "*.b.example.test".to_owned(),
            "192.0.2.7".to_owned(),
        ];
        let (not_before, not_after) =
            check_leaf(&cert, &key.subject_public_key_info(), &names).expect("matches");
        assert!(not_after > not_before);
    }
}
