//! The HTTP transport under instant-acme.
//!
//! instant-acme's own client trusts either the platform store or a single
//! root from a file, and never times out. We need private roots (pebble and
//! our own CA use them; a bundle may hold several) and a hard per-request
//! deadline so a stalled CA cannot hang an agent forever.

use std::error::Error as StdError;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesBody, BytesResponse, HttpClient};

use super::error::AcmeError;

type Hyper = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// The longest a CA's `Retry-After` is obeyed.
///
/// RFC 9110 §10.2.3 puts no bound on it, so a broken or hostile CA can send
/// `18446744073709551615` seconds or a date in year 9999. Thirty days is
/// longer than any rate-limit window a public CA documents (Let's Encrypt's
/// longest is 7 days), so an honest CA is obeyed in full; and it is a third
/// of a 90-day certificate's life, so a bogus value costs one missed retry
/// window, not the certificate.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// A CA's `Retry-After`, as an absolute time, at most [`MAX_RETRY_AFTER`] away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetryAfter {
    /// When the CA may be asked again.
    pub(crate) at: SystemTime,
    /// The CA's own header value when it asked for longer than the cap, so
    /// the report can say it was capped.
    pub(crate) capped_from: Option<String>,
}

/// The last `Retry-After` a CA sent with a 429 or 503.
///
/// instant-acme turns an error response into a problem document and drops
/// its headers, so the deadline is kept here, shared with the
/// [`AcmeAccount`](super::AcmeAccount) that owns the client, which attaches
/// it to the error of the step that failed. The agent runs one request at a
/// time per account, so "last" is the failing request's.
#[derive(Clone, Default, Debug)]
pub(crate) struct RetryAfterCell(Arc<std::sync::Mutex<Option<RetryAfter>>>);

impl RetryAfterCell {
    /// Forgets any earlier answer (before a step whose error is inspected).
    pub(crate) fn clear(&self) {
        if let Ok(mut v) = self.0.lock() {
            *v = None;
        }
    }

    /// The deadline the last 429/503 carried, if any, consumed.
    pub(crate) fn take(&self) -> Option<RetryAfter> {
        self.0.lock().ok().and_then(|mut v| v.take())
    }

    fn set(&self, at: RetryAfter) {
        if let Ok(mut v) = self.0.lock() {
            *v = Some(at);
        }
    }
}

/// Where a CA said each certificate it served is logged: the
/// `Link: <…>;rel="tlog-entry"` of certificate downloads, by request URL.
///
/// instant-acme returns a certificate as a string and drops the response
/// headers, so the transport keeps the link for the account to pick up
/// right after the download. Keyed by URL (not "the last one") because
/// jobs share an account and download concurrently; bounded because an
/// entry nobody picks up (a failed step) must not accumulate.
#[derive(Clone, Default, Debug)]
pub(crate) struct TlogLinks(Arc<std::sync::Mutex<std::collections::VecDeque<(String, String)>>>);

/// Links kept at most (far more than downloads in flight at once).
const MAX_TLOG_LINKS: usize = 1024;

impl TlogLinks {
    /// The link the download of `url` carried, consumed.
    pub(crate) fn take(&self, url: &str) -> Option<String> {
        let mut v = self.0.lock().ok()?;
        let i = v.iter().rposition(|(u, _)| u == url)?;
        v.remove(i).map(|(_, l)| l)
    }

    fn put(&self, url: String, link: String) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() >= MAX_TLOG_LINKS {
                v.pop_front();
            }
            v.push_back((url, link));
        }
    }
}

/// The target of the first `rel="tlog-entry"` link among `Link` header
/// values (RFC 8288 §3: `<URI>; param; rel="…"`), if any.
pub(crate) fn tlog_entry_link<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    for value in values {
        for link in value.split(',') {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let is_entry = params.split(';').any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=").is_some_and(|r| {
                    r.trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("tlog-entry"))
                })
            });
            if is_entry {
                return Some(target.to_string());
            }
        }
    }
    None
}

