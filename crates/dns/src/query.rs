//! Plain (unsigned, non-recursive) queries, asked of an authoritative server
//! directly: a resolver's cache would hide exactly the lag we look for.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

use crate::{DnsError, Server};

/// What a server answered.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// Whether the server is authoritative for the answer (AA bit).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (SOA on NXDOMAIN/NODATA, NS on referrals).
    pub authorities: Vec<Record>,
    /// Additional section (glue).
    pub additionals: Vec<Record>,
}

/// Asks `server` for `name`/`rtype` without recursion.
pub async fn query(server: &Server, name: &Name, rtype: RecordType) -> Result<Answer, DnsError> {
    let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = false;
    let mut q = Query::new();
    q.set_name(name.clone())
        .set_query_type(rtype)
        .set_query_class(DNSClass::IN);
    message.add_query(q);
    let what = format!("query {name} {rtype}");
    let answer = server.exchange(message, None, 0, &what).await?;
    Ok(Answer {
        rcode: answer.metadata.response_code,
        authoritative: answer.metadata.authoritative,
        answers: answer.answers,
        authorities: answer.authorities,
        additionals: answer.additionals,
    })
}
