//! NOTIFY (RFC 1996) from the primary: a UDP listener that answers a
//! NOTIFY for a watched zone and wakes the secondary, so a new CSR is seen
//! at once instead of at the next poll.
//!
//! A NOTIFY is only a hint: it triggers one SOA query, as a poll would
//! (RFC 1996 §3.7: "the slave ... should query the master for the SOA").
//! It carries no data we trust, so it needs no TSIG; a flood of them costs
//! at most one SOA query per second ([`MIN_GAP`] is the watcher's job).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::Name;
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// The least time between two looks at the zones, however many NOTIFYs come.
pub const MIN_GAP: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds `addr` and answers NOTIFYs for `zones` until the task is dropped;
/// each one for a watched zone wakes `wake`.
pub async fn listen(
    addr: SocketAddr,
    zones: Vec<Name>,
    wake: Arc<Notify>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let socket = UdpSocket::bind(addr).await?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let Some((answer, watched)) = answer(&buf[..n], &zones) else {
                continue;
            };
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, peer).await;
            }
            if watched {
                tracing::debug!(%peer, "NOTIFY: looking at the zones");
                wake.notify_one();
            }
        }
    }))
}

/// The answer to `raw` and whether it was a NOTIFY for a watched zone;
/// `None` for anything that is not a NOTIFY query (no answer is sent).
fn answer(raw: &[u8], zones: &[Name]) -> Option<(Message, bool)> {
    let request = Message::from_vec(raw).ok()?;
    if request.metadata.op_code != OpCode::Notify
        || request.metadata.message_type != MessageType::Query
    {
        return None;
    }
    let query = request.queries.first()?.clone();
    let watched = zones
        .iter()
        .any(|z| z.eq_case(query.name()) || z == query.name());
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Notify);
    response.metadata.authoritative = true;
    // RFC 1996 §4.7 leaves the answer to a NOTIFY for a zone we do not
    // serve open; REFUSED tells the operator their also-notify is wrong.
    if !watched {
        response.metadata.response_code = ResponseCode::Refused;
    }
    response.add_query(query);
    Some((response, watched))
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;

    use super::*;

    fn notify(zone: &str) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Notify);
        m.add_query(Query::query(
            Name::from_ascii(zone).expect("name"),
            RecordType::SOA,
        ));
        m.to_vec().expect("encode")
    }

    #[test]
    fn a_notify_for_a_watched_zone_is_answered_and_wakes() {
        let zones = vec![Name::from_ascii("example.test.").expect("zone")];
        let (a, watched) = answer(&notify("example.test."), &zones).expect("answered");
        assert!(watched);
        assert_eq!(a.metadata.id, 7);
        assert_eq!(a.metadata.op_code, OpCode::Notify);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        let (a, watched) = answer(&notify("other.test."), &zones).expect("answered");
        assert!(!watched);
        assert_eq!(a.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn anything_else_gets_no_answer() {
        let zones = vec![Name::from_ascii("example.test.").expect("zone")];
        assert!(answer(b"", &zones).is_none());
        assert!(answer(b"\x00\x07garbage", &zones).is_none());
        let mut q = Message::new(1, MessageType::Query, OpCode::Query);
        q.add_query(Query::query(
            Name::from_ascii("example.test.").expect("n"),
            RecordType::SOA,
        ));
        assert!(answer(&q.to_vec().expect("encode"), &zones).is_none());
        let raw = notify("example.test.");
        for n in 0..raw.len() {
            let _ = answer(&raw[..n], &zones);
        }
    }
}
