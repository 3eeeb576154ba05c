-- Where each certificate sits in the CA's transparency log. The log itself
-- lives in its tile files (they are what verifiers download); this is only
-- the lookup serial -> leaf index, rebuilt from the entry bundles after a
-- crash between publishing a checkpoint and recording the index here.
CREATE TABLE ca_tlog_entries (
    serial TEXT PRIMARY KEY,
    leaf_index BIGINT NOT NULL UNIQUE,
    logged_at BIGINT NOT NULL
)
