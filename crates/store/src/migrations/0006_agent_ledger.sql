-- The agent's issuance ledger and the CA's "not before" answers, so a
-- restart loop can never spend a CA's rate limits (DESIGN.md story 1).
-- Certificates obtained before this migration get their keys from the
-- agent on its next start (identifier_set = '' marks them).
ALTER TABLE agent_certificates ADD COLUMN identifier_set TEXT NOT NULL DEFAULT '';
-- Registered domains of the names, each wrapped in commas (",example.com,")
-- so a LIKE '%,domain,%' matches whole domains only.
ALTER TABLE agent_certificates ADD COLUMN registered_domains TEXT NOT NULL DEFAULT '';
CREATE INDEX agent_certificates_ledger ON agent_certificates (issuer, identifier_set, obtained_at);
-- Every newOrder the agent sent (or was about to send), per issuer account:
-- orders count against a CA's limits even when they fail.
CREATE TABLE agent_orders (
    issuer TEXT NOT NULL,
    identifier_set TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX agent_orders_issuer ON agent_orders (issuer, created_at);
-- A CA's Retry-After (429/503) per issuer account and identifier set; the
-- empty set means the whole account. No request for the set before not_before.
CREATE TABLE agent_retry_after (
    issuer TEXT NOT NULL,
    identifier_set TEXT NOT NULL,
    not_before BIGINT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (issuer, identifier_set)
)
