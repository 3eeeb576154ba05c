//! An issuer's transparency log, from the agent's side: the inclusion
//! check a new certificate must pass before it is stored as deployable
//! (like an SCT check, but with a proof instead of a promise), and the
//! [`Fetch`] the monitor ([`super::log_watch`]) follows the log with.
//!
//! Trust comes only from the configured checkpoint key: the CA's proof and
//! its checkpoint are fetched over any transport, and the proof must lead
//! from the certificate's leaf hash (RFC 9162 §2.1.1) to the root of a
//! checkpoint signed by that key (C2SP signed-note).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certkeeper_tlog::note::{Checkpoint, NoteVerifier};
use certkeeper_tlog::proof::verify_inclusion;
use certkeeper_tlog::{Hash, TlogError, leaf_hash};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};

use crate::bounded_http::{BoundedHttp, HttpError};
use crate::config::IssuerConfig;
use crate::tlog_config::TlogConfig;

/// The most read of one log response: a full entry bundle of 256
/// certificates is well under this.
const MAX_LOG_BYTES: usize = 16 * 1024 * 1024;

/// How often, and how far apart, an inclusion proof is asked for again when
/// the log does not have the entry yet. The built-in CA logs before it
/// serves the certificate, so this only covers a log that publishes in
/// batches (at least one per second): a lag of a batch or two is normal.
const INCLUSION_ATTEMPTS: u32 = 5;
const INCLUSION_RETRY: Duration = Duration::from_millis(500);

/// One issuer's log: where it is, the key its checkpoints must be signed
/// with, and an HTTP client with a deadline per request.
#[derive(Clone, Debug)]
pub struct IssuerLog {
    /// The issuer's name.
    pub issuer: String,
    /// Its configuration.
    pub config: TlogConfig,
    /// The checkpoint key.
    pub verifier: NoteVerifier,
    http: BoundedHttp,
}

/// What a verified inclusion established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Included {
    /// The leaf index.
    pub index: u64,
    /// The size of the signed checkpoint it was proven against.
    pub size: u64,
}

/// Why a certificate's inclusion could not be verified: the reason, and
/// whether asking again later may succeed (a log that is down or lagging)
/// or not (a proof or signature that does not verify).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotIncluded {
    /// What failed, for the operator.
    pub reason: String,
    /// Whether the same check can pass later without anyone changing anything.
    pub transient: bool,
}

#[derive(serde::Deserialize)]
struct EntryProof {
    index: u64,
    tree_size: u64,
    checkpoint: String,
    inclusion_proof: Vec<String>,
}

impl IssuerLog {
    /// The log of `issuer`, when it has one configured.
    pub fn of(issuer: &IssuerConfig) -> Result<Option<IssuerLog>, String> {
        let Some(config) = &issuer.tlog else {
            return Ok(None);
        };
        let verifier = config.verifier()?;
        let http = BoundedHttp::new(
            issuer.root.as_deref(),
            config.log.starts_with("http://"),
            config.timeout(),
        )
        .map_err(|e| http_text(&config.log, e))?;
        Ok(Some(IssuerLog {
            issuer: issuer.name.clone(),
            config: config.clone(),
            verifier,
            http,
        }))
    }

