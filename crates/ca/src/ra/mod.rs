//! The registration authority: every issuance decision lives here.
//!
//! The WFE hands the RA authenticated requests; the RA applies policy, moves
//! accounts, orders and authorizations through their RFC 8555 §7.1.6 states
//! with compare-and-set writes, asks the VA to validate and the issuer to
//! sign, and records everything in the store before answering.

mod account_cache;
mod accounts;
mod csr;
mod identifiers;
pub mod limits;
mod orders;
mod revocation;
mod settled;

pub use accounts::NewAccount;
pub use orders::{Authz, NewOrder, Order};
pub use revocation::Revoker;

use std::sync::Arc;

use certkeeper_proto::b64;
use certkeeper_store::{AccountRow, Store};

use crate::issuer::Pki;
use crate::objects::AccountDoc;
use crate::policy::Policy;
use crate::va::Va;
use crate::{CaError, Clock};

/// The RA and everything it decides with.
#[derive(Debug)]
pub struct Ra {
    store: Store,
    pki: Arc<Pki>,
    va: Va,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
    eab_required: bool,
    /// Held from reading the revoked set to publishing the CRL signed from
    /// it: two refreshes interleaved could publish the older list last,
    /// with the higher CRL number.
    crl_lock: tokio::sync::Mutex<()>,
    /// Every signature and revocation, in a file that outlives the database.
    audit: certkeeper_store::audit::AuditLog,
    /// The transparency log, when the CA runs with one (attached once at start).
    tlog: std::sync::OnceLock<Arc<crate::tlog::CaLog>>,
    /// Accounts by id, kept in step by every account write of the RA.
    accounts: account_cache::AccountCache,
    /// Orders, authorizations and chains this process just settled.
    settled: settled::Settled,
    /// Authorizations this process is validating (see `respond_challenge`).
    validating: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// An account loaded for a request: row plus parsed document.
#[derive(Clone, Debug)]
pub struct Account {
    /// The stored row.
    pub row: AccountRow,
    /// Its document.
    pub doc: AccountDoc,
}

impl Ra {
    /// Builds the RA.
    pub fn new(
        store: Store,
        pki: Arc<Pki>,
        va: Va,
        policy: Arc<Policy>,
        clock: Arc<dyn Clock>,
        eab_required: bool,
        audit: certkeeper_store::audit::AuditLog,
    ) -> Ra {
        Ra {
            store,
            pki,
            va,
            policy,
            clock,
            eab_required,
            crl_lock: tokio::sync::Mutex::new(()),
            audit,
            tlog: std::sync::OnceLock::new(),
            accounts: account_cache::AccountCache::default(),
            settled: settled::Settled::default(),
            validating: std::sync::Mutex::default(),
        }
    }

    /// Appends one record to the audit log (fsynced when it returns).
    pub(crate) async fn audit(
        &self,
        event: &str,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), CaError> {
        self.audit
            .append(vec![certkeeper_store::audit::AuditRecord {
                at: self.clock.now(),
                by: "ca",
                event: event.to_string(),
                fields,
            }])
            .await
            .map_err(|e| CaError::Internal(format!("cannot write the audit log: {e}")))
    }

    /// Attaches the transparency log: from now on every certificate is
    /// logged before it is served. A second call is ignored.
    pub fn attach_tlog(&self, log: Arc<crate::tlog::CaLog>) {
        let _ = self.tlog.set(log);
    }

    /// The transparency log, when there is one.
    pub fn tlog(&self) -> Option<&Arc<crate::tlog::CaLog>> {
        self.tlog.get()
    }

    /// The CA's store (the admin dashboard reads it; the log repairs its
    /// index through it).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The policy in force (the WFE renders profiles from it).
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether new accounts need external account binding.
    pub fn eab_required(&self) -> bool {
        self.eab_required
    }

    /// The CA hierarchy (the WFE serves the CRL from it).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Now, from the injected clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// After a restart: finish validations and issuances that were in flight.
    pub async fn resume(self: &Arc<Self>) -> Result<(), CaError> {
        orders::resume(self).await?;
        self.refresh_crl().await
    }

    /// Re-signs the CRL from the store.
    pub async fn refresh_crl(&self) -> Result<(), CaError> {
        let _serialized = self.crl_lock.lock().await;
        let now = self.now();
        let revoked = self.store.revoked_unexpired(now).await?;
        self.pki
            .sign_crl(&revoked, now, self.policy.lifetimes.crl_validity_secs())?;
        Ok(())
    }
}

/// A random identifier for accounts, orders, authorizations and challenges.
pub(crate) fn new_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// A random challenge token: 128 bits or more, base64url (RFC 8555 §8.3).
pub(crate) fn new_token() -> String {
    b64::encode(&rand::random::<[u8; 32]>())
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, CaError> {
    serde_json::to_string(v).map_err(|e| CaError::Internal(e.to_string()))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, CaError> {
    serde_json::from_str(s).map_err(|e| CaError::Internal(format!("stored {what} is corrupt: {e}")))
}
