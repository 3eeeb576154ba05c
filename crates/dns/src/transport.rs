//! Sending one DNS message and reading its answer: UDP first, TCP when the
//! answer is truncated (RFC 1035 §4.2.1: "Messages carried by UDP are
//! restricted to 512 bytes") or the request itself is too large for UDP;
//! TSIG-signed when a key is given, with the answer's TSIG checked.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::{DnsError, TsigKey};

/// The largest request sent over UDP. A plain (non-EDNS) UPDATE is bound by
/// the 512-byte limit of RFC 1035; anything larger (a TLSA record with a
/// certificate) goes over TCP directly instead of failing first.
const UDP_MAX_REQUEST: usize = 512;

/// How a message travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// UDP, then TCP if the answer is truncated or the request is large.
    #[default]
    Auto,
    /// TCP only (zone transfers, large updates, UDP-hostile networks).
    Tcp,
}

/// A DNS server to talk to.
#[derive(Clone, Copy, Debug)]
pub struct Server {
    /// Address and port.
    pub addr: SocketAddr,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// UDP with TCP fallback, or TCP only.
    pub transport: Transport,
}

impl Server {
    /// A server at `addr` with a 5-second timeout, UDP first.
    pub fn new(addr: SocketAddr) -> Server {
        Server {
            addr,
            timeout: Duration::from_secs(5),
            transport: Transport::Auto,
        }
    }

