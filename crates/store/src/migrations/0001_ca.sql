-- The built-in CA's state. Documents are JSON in `data`; columns beside them
-- exist only to index, constrain or update atomically.
CREATE TABLE ca_accounts (
    id TEXT PRIMARY KEY,
    thumbprint TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE ca_orders (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    data TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX ca_orders_account ON ca_orders (account_id, status);
CREATE TABLE ca_authzs (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    identifier TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX ca_authzs_reuse ON ca_authzs (account_id, identifier, status);
CREATE INDEX ca_authzs_status ON ca_authzs (status);
CREATE TABLE ca_certificates (
    serial TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    names TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    profile TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    status TEXT NOT NULL,
    revoked_at BIGINT,
    revocation_reason BIGINT,
    revoked_spki_sha256 TEXT,
    issued_at BIGINT NOT NULL
);
CREATE INDEX ca_certificates_spki ON ca_certificates (spki_sha256);
CREATE INDEX ca_certificates_status ON ca_certificates (status, not_after);
CREATE TABLE ca_blocked_keys (
    spki_sha256 TEXT PRIMARY KEY,
    source_serial TEXT NOT NULL,
    blocked_at BIGINT NOT NULL
);
CREATE TABLE ca_eab_keys (
    kid TEXT PRIMARY KEY,
    hmac_key TEXT NOT NULL,
    bound_account TEXT,
    created_at BIGINT NOT NULL
)
