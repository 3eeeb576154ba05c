//! RFC 2136 dynamic UPDATE messages and the client that sends them.
//!
//! The builders quote the section of RFC 2136 they implement. The one that
//! matters most for DNS-01 is [`Update::delete_rr`] (§2.5.4): it removes one
//! record by its data, leaving the other TXT records at `_acme-challenge`
//! (another client's, the wildcard's twin) alone — lego's rfc2136 provider
//! deletes the whole RRset instead (lego#1756).

use std::sync::Arc;

use certkeeper_proto::Clock;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::{DnsError, Server, TsigKey};

/// One UPDATE for one zone: prerequisites, then changes, applied by the
/// server atomically (RFC 2136 §3.4: all or nothing).
#[derive(Clone, Debug)]
pub struct Update {
    zone: Name,
    prerequisites: Vec<Record>,
    updates: Vec<Record>,
}

impl Update {
    /// An empty update of `zone`.
    ///
    /// RFC 2136 §2.3: "The Zone Section ... ZTYPE must be SOA, ZCLASS is the
    /// zone's class" — one entry, the zone's apex.
    pub fn new(zone: Name) -> Update {
        Update {
            zone,
            prerequisites: Vec::new(),
            updates: Vec::new(),
        }
    }

    /// The zone updated.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// RFC 2136 §2.5.1, Add To An RRset: "RRs are added to the Update
    /// Section whose NAME, TYPE, TTL, RDLENGTH and RDATA are those being
    /// added, and CLASS is the same as the zone class. Any duplicate RRs
    /// will be silently ignored by the primary master."
    pub fn add(&mut self, name: Name, ttl: u32, rdata: RData) -> &mut Self {
        self.updates.push(Record::from_rdata(name, ttl, rdata));
        self
    }

    /// RFC 2136 §2.5.4, Delete An RR From An RRset: "RRs to be deleted are
    /// added to the Update Section. The NAME, TYPE, RDLENGTH and RDATA must
    /// match the RR being deleted. TTL must be specified as zero (0) and
    /// will otherwise be ignored by the primary master. CLASS must be
    /// specified as NONE to distinguish this from an RR addition. If no such
    /// RRs exist, then this Update RR will be silently ignored by the
    /// primary master."
    pub fn delete_rr(&mut self, name: Name, rdata: RData) -> &mut Self {
        let mut r = Record::from_rdata(name, 0, rdata);
        r.dns_class = DNSClass::NONE;
        self.updates.push(r);
        self
    }

    /// RFC 2136 §2.5.2, Delete An RRset: "One RR is added to the Update
    /// Section whose NAME and TYPE are those of the RRset to be deleted.
    /// TTL must be specified as zero (0) and is otherwise not used by the
    /// primary master. CLASS must be specified as ANY. RDLENGTH must be
    /// zero (0) and RDATA must therefore be empty."
    pub fn delete_rrset(&mut self, name: Name, rtype: RecordType) -> &mut Self {
        let mut r = Record::update0(name, 0, rtype);
        r.dns_class = DNSClass::ANY;
        self.updates.push(r);
        self
    }

    /// RFC 2136 §2.4.1, RRset Exists (Value Independent): "At least one RR
    /// with a specified NAME and TYPE (in the zone and class specified by
    /// the Zone Section) must exist. For this prerequisite, a requestor adds
    /// to the section a single RR whose NAME and TYPE are equal to that of
    /// the zone RRset whose existence is required. RDLENGTH is zero and
    /// RDATA is therefore empty. CLASS must be specified as ANY to
    /// differentiate this condition from that of an actual RR whose RDLENGTH
    /// is naturally zero (0) (e.g., NULL). TTL is specified as zero (0)."
    pub fn require_rrset_exists(&mut self, name: Name, rtype: RecordType) -> &mut Self {
        let mut r = Record::update0(name, 0, rtype);
        r.dns_class = DNSClass::ANY;
        self.prerequisites.push(r);
        self
    }

    /// RFC 2136 §2.4.2, RRset Exists (Value Dependent): "A set of RRs with a
    /// specified NAME and TYPE exists and has the same members with the same
    /// RDATAs as the RRset specified here in this section. ... CLASS is that
    /// of the zone. TTL must be specified as zero (0)."
    pub fn require_rr(&mut self, name: Name, rdata: RData) -> &mut Self {
        self.prerequisites.push(Record::from_rdata(name, 0, rdata));
        self
    }