    /// Sends `message`, signed with `key` at time `now` (unix seconds) when
    /// given, and returns the verified answer. Error response codes are not
    /// errors here (callers name them in context), except TSIG failures.
    pub async fn exchange(
        &self,
        mut message: Message,
        key: Option<&TsigKey>,
        now: u64,
        what: &str,
    ) -> Result<Message, DnsError> {
        let request_mac = match key {
            Some(key) => {
                message
                    .finalize(key.signer(), now)
                    .map_err(|e| DnsError::Encode {
                        what: what.to_owned(),
                        reason: e.to_string(),
                    })?;
                message.signature().map(|s| s.data.mac.clone())
            }
            None => None,
        };
        let bytes = message.to_vec().map_err(|e| DnsError::Encode {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        let id = message.metadata.id;
        let use_tcp = self.transport == Transport::Tcp || bytes.len() > UDP_MAX_REQUEST;
        let mut raw = if use_tcp {
            self.tcp(&bytes, what).await?
        } else {
            self.udp(&bytes, id, what).await?
        };
        let mut answer = self.parse(&raw, id, what)?;
        if answer.metadata.truncation && !use_tcp {
            tracing::debug!(server = %self.addr, what, "truncated over UDP, retrying over TCP");
            raw = self.tcp(&bytes, what).await?;
            answer = self.parse(&raw, id, what)?;
        }
        if let (Some(key), Some(mac)) = (key, request_mac) {
            self.check_tsig(&answer, &raw, key, &mac, true, now, what)?;
        }
        Ok(answer)
    }

    fn parse(&self, raw: &[u8], id: u16, what: &str) -> Result<Message, DnsError> {
        let answer = Message::from_vec(raw).map_err(|e| self.protocol(what, e.to_string()))?;
        if answer.metadata.id != id {
            return Err(self.protocol(what, "the answer's id does not match the request".into()));
        }
        Ok(answer)
    }

    /// RFC 8945 §5.3.2: BADKEY and BADSIG answers are unsigned, so their
    /// TSIG error is read before any verification (verifying first is what
    /// makes hickory's client report a "truncated HMAC").
    ///
    /// `previous_mac` is the request's MAC for the first answer, and the
    /// previous answer's MAC for the later messages of a zone transfer
    /// (`first` false, RFC 8945 §5.3.1). Returns this answer's MAC (empty
    /// for an unsigned error answer).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_tsig(
        &self,
        answer: &Message,
        raw: &[u8],
        key: &TsigKey,
        previous_mac: &[u8],
        first: bool,
        now: u64,
        what: &str,
    ) -> Result<Vec<u8>, DnsError> {
        let key_name = key.name().to_string();
        let Some(tsig) = answer.signature() else {
            // A server that does not do TSIG at all, or refuses before
            // looking at it: the rcode says which, callers name it.
            if answer.metadata.response_code == ResponseCode::NoError {
                return Err(self.protocol(what, format!(
                    "the answer is not TSIG-signed although the request was signed with {key_name}"
                )));
            }
            return Ok(Vec::new());
        };
        match tsig.data.error {
            Some(TsigError::BadKey) => {
                return Err(DnsError::BadKey {
                    server: self.addr,
                    key: key_name,
                    algorithm: key.algorithm().as_str().to_owned(),
                });
            }
            Some(TsigError::BadSig) => {
                return Err(DnsError::BadSig {
                    server: self.addr,
                    key: key_name,
                });
            }
            Some(TsigError::BadTime) => {
                let skew = server_time(&tsig.data.other).map(|t| t as i64 - now as i64);
                return Err(DnsError::BadTime {
                    server: self.addr,
                    key: key_name,
                    skew,
                });
            }
            Some(other) => {
                return Err(
                    self.protocol(what, format!("TSIG error {other:?} with key {key_name}"))
                );
            }
            None => {}
        }
        // hickory computes `time - fudge` unchecked: refuse an answer whose
        // time is below its fudge (nonsense from the network) before that.
        if tsig.data.time < u64::from(tsig.data.fudge) {
            return Err(self.protocol(
                what,
                format!("the answer's TSIG time {} is impossible", tsig.data.time),
            ));
        }
        let (mac, _, valid) = key
            .signer()
            .verify_message_byte(raw, Some(previous_mac), first)
            .map_err(|e| {
                self.protocol(
                    what,
                    format!(
                        "the answer's TSIG signature does not verify with key {key_name} ({e})"
                    ),
                )
            })?;
        // RFC 8945 §5.4.3: the answer's time must be within its fudge of ours.
        if !valid.contains(&now) {
            return Err(DnsError::BadTime {
                server: self.addr,
                key: key_name,
                skew: Some(tsig.data.time as i64 - now as i64),
            });
        }
        Ok(mac)
    }

    async fn udp(&self, bytes: &[u8], id: u16, what: &str) -> Result<Vec<u8>, DnsError> {
        let io = |source| DnsError::Io {
            server: self.addr,
            what: what.to_owned(),
            source,
        };
        let local: SocketAddr = if self.addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal address")
        } else {
            "[::]:0".parse().expect("literal address")
        };
        let socket = UdpSocket::bind(local).await.map_err(io)?;
        socket.connect(self.addr).await.map_err(io)?;
        socket.send(bytes).await.map_err(io)?;
        let mut buf = vec![0u8; 65535];
        let recv = async {
            loop {
                let n = socket.recv(&mut buf).await?;
                // Stray datagrams (a late answer to an earlier try) are skipped.
                if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                    return Ok::<usize, std::io::Error>(n);
                }
            }
        };
        let n = tokio::time::timeout(self.timeout, recv)
            .await
            .map_err(|_| self.timeout_error(what))?
            .map_err(io)?;
        buf.truncate(n);
        Ok(buf)
    }

    async fn tcp(&self, bytes: &[u8], what: &str) -> Result<Vec<u8>, DnsError> {
        let io = |source| DnsError::Io {
            server: self.addr,
            what: what.to_owned(),
            source,
        };
        let len = u16::try_from(bytes.len()).map_err(|_| DnsError::Encode {
            what: what.to_owned(),
            reason: format!("{} bytes is more than a DNS message can hold", bytes.len()),
        })?;
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            let mut framed = Vec::with_capacity(bytes.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(bytes);
            stream.write_all(&framed).await?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).await?;
            let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut answer).await?;
            Ok::<Vec<u8>, std::io::Error>(answer)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.timeout_error(what))?
            .map_err(io)
    }

    pub(crate) fn timeout_error(&self, what: &str) -> DnsError {
        DnsError::Timeout {
            server: self.addr,
            what: what.to_owned(),
            after: self.timeout,
        }
    }

    pub(crate) fn protocol(&self, what: &str, reason: String) -> DnsError {
        DnsError::Protocol {
            server: self.addr,
            what: what.to_owned(),
            reason,
        }
    }
}

/// The server's clock from a BADTIME answer's Other Data: "a 48-bit
/// unsigned integer containing the server's current time" (RFC 8945 §4.3).
fn server_time(other: &[u8]) -> Option<u64> {
    if other.len() != 6 {
        return None;
    }
    Some(other.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}
