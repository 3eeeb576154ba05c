//! Reading a whole zone: its SOA serial (one plain query, so an unchanged
//! zone costs one round trip) and a TSIG-signed full zone transfer (AXFR,
//! RFC 5936) over TCP, every message's signature checked (RFC 8945 §5.3.1).
//!
//! The zone comes from the network: sizes are capped and nothing in it can
//! make this panic.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::update::rcode_name;
use crate::{DnsError, Server, TsigKey, query};

/// The most bytes one transfer may bring: a zone of ten thousand hosts, each
/// with a CSR and a chain (~3 kB), fits; a hostile server cannot exhaust memory.
const MAX_TRANSFER_BYTES: usize = 64 * 1024 * 1024;

/// The zone's current SOA serial, from an unsigned query to `server`.
pub async fn soa_serial(server: &Server, zone: &Name) -> Result<u32, DnsError> {
    let answer = query(server, zone, RecordType::SOA).await?;
    if answer.rcode != ResponseCode::NoError {
        return Err(DnsError::Rcode {
            server: server.addr,
            rcode: rcode_name(answer.rcode),
            what: format!("query {zone} SOA"),
        });
    }
    answer
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SOA(soa) if &r.name == zone => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| DnsError::Protocol {
            server: server.addr,
            what: format!("query {zone} SOA"),
            reason: format!(
                "no SOA record for {zone} in the answer: is {zone} a zone on this server?"
            ),
        })
}

/// A complete copy of a zone.
#[derive(Clone, Debug)]
pub struct ZoneTransfer {
    /// The SOA serial the copy is of.
    pub serial: u32,
    /// Every record, the SOA at both ends removed.
    pub records: Vec<Record>,
}

/// Transfers `zone` from `server` with AXFR, signed with `key` at `now`
/// (unix seconds). RFC 5936 §2.2: the transfer is the answer sections of
/// one or more messages, starting and ending with the zone's SOA.
pub async fn axfr(
    server: &Server,
    zone: &Name,
    key: &TsigKey,
    now: u64,
) -> Result<ZoneTransfer, DnsError> {
    let what = format!("AXFR of {zone}");
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    let mut q = Query::new();
    q.set_name(zone.clone())
        .set_query_type(RecordType::AXFR)
        .set_query_class(DNSClass::IN);
    message.add_query(q);
    message
        .finalize(key.signer(), now)
        .map_err(|e| DnsError::Encode {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    let request_mac = message
        .signature()
        .map(|s| s.data.mac.clone())
        .unwrap_or_default();
    let id = message.metadata.id;
    let bytes = message.to_vec().map_err(|e| DnsError::Encode {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let len = u16::try_from(bytes.len()).map_err(|_| DnsError::Encode {
        what: what.clone(),
        reason: "the request is too large".into(),
    })?;
    let io = |source| DnsError::Io {
        server: server.addr,
        what: what.clone(),
        source,
    };
    let timed = |fut| tokio::time::timeout(server.timeout, fut);
    let mut stream = timed(TcpStream::connect(server.addr))
        .await
        .map_err(|_| server.timeout_error(&what))?
        .map_err(io)?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.map_err(io)?;

    let mut previous_mac = request_mac;
    let mut first = true;
    let mut total = 0usize;
    let mut serial = None;
    let mut records = Vec::new();
    loop {
        let raw = read_message(&mut stream, server, &what).await?;
        total = total.saturating_add(raw.len());
        if total > MAX_TRANSFER_BYTES {
            return Err(server.protocol(
                &what,
                format!("the zone is larger than {MAX_TRANSFER_BYTES} bytes; refusing the rest"),
            ));
        }
        let answer = Message::from_vec(&raw).map_err(|e| server.protocol(&what, e.to_string()))?;
        if answer.metadata.id != id {
            return Err(server.protocol(&what, "the answer's id does not match the request".into()));
        }
        // Every message must be signed: an unsigned one could be injected
        // by anyone on the path (RFC 8945 allows gaps; BIND never leaves any).
        if answer.signature().is_none() && answer.metadata.response_code == ResponseCode::NoError {
            return Err(server.protocol(
                &what,
                format!(
                    "a message of the transfer is not TSIG-signed although the request was signed with {}",
                    key.name()
                ),
            ));
        }
        previous_mac = server.check_tsig(&answer, &raw, key, &previous_mac, first, now, &what)?;
        match answer.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::Refused | ResponseCode::NotAuth => {
                return Err(DnsError::Rcode {
                    server: server.addr,
                    rcode: rcode_name(answer.metadata.response_code),
                    what: format!(
                        "{what}: allow the transfer to key {} (allow-transfer {{ key \"{}\"; }}) on the primary",
                        key.name(),
                        key.name()
                    ),
                });
            }
            code => {
                return Err(DnsError::Rcode {
                    server: server.addr,
                    rcode: rcode_name(code),
                    what,
                });
            }
        }
        for record in answer.answers {
            let soa = match &record.data {
                RData::SOA(soa) if &record.name == zone => Some(soa.serial),
                _ => None,
            };
            match (serial, soa) {
                (None, Some(s)) => serial = Some(s),
                (None, None) => {
                    return Err(server.protocol(
                        &what,
                        "the transfer does not start with the zone's SOA".into(),
                    ));
                }
                // The closing SOA: the transfer is complete.
                (Some(_), Some(_)) => {
                    return Ok(ZoneTransfer {
                        serial: serial.unwrap_or_default(),
                        records,
                    });
                }
                (Some(_), None) => records.push(record),
            }
        }
        first = false;
    }
}

async fn read_message(
    stream: &mut TcpStream,
    server: &Server,
    what: &str,
) -> Result<Vec<u8>, DnsError> {
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await?;
        Ok::<Vec<u8>, std::io::Error>(buf)
    };
    tokio::time::timeout(server.timeout, read)
        .await
        .map_err(|_| server.timeout_error(what))?
        .map_err(|source| DnsError::Io {
            server: server.addr,
            what: what.to_owned(),
            source,
        })
}
