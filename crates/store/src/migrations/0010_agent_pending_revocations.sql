-- Revocations decided but not yet confirmed by the CA. Written (with the
-- local revocation mark) before the request is sent, deleted when the CA
-- answers; a process killed in between sends it again at its next start.
CREATE TABLE agent_pending_revocations (
    issuer TEXT NOT NULL,
    serial TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, serial)
)
