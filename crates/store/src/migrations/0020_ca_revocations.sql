-- Every revocation the CA performs, as an append-only audit record: the
-- certificate's public key (SPKI, base64 DER, and its SHA-256), the reason
-- in force, the reason asked for, and how the request was signed. In the
-- 2024 Let's Encrypt incident (Mozilla Bugzilla 1886876) keys had been
-- logged only at issuance, so not every compromised key could be blocked:
-- these rows keep the key as it was at revocation.
CREATE TABLE ca_revocations (
    id TEXT PRIMARY KEY,
    serial TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    spki_der TEXT NOT NULL,
    reason BIGINT NOT NULL,
    requested_reason BIGINT,
    method TEXT NOT NULL,
    requester TEXT NOT NULL,
    source_serial TEXT,
    key_blocked BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX ca_revocations_serial ON ca_revocations (serial, recorded_at);
CREATE INDEX ca_revocations_spki ON ca_revocations (spki_sha256)