/// Parses `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date),
/// capped at [`MAX_RETRY_AFTER`] from `now`. A malformed value is ignored
/// rather than guessed at; a date in the past means "now".
fn parse_retry_after(value: &str, now: SystemTime) -> Option<RetryAfter> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time", not garbage.
        value
            .parse::<u64>()
            .map(Duration::from_secs)
            .unwrap_or(Duration::MAX)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    let capped_from = (wait > MAX_RETRY_AFTER).then(|| value.to_owned());
    let at = now.checked_add(wait.min(MAX_RETRY_AFTER))?;
    Some(RetryAfter { at, capped_from })
}

/// The most certkeeper reads of one CA response body.
///
/// ACME bodies are small: an order with a hundred authorizations or a
/// certificate chain is tens of KiB. 1 MiB leaves a wide margin and stops
/// a broken CA or a proxy's error page from filling the agent's memory,
/// which is shared with every other certificate it keeps.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A CA response body longer than [`MAX_BODY_BYTES`].
#[derive(Debug)]
struct BodyTooLarge {
    uri: String,
    /// The length the response declared, when it declared one.
    declared: Option<u64>,
}

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the response from {} ", self.uri)?;
        match self.declared {
            Some(declared) => write!(f, "declares {declared} bytes, ")?,
            None => f.write_str("is longer than it may be: ")?,
        }
        write!(
            f,
            "more than the 1 MiB ({MAX_BODY_BYTES} bytes) certkeeper reads from a CA; \
             check that the URL is the CA's ACME endpoint and not a web page, and report it to the CA"
        )
    }
}

impl StdError for BodyTooLarge {}

/// The CA's body, refused once more than [`MAX_BODY_BYTES`] have arrived,
/// so a body without a length (chunked) is stopped too.
struct CappedBody {
    inner: hyper::body::Incoming,
    seen: usize,
    uri: String,
}

impl hyper::body::Body for CappedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen = this.seen.saturating_add(data.len());
                    if this.seen > MAX_BODY_BYTES {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            uri: this.uri.clone(),
                            declared: None,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// An instant-acme `HttpClient` with explicit trust roots and a deadline on
/// every request (headers and body).
pub(crate) struct TimedHttpClient {
    inner: Hyper,
    timeout: Duration,
    retry_after: RetryAfterCell,
    tlog_links: TlogLinks,
}

impl TimedHttpClient {
    /// Builds a client that trusts the roots in `root_pem` (all certificates
    /// in the file), or the platform verifier when `None`.
    ///
    /// Plain `http://` is allowed only when the operator wrote an `http://`
    /// directory URL, so a typo can never downgrade a production CA.
    pub(crate) fn new(
        root_pem: Option<&Path>,
        allow_http: bool,
        timeout: Duration,
        retry_after: RetryAfterCell,
        tlog_links: TlogLinks,
    ) -> Result<Self, AcmeError> {
        let connector = crate::bounded_http::https_connector(root_pem, allow_http, timeout)
            .map_err(|(path, reason)| AcmeError::RootPem { path, reason })?;
        Ok(Self {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            timeout,
            retry_after,
            tlog_links,
        })
    }
}

impl HttpClient for TimedHttpClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let uri = req.uri().to_string();
        let (host, endpoint) = metric_labels(req.uri());
        let fut = self.inner.request(req);
        let retry_after = self.retry_after.clone();
        let tlog_links = self.tlog_links.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = tokio::time::timeout_at(deadline, fut).await;
            let status = match &result {
                Ok(Ok(rsp)) => rsp.status().as_u16().to_string(),
                Ok(Err(_)) => "error".to_string(),
                Err(_) => "timeout".to_string(),
            };
            let labels = [("host", host), ("endpoint", endpoint), ("status", status)];
            metrics::counter!("certkeeper_acme_client_request_count", &labels).increment(1);
            metrics::histogram!("certkeeper_acme_client_request_duration_seconds", &labels)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(Ok(rsp)) => {
                    // Refuse an announced oversize body before reading any of it.
                    let declared = rsp
                        .headers()
                        .get(hyper::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    if let Some(declared) = declared
                        && declared > MAX_BODY_BYTES as u64
                    {
                        return Err(instant_acme::Error::Other(Box::new(BodyTooLarge {
                            uri,
                            declared: Some(declared),
                        })));
                    }
                    let rsp = rsp.map(|inner| CappedBody {
                        inner,
                        seen: 0,
                        uri: uri.clone(),
                    });
                    if let Some(link) = tlog_entry_link(
                        rsp.headers()
                            .get_all(hyper::header::LINK)
                            .iter()
                            .filter_map(|v| v.to_str().ok()),
                    ) {
                        tlog_links.put(uri.clone(), link);
                    }
                    let mut rsp = BytesResponse::from(rsp);
                    let now = SystemTime::now();
                    let parsed = rsp
                        .parts
                        .headers
                        .get(hyper::header::RETRY_AFTER)
                        .map(|v| v.to_str().ok().and_then(|v| parse_retry_after(v, now)));
                    if let Some(parsed) = parsed {
                        // instant-acme reads the header again (order polls,
                        // renewal info) with unchecked `now + secs`: hand it
                        // only the capped delay, or nothing if malformed.
                        let headers = &mut rsp.parts.headers;
                        headers.remove(hyper::header::RETRY_AFTER);
                        if let Some(parsed) = parsed {
                            let secs = parsed.at.duration_since(now).unwrap_or_default().as_secs();
                            headers.insert(hyper::header::RETRY_AFTER, secs.into());
                            // The only place the header is still visible: keep
                            // the CA's "not before" for the step that will fail.
                            if matches!(
                                rsp.parts.status,
                                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                            ) {
                                retry_after.set(parsed);
                            }
                        }
                    }
                    // The body is read later by instant-acme; carry the same
                    // deadline so a CA that stalls mid-body still times out.
                    rsp.body = Box::new(TimedBody {
                        inner: rsp.body,
                        deadline,
                        status: rsp.parts.status,
                        uri,
                    });
                    Ok(rsp)
                }
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Other(
                    format!("no response from {uri} within {timeout:?}").into(),
                )),
            }
        })
    }
}