    /// RFC 2136 §2.4.3, RRset Does Not Exist: "No RRs with a specified NAME
    /// and TYPE (in the zone and class denoted by the Zone Section) can
    /// exist. For this prerequisite, a requestor adds to the section a
    /// single RR whose NAME and TYPE are equal to that of the RRset whose
    /// nonexistence is required. The RDLENGTH of this record is zero (0),
    /// and RDATA field is therefore empty. CLASS must be specified as NONE
    /// in order to distinguish this condition from a valid RR whose RDLENGTH
    /// is naturally zero (0) (for example, the NULL RR). TTL must be
    /// specified as zero (0)."
    pub fn require_rrset_absent(&mut self, name: Name, rtype: RecordType) -> &mut Self {
        let mut r = Record::update0(name, 0, rtype);
        r.dns_class = DNSClass::NONE;
        self.prerequisites.push(r);
        self
    }

    /// RFC 2136 §2.4.4, Name Is In Use: "Name is in use. At least one RR
    /// with a specified NAME (in the zone and class specified by the Zone
    /// Section) must exist. ... CLASS must be specified as ANY ... TYPE must
    /// be specified as ANY ... TTL must be specified as zero (0)."
    pub fn require_name_in_use(&mut self, name: Name) -> &mut Self {
        let mut r = Record::update0(name, 0, RecordType::ANY);
        r.dns_class = DNSClass::ANY;
        self.prerequisites.push(r);
        self
    }

    /// RFC 2136 §2.4.5, Name Is Not In Use: "no RR of any type is owned by a
    /// specified NAME. ... CLASS must be specified as NONE ... TYPE must be
    /// specified as ANY ... TTL must be specified as zero (0)."
    pub fn require_name_not_in_use(&mut self, name: Name) -> &mut Self {
        let mut r = Record::update0(name, 0, RecordType::ANY);
        r.dns_class = DNSClass::NONE;
        self.prerequisites.push(r);
        self
    }

    /// The wire message (RFC 2136 §2: Zone, Prerequisite, Update and
    /// Additional Data sections in the places of Question, Answer,
    /// Authority and Additional).
    pub fn message(&self) -> Message {
        let mut message = Message::new(rand::random(), MessageType::Query, OpCode::Update);
        message.metadata.recursion_desired = false;
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        message.add_query(zone);
        message.answers = self.prerequisites.clone();
        message.authorities = self.updates.clone();
        message
    }
}

/// Sends TSIG-signed updates to one primary server.
#[derive(Clone, Debug)]
pub struct UpdateClient {
    server: Server,
    key: TsigKey,
    clock: Arc<dyn Clock>,
}

impl UpdateClient {
    /// A client for the primary `server`, signing with `key` at `clock`'s time.
    pub fn new(server: Server, key: TsigKey, clock: Arc<dyn Clock>) -> UpdateClient {
        UpdateClient { server, key, clock }
    }

    /// The server updates go to.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The key updates are signed with.
    pub fn key(&self) -> &TsigKey {
        &self.key
    }

    /// Sends one update and maps the answer to a named error.
    pub async fn send(&self, update: &Update) -> Result<(), DnsError> {
        let zone = update.zone.to_string();
        let what = format!("UPDATE of {zone}");
        let now = u64::try_from(self.clock.now()).unwrap_or(0);
        let answer = self
            .server
            .exchange(update.message(), Some(&self.key), now, &what)
            .await?;
        let addr = self.server.addr;
        let first_name = || {
            update
                .updates
                .first()
                .map(|r| r.name.to_string())
                .unwrap_or_else(|| zone.clone())
        };
        match answer.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            ResponseCode::Refused => Err(DnsError::Refused {
                server: addr,
                zone,
                key: self.key.name().to_string(),
            }),
            code @ (ResponseCode::NotZone | ResponseCode::NotAuth) => Err(DnsError::NotZone {
                server: addr,
                name: first_name(),
                zone,
                rcode: rcode_name(code),
            }),
            code @ (ResponseCode::YXDomain
            | ResponseCode::YXRRSet
            | ResponseCode::NXDomain
            | ResponseCode::NXRRSet) => Err(DnsError::Prerequisite {
                server: addr,
                zone,
                rcode: rcode_name(code),
            }),
            code => Err(DnsError::Rcode {
                server: addr,
                rcode: rcode_name(code),
                what,
            }),
        }
    }
}

/// "YXRRSET (RR Set should not exist)": the mnemonic operators grep for,
/// and what it means.
pub(crate) fn rcode_name(code: ResponseCode) -> String {
    let mnemonic = match code {
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        _ => return code.to_str().to_owned(),
    };
    format!("{mnemonic} ({})", code.to_str())
}
