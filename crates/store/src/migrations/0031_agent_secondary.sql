-- What the DNS certificate secondary found in the zones it watches: one row
-- per `_letsencrypt._tcp.HOST` with a CSR record, accepted (it becomes a
-- managed certificate named "dns:HOST") or refused with the reason. Kept so
-- that a restart, `certkeeper status` and a zone that cannot be read right
-- now all see the last known CSRs, and an unchanged zone (same SOA serial)
-- is not transferred again.
CREATE TABLE agent_secondary_hosts (
    host TEXT PRIMARY KEY,
    zone TEXT NOT NULL,
    csr_pem TEXT NOT NULL,
    accepted BIGINT NOT NULL,
    problem TEXT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE TABLE agent_secondary_zones (
    zone TEXT PRIMARY KEY,
    serial BIGINT NOT NULL,
    checked_at BIGINT NOT NULL,
    last_error TEXT NOT NULL
)
