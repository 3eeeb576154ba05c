-- Keys the rotator manages (HPKE key configs, JWKS signing keys): one row
-- per key, numbered per kind with an RFC 9458 key id (0-255). The private
-- key is sealed (AES-256-GCM under the operator's key-encryption key) before
-- it reaches this table. `changed_at` is the last state change, unix seconds:
-- every rotation rule is an age measured from it.
CREATE TABLE rotated_keys (
    kind TEXT NOT NULL,
    id BIGINT NOT NULL,
    suite TEXT NOT NULL,
    state TEXT NOT NULL,
    public_key TEXT NOT NULL,
    private_sealed TEXT NOT NULL,
    changed_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
)
