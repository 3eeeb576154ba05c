//! [`Issuer`] for any RFC 8555 CA, on the agent's ACME client
//! ([`crate::acme`]). One per configured `[[issuer]]`: it owns the account
//! (loaded from the store, or registered once and stored) and is shared by
//! every job that orders from that CA.

use std::sync::Arc;
use std::time::Duration;

use certkeeper_proto::clock::Clock;
use certkeeper_store::Store;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::acme::{
    self, AcmeAccount, AcmeDirectory, AcmeError, ExternalAccountBinding, IssuedChain, KeyChoice,
    NewAccountOptions, OrderRequest, PollPolicy, Solver,
};
use crate::config::IssuerConfig;
use crate::error::AgentError;
use crate::issuer::{CsrSource, IssueRequest, Issuer, IssuerFuture, OrderHandle};

/// An ACME CA and the agent's account with it.
#[derive(Debug)]
pub struct AcmeIssuer {
    config: IssuerConfig,
    store: Store,
    clock: Arc<dyn Clock>,
    account: OnceCell<AcmeAccount>,
}

impl AcmeIssuer {
    /// The issuer for `config`; nothing is sent until the first use.
    pub fn new(config: IssuerConfig, store: Store, clock: Arc<dyn Clock>) -> AcmeIssuer {
        AcmeIssuer {
            config,
            store,
            clock,
            account: OnceCell::new(),
        }
    }

    /// The configuration it was built from.
    pub fn config(&self) -> &IssuerConfig {
        &self.config
    }

    /// The directory (with the private root to trust, if configured).
    pub fn directory(&self) -> AcmeDirectory {
        let mut directory = AcmeDirectory::new(self.config.directory.clone());
        if let Some(root) = &self.config.root {
            directory = directory.with_root_pem(root);
        }
        directory
    }

    /// The account: loaded from the store, or registered and stored. A
    /// failure is not cached: the next call tries again.
    pub async fn account(&self) -> Result<&AcmeAccount, AgentError> {
        self.account.get_or_try_init(|| self.load_or_create()).await
    }

    async fn load_or_create(&self) -> Result<AcmeAccount, AgentError> {
        let issuer = &self.config;
        let directory = self.directory();
        if let Some((url, credentials)) = self.store.agent_account(&issuer.name).await?
            && url == issuer.directory
        {
            let credentials = serde_json::from_str(&credentials).map_err(|e| {
                AgentError::Local(format!(
                    "stored ACME account for issuer {} is corrupt ({e}); delete it from agent_accounts to register a new one",
                    issuer.name
                ))
            })?;
            return AcmeAccount::load(&directory, credentials)
                .await
                .map_err(AgentError::account);
        }
        let eab = match &issuer.eab {
            Some(eab) => Some(ExternalAccountBinding {
                key_id: eab.kid.clone(),
                hmac_key: certkeeper_proto::b64::decode(&eab.hmac_key).map_err(|e| {
                    AgentError::Config(format!("issuer {}: eab.hmac_key: {e}", issuer.name))
                })?,
            }),
            None => None,
        };
        let options = NewAccountOptions {
            contact: issuer.contact.clone(),
            eab,
        };
        let (account, credentials) = retry_bad_nonce(|| AcmeAccount::create(&directory, &options))
            .await
            .map_err(AgentError::account)?;
        let json =
            serde_json::to_string(&credentials).map_err(|e| AgentError::Local(e.to_string()))?;
        self.store
            .put_agent_account(&issuer.name, &issuer.directory, &json, self.clock.now())
            .await?;
        Ok(account)
    }

    /// The CA's suggested renewal window for `leaf` (RFC 9773) and how long
    /// to wait before asking again; `None` when the CA offers no ARI.
    pub async fn renewal_window(
        &self,
        leaf: &CertificateDer<'_>,
    ) -> Result<Option<(OffsetDateTime, OffsetDateTime, Duration)>, AgentError> {
        let account = self.account().await?;
        account.renewal_window(leaf).await.map_err(AgentError::acme)
    }
}

impl Issuer for AcmeIssuer {
    fn begin<'a>(&'a self, request: &'a IssueRequest) -> IssuerFuture<'a, OrderHandle> {
        Box::pin(async move {
            let account = self.account().await?;
            let mut order = OrderRequest::new(request.names.clone());
            order.profile = request.profile.clone();
            // create_order does not read the key; it only matters at finalize.
            if let CsrSource::Key(key) = &request.key {
                order.key = KeyChoice::Reuse(key.clone());
            }
            if let Some(leaf) = &request.replaces {
                order.replaces = acme::cert_id(&CertificateDer::from(leaf.as_slice()))
                    .ok()
                    .map(|id| id.into_owned());
            }
            let order_url = retry_bad_nonce(|| account.create_order(&order))
                .await
                .map_err(AgentError::acme)?;
            Ok(OrderHandle { order_url })
        })
    }

    fn complete<'a>(
        &'a self,
        handle: &'a OrderHandle,
        names: &'a [String],
        csr: &'a CsrSource,
        solver: &'a dyn Solver,
        now: i64,
    ) -> IssuerFuture<'a, IssuedChain> {
        Box::pin(async move {
            let account = self.account().await?;
            let poll = PollPolicy::default();
            let url = &handle.order_url;
            match csr {
                CsrSource::Key(key) => {
                    retry_bad_nonce(|| account.complete_order(url, names, key, solver, &poll, now))
                        .await
                        .map(|issued| IssuedChain {
                            order_url: issued.order_url,
                            names: issued.names,
                            chain_pem: issued.chain_pem,
                            chain: issued.chain,
                            not_before: issued.not_before,
                            not_after: issued.not_after,
                            timings: issued.timings,
                            tlog_entry: issued.tlog_entry,
                        })
                }
                CsrSource::Der(der) => {
                    retry_bad_nonce(|| {
                        account.complete_order_csr(url, names, der, solver, &poll, now)
                    })
                    .await
                }
            }
            .map_err(AgentError::acme)
        })
    }
}

/// How often a step that failed only on `badNonce` is run again at once.
/// instant-acme retries a request 3 times; a CA rejecting half of all nonces
/// (pebble's PEBBLE_WFE_NONCEREJECT=50) still beats that now and then, and
/// every step here is resumable, so retrying costs nothing but a request.
const BAD_NONCE_RETRIES: usize = 8;

async fn retry_bad_nonce<T, F, Fut>(mut step: F) -> Result<T, AcmeError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, AcmeError>>,
{
    let mut attempt = 0;
    loop {
        match step().await {
            Err(e) if attempt < BAD_NONCE_RETRIES && is_bad_nonce(&e) => attempt += 1,
            other => return other,
        }
    }
}

fn is_bad_nonce(e: &AcmeError) -> bool {
    e.problem().and_then(|p| p.r#type.as_deref()) == Some("urn:ietf:params:acme:error:badNonce")
}
