-- Kelpie extensions: per-agent working memory (key/value with TTL) and block history.

-- Both tables are rowid tables, not WITHOUT ROWID: their rows carry values (up to 64 KiB
-- here, whole block values in block_history), and SQLite keeps WITHOUT ROWID rows inside
-- the key's b-tree, which suits small rows only (measured: a block PATCH with its history
-- entry took 420 µs WITHOUT ROWID, 280 µs with a rowid).

-- Listed in key order (the cursor is a key; a prefix is a key range), so the primary key
-- is the only index the list path needs. `value` is compact JSON; `expires_at` is NULL for
-- a key that never expires. Rows past their expiry are invisible to reads and deleted by
-- the next write to the same agent's working memory.
CREATE TABLE working_memory (
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    expires_at  INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, key)
);

-- One row per change to a block, numbered per block; listed by seq. Kept with the block
-- (deleted with it), not with the agent that made the change. `data` is the whole entry.
CREATE TABLE block_history (
    block_id    TEXT NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (block_id, seq)
);