    /// GET `url`; `Ok(None)` on 404.
    async fn get(&self, url: &str) -> Result<Option<Bytes>, String> {
        let req = get_request(url, "*/*")?;
        let rsp = self
            .http
            .send(req, MAX_LOG_BYTES)
            .await
            .map_err(|e| http_text(url, e))?;
        match rsp.status {
            StatusCode::OK => Ok(Some(rsp.body)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(format!("{url}: HTTP {s}")),
        }
    }

    /// Verifies that `leaf_der` is in the log, from the `tlog-entry` link
    /// the CA sent with it. Asks again briefly while the log lags.
    pub async fn verify_inclusion(
        &self,
        entry_url: Option<&str>,
        leaf_der: &[u8],
    ) -> Result<Included, NotIncluded> {
        let Some(url) = entry_url else {
            return Err(NotIncluded {
                reason: "the CA sent no Link rel=\"tlog-entry\" with the certificate, so its inclusion cannot be checked; \
                         is the CA running with its transparency log? (or set tlog.require_inclusion = false)"
                    .into(),
                transient: false,
            });
        };
        let mut attempt = 1;
        loop {
            match self.check_once(url, leaf_der).await {
                Err(e) if e.transient && attempt < INCLUSION_ATTEMPTS => {
                    attempt += 1;
                    tokio::time::sleep(INCLUSION_RETRY).await;
                }
                other => return other,
            }
        }
    }

    async fn check_once(&self, url: &str, leaf_der: &[u8]) -> Result<Included, NotIncluded> {
        let transient = |reason: String| NotIncluded {
            reason,
            transient: true,
        };
        let broken = |reason: String| NotIncluded {
            reason,
            transient: false,
        };
        let body = self
            .get(url)
            .await
            .map_err(transient)?
            .ok_or_else(|| transient(format!("{url}: the log has no such entry (yet)")))?;
        let proof: EntryProof = serde_json::from_slice(&body)
            .map_err(|e| broken(format!("{url}: not an inclusion proof: {e}")))?;
        let cp = Checkpoint::open(&proof.checkpoint, &self.verifier).map_err(|e| {
            broken(format!(
                "the checkpoint served with {url} is not signed by the configured key {} ({e}); \
                 if the CA's log key changed, copy its DATA/ca/tlog.pub into tlog.checkpoint_key",
                self.verifier.name()
            ))
        })?;
        if cp.size != proof.tree_size {
            return Err(broken(format!(
                "{url}: the proof claims tree size {} but its checkpoint is of size {}",
                proof.tree_size, cp.size
            )));
        }
        if proof.index >= cp.size {
            return Err(transient(format!(
                "{url}: entry {} is not in the published tree of size {} yet",
                proof.index, cp.size
            )));
        }
        let hashes = proof
            .inclusion_proof
            .iter()
            .map(|h| STANDARD.decode(h).ok().and_then(|v| Hash::try_from(v).ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| broken(format!("{url}: a proof hash is not 32 bytes of base64")))?;
        verify_inclusion(
            proof.index,
            cp.size,
            &leaf_hash(leaf_der),
            &hashes,
            &cp.root,
        )
        .map_err(|e| {
            broken(format!(
                "entry {} of the log of size {} is not this certificate, or the proof is wrong ({e})",
                proof.index, cp.size
            ))
        })?;
        Ok(Included {
            index: proof.index,
            size: cp.size,
        })
    }
}

impl certkeeper_tlog::client::Fetch for IssuerLog {
    async fn fetch(&self, path: &str) -> Result<Option<Vec<u8>>, TlogError> {
        let url = format!("{}{path}", self.config.base());
        self.get(&url)
            .await
            .map(|b| b.map(|b| b.to_vec()))
            .map_err(|detail| TlogError::Fetch { what: url, detail })
    }
}

/// An HTTP failure as one line naming the URL.
/// A GET of `url` accepting `accept`, with the agent's User-Agent.
pub(crate) fn get_request(url: &str, accept: &str) -> Result<Request<Full<Bytes>>, String> {
    Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(hyper::header::ACCEPT, accept)
        .header(
            hyper::header::USER_AGENT,
            concat!("certkeeper-agent/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::new()))
        .map_err(|e| format!("{url} is not a usable URL: {e}"))
}

pub(crate) fn http_text(url: &str, e: HttpError) -> String {
    match e {
        HttpError::Roots { path, reason } => {
            format!("{url}: the issuer's root file {}: {reason}", path.display())
        }
        HttpError::Transport { reason } => format!("{url}: {reason}"),
        HttpError::Timeout { timeout } => format!("{url}: no answer within {timeout:?}"),
        HttpError::TooLarge { limit } => format!("{url}: the response is over {limit} bytes"),
    }
}