/// The CA (host:port) and the endpoint of a request, for metric labels:
/// the path up to its first segment that looks like an id (a digit and 8
/// characters or more), so `/acme/order/Xy12…` and `/authZ/…` stay a few
/// series per CA, not one per order.
fn metric_labels(uri: &hyper::Uri) -> (String, String) {
    let host = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let mut endpoint = String::new();
    for segment in uri.path().split('/').filter(|s| !s.is_empty()) {
        if segment.len() >= 8 && segment.bytes().any(|b| b.is_ascii_digit()) {
            break;
        }
        endpoint.push('/');
        endpoint.push_str(segment);
    }
    if endpoint.is_empty() {
        endpoint.push('/');
    }
    (host, endpoint)
}

struct TimedBody {
    inner: Box<dyn BytesBody>,
    deadline: tokio::time::Instant,
    status: StatusCode,
    uri: String,
}

// `BytesBody` is declared with `#[async_trait]`; this is the signature that
// macro expands to, written out to avoid a dependency for one impl.
impl BytesBody for TimedBody {
    fn into_bytes<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> Pin<Box<dyn Future<Output = Result<Bytes, BoxError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            match tokio::time::timeout_at(self.deadline, self.inner.into_bytes()).await {
                Ok(Ok(body)) if is_error(self.status) => {
                    Ok(problem_body(self.status, &self.uri, body))
                }
                Ok(result) => result,
                Err(_) => Err(format!("response body from {} timed out", self.uri).into()),
            }
        })
    }
}

/// Whether instant-acme will parse this response's body as a problem document.
fn is_error(status: StatusCode) -> bool {
    !(status.is_informational() || status.is_success() || status.is_redirection())
}

