-- Consecutive failed validations per account and identifier, and whether
-- the identifier is paused for that account (Let's Encrypt's pausing).
CREATE TABLE ca_paused (
    account_id TEXT NOT NULL,
    identifier TEXT NOT NULL,
    failures BIGINT NOT NULL,
    paused_at BIGINT,
    PRIMARY KEY (account_id, identifier)
)
