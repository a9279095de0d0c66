-- Kelpie extensions (mirrors sqlite/0004): per-agent working memory (key/value with TTL)
-- and block history.

-- Listed in key order (the cursor is a key; a prefix is a key range: byte order under
-- COLLATE "C", so the primary key serves both), so the primary key is the only index the
-- list path needs. `value` is compact JSON, kept as written; `expires_at` is NULL for a key
-- that never expires. Rows past their expiry are invisible to reads and deleted by the next
-- write to the same agent's working memory.
CREATE TABLE working_memory (
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    key         TEXT COLLATE "C" NOT NULL,
    value       TEXT NOT NULL,
    expires_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);

-- One row per change to a block, numbered per block; listed by seq. Kept with the block
-- (deleted with it), not with the agent that made the change. `data` is the whole entry.
CREATE TABLE block_history (
    block_id    TEXT COLLATE "C" NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    seq         BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (block_id, seq)
);