/// Makes an error response's body a problem document that carries the HTTP
/// status.
///
/// instant-acme parses every error body as RFC 7807 JSON. A bare `404` with
/// an empty body (pebble, for an unknown order) or a proxy's HTML `502`
/// would otherwise surface as "failed to (de)serialize JSON" with the status
/// lost, and the agent could not tell "this order is gone" from "the CA is
/// down".
fn problem_body(status: StatusCode, uri: &str, body: Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut doc)) => {
            if doc.contains_key("status") {
                return body;
            }
            doc.insert("status".into(), status.as_u16().into());
            serde_json::to_vec(&doc).map(Bytes::from).unwrap_or(body)
        }
        _ => {
            let text = String::from_utf8_lossy(&body);
            let snippet: String = text.trim().chars().take(200).collect();
            let mut detail = format!("HTTP {status} from {uri} without a problem document");
            if !snippet.is_empty() {
                detail.push_str(": ");
                detail.push_str(&snippet);
            }
            // No `type`: RFC 7807 §4.2 reads that as "about:blank", i.e.
            // nothing beyond the status is known.
            let doc = serde_json::json!({ "status": status.as_u16(), "detail": detail });
            serde_json::to_vec(&doc).map(Bytes::from).unwrap_or(body)
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn metric_labels_drop_ids_from_paths() {
        let l = |u: &str| super::metric_labels(&u.parse().unwrap());
        assert_eq!(
            l("https://ca.test:14000/acme/order/Xy12ab34cd56"),
            ("ca.test:14000".into(), "/acme/order".into())
        );
        assert_eq!(l("https://127.0.0.1:14000/authZ/q1w2e3r4t5").1, "/authZ");
        assert_eq!(l("https://ca.test/directory").1, "/directory");
        assert_eq!(l("https://ca.test/").1, "/");
    }
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |value| parse_retry_after(value, now).map(|r| r.at);
        assert_eq!(at(" 3600 "), Some(now + Duration::from_secs(3600)));
        // A date in the past means "now", not an error.
        assert_eq!(at("Thu, 01 Jan 1970 00:01:40 GMT"), Some(now));
        assert_eq!(
            at("Mon, 12 Jan 1970 13:46:41 GMT"),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(at("soon"), None);
        assert_eq!(at(""), None);
        assert_eq!(at("-5"), None);
        assert_eq!(
            parse_retry_after("60", now).and_then(|r| r.capped_from),
            None
        );
    }

    /// RFC 9110 §10.2.3 has no upper bound; ours is [`MAX_RETRY_AFTER`], and
    /// the CA's value is kept to say so.
    #[test]
    fn retry_after_beyond_the_cap_is_capped_and_remembered() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for value in [
            "18446744073709551615",
            "99999999999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            let parsed = parse_retry_after(value, now).expect(value);
            assert_eq!(parsed.at, now + MAX_RETRY_AFTER, "{value}");
            assert_eq!(parsed.capped_from.as_deref(), Some(value));
        }
        // Exactly the cap is obeyed as sent.
        let exact = MAX_RETRY_AFTER.as_secs().to_string();
        let parsed = parse_retry_after(&exact, now).expect("cap");
        assert_eq!(
            (parsed.at, parsed.capped_from),
            (now + MAX_RETRY_AFTER, None)
        );
    }

    fn parse(body: Bytes) -> instant_acme::Problem {
        serde_json::from_slice(&body).expect("a problem document")
    }

    #[test]
    fn bare_error_bodies_become_problems_with_the_status() {
        let empty = parse(problem_body(
            StatusCode::NOT_FOUND,
            "https://ca.test/order/1",
            Bytes::new(),
        ));
        assert_eq!(empty.status, Some(404));
        assert_eq!(empty.r#type, None);
        let detail = empty.detail.expect("detail");
        assert!(
            detail.contains("404") && detail.contains("/order/1"),
            "{detail}"
        );

        let html = parse(problem_body(
            StatusCode::BAD_GATEWAY,
            "https://ca.test/dir",
            Bytes::from_static(b"<html>bad gateway</html>"),
        ));
        assert_eq!(html.status, Some(502));
        assert!(html.detail.expect("detail").contains("bad gateway"));
    }

    #[test]
    fn problem_documents_keep_their_fields_and_gain_a_missing_status() {
        let with_status = Bytes::from_static(
            br#"{"type":"urn:ietf:params:acme:error:rateLimited","status":429,"detail":"slow down"}"#,
        );
        assert_eq!(
            problem_body(StatusCode::TOO_MANY_REQUESTS, "u", with_status.clone()),
            with_status
        );
        let without = parse(problem_body(
            StatusCode::FORBIDDEN,
            "u",
            Bytes::from_static(br#"{"type":"urn:ietf:params:acme:error:unauthorized"}"#),
        ));
        assert_eq!(without.status, Some(403));
        assert_eq!(
            without.r#type.as_deref(),
            Some("urn:ietf:params:acme:error:unauthorized")
        );
    }
}
