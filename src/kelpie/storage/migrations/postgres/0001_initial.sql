-- Kelpie schema on PostgreSQL, version 1 (mirrors sqlite/0001_initial.sql; every file here
-- has the SQLite file of the same name as its twin, so both backends share version ids).
--
-- As on SQLite: times are BIGINT microseconds since the Unix epoch (UTC), so cursors and
-- `migrate-db` carry the same integers; each table keeps the columns it is filtered, joined
-- or ordered by, plus the object's remaining fields as JSON in `data`. Every list path has
-- an index ending in (created_at, id), the strict cursor order.
--
-- PostgreSQL specifics:
-- - Ids, names, labels, tags and keys are COLLATE "C": cursor order is byte order, as on
--   SQLite, whatever the database's locale (under en_US '-' would sort as if absent).
-- - `data` is TEXT, the exact JSON the store wrote, and SQL never reads inside it: JSONB
--   would refuse the \u0000 that a description or a tool's output may hold (SQLite keeps
--   it) and would parse every write. What SQL filters on or changes by itself is a column
--   of its own: block values and descriptions (NUL-free copies, for substring search),
--   conversation summaries, and the fields a touch or a step moves without rewriting the
--   row (agents' updated_at and last_run_* / last_stop_reason, conversations' updated_at),
--   which the store lays over the JSON when it reads the row.
-- - Flags are BOOLEAN.

CREATE TABLE agents (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    agent_type  TEXT NOT NULL,
    hidden      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    last_run_completion   BIGINT,
    last_run_duration_ms  BIGINT,
    last_stop_reason      TEXT,
    data        TEXT NOT NULL
);
CREATE INDEX agents_by_created ON agents (created_at, id);
CREATE INDEX agents_by_updated ON agents (updated_at, id);
CREATE INDEX agents_by_name ON agents (name, created_at, id);

CREATE TABLE agent_tags (
    agent_id  TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tag       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (agent_id, tag)
);
CREATE INDEX agent_tags_by_tag ON agent_tags (tag, agent_id);

CREATE TABLE blocks (
    id          TEXT COLLATE "C" PRIMARY KEY,
    label       TEXT COLLATE "C" NOT NULL,
    is_template BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    value       TEXT NOT NULL,
    description TEXT,
    data        TEXT NOT NULL
);
CREATE INDEX blocks_by_created ON blocks (created_at, id);
CREATE INDEX blocks_by_label ON blocks (label, created_at, id);

CREATE TABLE block_tags (
    block_id  TEXT COLLATE "C" NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    tag       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (block_id, tag)
);
CREATE INDEX block_tags_by_tag ON block_tags (tag, block_id);

-- An agent sees each attached block under its label; labels are unique per agent.
CREATE TABLE agent_blocks (
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    block_id    TEXT COLLATE "C" NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    label       TEXT COLLATE "C" NOT NULL,
    attached_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, block_id),
    UNIQUE (agent_id, label)
);
CREATE INDEX agent_blocks_by_block ON agent_blocks (block_id, agent_id);

CREATE TABLE tools (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    tool_type   TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX tools_by_created ON tools (created_at, id);
CREATE INDEX tools_by_type ON tools (tool_type, created_at, id);

CREATE TABLE agent_tools (
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tool_id     TEXT COLLATE "C" NOT NULL REFERENCES tools (id) ON DELETE CASCADE,
    attached_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, tool_id)
);
CREATE INDEX agent_tools_by_tool ON agent_tools (tool_id, agent_id);

CREATE TABLE conversations (
    id              TEXT COLLATE "C" PRIMARY KEY,
    agent_id        TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    archived        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_message_at BIGINT,
    summary         TEXT,
    data            TEXT NOT NULL
);
CREATE INDEX conversations_by_agent ON conversations (agent_id, created_at, id);
CREATE INDEX conversations_by_agent_last_message
    ON conversations (agent_id, last_message_at, id);

-- conversation_id is NULL for the agent's default thread.
CREATE TABLE messages (
    id              TEXT COLLATE "C" PRIMARY KEY,
    agent_id        TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    conversation_id TEXT COLLATE "C",
    run_id          TEXT COLLATE "C",
    step_id         TEXT COLLATE "C",
    role            TEXT COLLATE "C" NOT NULL,
    created_at      BIGINT NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX messages_by_agent_conversation
    ON messages (agent_id, conversation_id, created_at, id);
-- Partial: messages outside a run (the system message) never touch these two.
CREATE INDEX messages_by_run ON messages (run_id, created_at, id) WHERE run_id IS NOT NULL;
CREATE INDEX messages_by_step ON messages (step_id) WHERE step_id IS NOT NULL;

CREATE TABLE runs (
    id              TEXT COLLATE "C" PRIMARY KEY,
    agent_id        TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    conversation_id TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL,
    background      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    data            TEXT NOT NULL
);
CREATE INDEX runs_by_agent ON runs (agent_id, created_at, id);
CREATE INDEX runs_by_conversation ON runs (conversation_id, created_at, id);
CREATE INDEX runs_by_status ON runs (status, created_at, id);

CREATE TABLE steps (
    id          TEXT COLLATE "C" PRIMARY KEY,
    run_id      TEXT COLLATE "C" REFERENCES runs (id) ON DELETE CASCADE,
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX steps_by_run ON steps (run_id, created_at, id);
CREATE INDEX steps_by_agent ON steps (agent_id, created_at, id);

CREATE TABLE archives (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX archives_by_created ON archives (created_at, id);

CREATE TABLE agent_archives (
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    archive_id  TEXT COLLATE "C" NOT NULL REFERENCES archives (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, archive_id)
);
CREATE INDEX agent_archives_by_archive ON agent_archives (archive_id, agent_id);

CREATE TABLE passages (
    id          TEXT COLLATE "C" PRIMARY KEY,
    archive_id  TEXT COLLATE "C" NOT NULL REFERENCES archives (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL,
    text        TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX passages_by_archive ON passages (archive_id, created_at, id);
