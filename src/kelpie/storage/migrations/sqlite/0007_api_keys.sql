-- API keys. Only a SHA-256 digest of each key's secret is kept (the key is shown once, at
-- creation). A revoked key keeps its row, so its name and times stay listable and its id
-- is never reused; any row at all turns key authentication on (README, "API keys").
CREATE TABLE api_keys (
    id                     TEXT PRIMARY KEY,
    name                   TEXT NOT NULL,
    secret_hash            TEXT NOT NULL,
    admin                  INTEGER NOT NULL DEFAULT 0,
    rate_limit_per_minute  INTEGER,
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER,
    last_used_at           INTEGER,
    revoked_at             INTEGER
);
CREATE INDEX api_keys_by_created ON api_keys (created_at, id);
