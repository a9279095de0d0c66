-- API keys (mirrors sqlite/0007). Only a SHA-256 digest of each key's secret is kept (the
-- key is shown once, at creation). A revoked key keeps its row, so its name and times stay
-- listable and its id is never reused; any row at all turns key authentication on.
CREATE TABLE api_keys (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    name                   TEXT NOT NULL,
    secret_hash            TEXT NOT NULL,
    admin                  BOOLEAN NOT NULL DEFAULT FALSE,
    rate_limit_per_minute  INTEGER,
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT,
    last_used_at           BIGINT,
    revoked_at             BIGINT
);
CREATE INDEX api_keys_by_created ON api_keys (created_at, id);
