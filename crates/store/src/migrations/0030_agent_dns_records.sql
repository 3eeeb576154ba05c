-- TXT records the dns-01 solver added to a zone by RFC 2136 UPDATE and has
-- not deleted yet. Written before the UPDATE is sent, deleted after the
-- record is removed again: a process killed in between removes exactly
-- these records (never the RRset) at its next start.
CREATE TABLE agent_dns_records (
    id TEXT PRIMARY KEY,
    certificate TEXT NOT NULL,
    server TEXT NOT NULL,
    tsig_key TEXT NOT NULL,
    zone TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at BIGINT NOT NULL
)
