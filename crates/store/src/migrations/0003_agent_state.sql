-- Per managed certificate: the order in flight (URL and the key its CSR
-- uses, so a restart finishes the same order), failure backoff, and the
-- CA's ARI window. All of it survives kill -9.
CREATE TABLE agent_state (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    order_url TEXT,
    order_key_pem TEXT,
    failures BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    last_error TEXT,
    ari_start BIGINT,
    ari_end BIGINT,
    ari_chosen BIGINT,
    ari_next_poll BIGINT,
    updated_at BIGINT NOT NULL
)
