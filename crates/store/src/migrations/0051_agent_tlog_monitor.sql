-- The agent's transparency-log monitor. One row per issuer with a log:
-- the last checkpoint it verified (with the tree's right edge), so a
-- restarted agent continues from there and a log rewritten while it was
-- down is caught by its first poll.
CREATE TABLE agent_tlog_state (
    issuer TEXT PRIMARY KEY,
    log TEXT NOT NULL,
    state TEXT NOT NULL,
    size BIGINT NOT NULL,
    verified_at BIGINT NOT NULL,
    polled_at BIGINT,
    last_error TEXT
);

-- What the monitor found: a certificate for a managed name the agent did
-- not order, or a log that is not an extension of what it verified. The key
-- makes a finding recorded once however often it is seen again (every poll
-- of a forked log, a crash between recording and moving on).
CREATE TABLE agent_tlog_alerts (
    alert_key TEXT PRIMARY KEY,
    issuer TEXT NOT NULL,
    kind TEXT NOT NULL,
    log_index BIGINT,
    serial TEXT,
    names TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
)
