-- CA rate limits, after Boulder's `ratelimits` package: one GCRA theoretical
-- arrival time (TAT, unix milliseconds) per bucket, named `LimitName:key`.
CREATE TABLE ca_limit_buckets (
    bucket TEXT PRIMARY KEY,
    tat BIGINT NOT NULL
);
-- Per-bucket overrides of the policy's defaults (Boulder's overrides file, as rows).
CREATE TABLE ca_limit_overrides (
    limit_name TEXT NOT NULL,
    bucket_key TEXT NOT NULL,
    count BIGINT NOT NULL,
    period_seconds BIGINT NOT NULL,
    burst BIGINT NOT NULL,
    PRIMARY KEY (limit_name, bucket_key)
);
-- The renewal exemption looks certificates up by their identifier set.
CREATE INDEX ca_certificates_names ON ca_certificates (names, issued_at)
