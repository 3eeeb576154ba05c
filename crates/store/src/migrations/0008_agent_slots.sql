-- Slots: each managed certificate has a primary and, when configured, a
-- backup from a second CA with its own key (DESIGN.md story 4). The state
-- that was per name (order in flight, backoff, ARI window) is per slot now,
-- and each slot names its current certificate explicitly instead of "the
-- one with the latest notAfter" (a later-expiring backup must never become
-- the primary by accident).
CREATE TABLE agent_slots (
    name TEXT NOT NULL,
    slot TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    current_issuer TEXT,
    current_serial TEXT,
    order_url TEXT,
    order_key_pem TEXT,
    failures BIGINT NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    ari_start BIGINT,
    ari_end BIGINT,
    ari_chosen BIGINT,
    ari_next_poll BIGINT,
    crl_next_check BIGINT,
    updated_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (name, slot)
);
INSERT INTO agent_slots (name, slot, fingerprint, order_url, order_key_pem, failures, next_attempt, last_error, ari_start, ari_end, ari_chosen, ari_next_poll, updated_at)
    SELECT name, 'primary', fingerprint, order_url, order_key_pem, failures, next_attempt, last_error, ari_start, ari_end, ari_chosen, ari_next_poll, updated_at FROM agent_state;
INSERT INTO agent_slots (name, slot)
    SELECT DISTINCT name, 'primary' FROM agent_certificates WHERE name NOT IN (SELECT name FROM agent_slots);
ALTER TABLE agent_certificates ADD COLUMN slot TEXT NOT NULL DEFAULT 'primary';
-- Revocation as the agent learned it (CRL, ARI + CRL, its own revoke).
ALTER TABLE agent_certificates ADD COLUMN revoked_at BIGINT;
ALTER TABLE agent_certificates ADD COLUMN revocation_reason TEXT;
UPDATE agent_slots SET
    current_issuer = (SELECT c.issuer FROM agent_certificates c WHERE c.name = agent_slots.name ORDER BY c.not_after DESC, c.obtained_at DESC LIMIT 1),
    current_serial = (SELECT c.serial FROM agent_certificates c WHERE c.name = agent_slots.name ORDER BY c.not_after DESC, c.obtained_at DESC LIMIT 1);
DROP TABLE agent_state;
CREATE INDEX agent_certificates_spki ON agent_certificates (spki_sha256);
-- Which slot each certificate's deploy targets and resolver serve.
CREATE TABLE agent_served (
    name TEXT PRIMARY KEY,
    slot TEXT NOT NULL,
    reason TEXT NOT NULL,
    changed_at BIGINT NOT NULL
);
-- Keys revoked or reported for keyCompromise: never used again by any slot.
CREATE TABLE agent_blocked_keys (
    spki_sha256 TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    blocked_at BIGINT NOT NULL
);
-- Named lifecycle events (obtained, swapped, revoked, deployed, failed…).
CREATE TABLE agent_events (
    at BIGINT NOT NULL,
    name TEXT NOT NULL,
    slot TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX agent_events_at ON agent_events (at);
-- Small counters; `generation` changes whenever a command outside the
-- daemon changes what it must serve (swap, revoke, compromised).
CREATE TABLE agent_meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
)
