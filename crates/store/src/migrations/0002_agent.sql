-- The agent's state: ACME accounts per issuer and every certificate version
-- it obtained (key included, so nothing is lost with a deploy target).
CREATE TABLE agent_accounts (
    issuer TEXT PRIMARY KEY,
    directory_url TEXT NOT NULL,
    credentials TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE agent_certificates (
    serial TEXT NOT NULL,
    name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    names TEXT NOT NULL,
    chain_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    spki_sha256 TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    not_after BIGINT NOT NULL,
    order_url TEXT NOT NULL,
    obtained_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, serial)
);
CREATE INDEX agent_certificates_name ON agent_certificates (name, not_after)
