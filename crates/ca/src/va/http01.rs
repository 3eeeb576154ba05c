//! http-01 (RFC 8555 §8.3): fetch `http://NAME/.well-known/acme-challenge/TOKEN`
//! on the configured port and compare the body with the key authorization.
//!
//! Redirects are not followed (a divergence from Boulder, listed in
//! docs/rfc8555-divergences.md): the responder must answer directly.

use std::net::IpAddr;
use std::time::Duration;

use certkeeper_proto::problem::ProblemType;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::{connection_problem, socket};
use crate::CaError;

/// Boulder reads at most this much of a challenge response.
const MAX_BODY: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries each address in turn; the first that answers decides.
pub(crate) async fn validate(
    addrs: &[IpAddr],
    port: u16,
    name: &str,
    token: &str,
    key_auth: &str,
) -> Result<(), CaError> {
    let mut last = CaError::acme(
        ProblemType::Connection,
        format!("{name}: no address to contact"),
    );
    for ip in addrs {
        match fetch(*ip, port, name, token).await {
            Ok((status, body)) => return judge(name, port, token, status, &body, key_auth),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn url(name: &str, port: u16, token: &str) -> String {
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_string()
    };
    if port == 80 {
        format!("http://{host}/.well-known/acme-challenge/{token}")
    } else {
        format!("http://{host}:{port}/.well-known/acme-challenge/{token}")
    }
}

async fn fetch(ip: IpAddr, port: u16, name: &str, token: &str) -> Result<(u16, Vec<u8>), CaError> {
    let addr = socket(ip, port);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| connection_problem(name, addr, "timeout connecting"))?
        .map_err(|e| connection_problem(name, addr, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connection_problem(name, addr, e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = if name.contains(':') {
        format!("[{name}]")
    } else {
        name.to_string()
    };
    let host = if port == 80 {
        host
    } else {
        format!("{host}:{port}")
    };
    let req = hyper::Request::get(format!("/.well-known/acme-challenge/{token}"))
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "certkeeper-va")
        .header(hyper::header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| CaError::Internal(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| {
        connection_problem(
            name,
            addr,
            format!("fetching {}: {e}", url(name, port, token)),
        )
    })?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| connection_problem(name, addr, format!("reading response: {e}")))?
        .to_bytes();
    Ok((status, body.to_vec()))
}

fn judge(
    name: &str,
    port: u16,
    token: &str,
    status: u16,
    body: &[u8],
    key_auth: &str,
) -> Result<(), CaError> {
    let u = url(name, port, token);
    if status != 200 {
        return Err(CaError::acme(
            ProblemType::Unauthorized,
            format!("{name}: invalid response from {u}: HTTP {status}"),
        ));
    }
    let got = String::from_utf8_lossy(body);
    // RFC 8555 §8.3: the server SHOULD ignore whitespace characters at the end of the body.
    let got = got.trim_end();
    if got != key_auth {
        // Say what was wrong, never what was served: echoing the body would
        // make the CA relay whatever the target (or an attacker in front of
        // it) put there into signed-looking problem documents.
        let hint = match got.split_once('.') {
            Some((t, _)) if t == token => {
                "the token matches but the account thumbprint does not (another account's key authorization?)"
            }
            _ if got.is_empty() => "the body is empty",
            _ => "the body is not a key authorization for this token",
        };
        return Err(CaError::acme(
            ProblemType::Unauthorized,
            format!(
                "{name}: the key authorization at {u} does not match ({} bytes received): {hint}",
                body.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_whitespace_is_ignored() {
        assert!(judge("a.test", 80, "t", 200, b"tok.thumb\r\n", "tok.thumb").is_ok());
        assert!(judge("a.test", 80, "t", 200, b"other", "tok.thumb").is_err());
        assert!(judge("a.test", 80, "t", 404, b"tok.thumb", "tok.thumb").is_err());
    }

    /// A wrong body is described, not echoed back to the client.
    #[test]
    fn a_wrong_body_is_not_echoed() {
        let e = judge(
            "a.test",
            80,
            "tok",
            200,
            b"<script>evil</script>",
            "tok.thumb",
        )
        .expect_err("mismatch");
        let text = e.to_string();
        assert!(!text.contains("evil"), "{text}");
        assert!(text.contains("21 bytes"), "{text}");
        let e = judge("a.test", 80, "tok", 200, b"tok.other", "tok.thumb").expect_err("mismatch");
        assert!(e.to_string().contains("thumbprint"), "{e}");
    }
}
