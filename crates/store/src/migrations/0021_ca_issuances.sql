-- Boulder reserves a serial and records the intent to sign before any
-- signature exists, so every signature the CA key ever makes is accounted
-- for. A row is `intent` from before signing until the certificate is
-- recorded (`issued`, in the certificate's own transaction), or the signed
-- certificate is thrown away (`discarded`, with its DER and why) or signing
-- failed (`failed`). An `intent` that outlives a crash marks a signature
-- that may exist but was never served.
CREATE TABLE ca_issuances (
    serial TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    names TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    profile TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT,
    cert_der TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX ca_issuances_state ON ca_issuances (state, created_at)
