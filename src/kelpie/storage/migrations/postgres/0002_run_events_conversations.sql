-- Kelpie schema, version 2 (mirrors sqlite/0002): the event log of background runs (what a
-- resumed stream replays, by seq id), retried sends found by their otids, and hidden
-- conversations.

-- One row per streamed event of a background run, in seq order. `event` is the SSE event
-- name (NULL for plain data events, 'error' for the error event); `data` is the payload.
CREATE TABLE run_events (
    run_id  TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq_id  BIGINT NOT NULL,
    event   TEXT,
    data    TEXT NOT NULL,
    PRIMARY KEY (run_id, seq_id)
);

-- A digest of a request's message otids: a retried send finds the run it already started.
ALTER TABLE runs ADD COLUMN request_token TEXT COLLATE "C";
CREATE INDEX runs_by_request_token ON runs (agent_id, request_token)
    WHERE request_token IS NOT NULL;

ALTER TABLE conversations ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX conversations_by_created ON conversations (created_at, id);
-- last_message_at is always set (to created_at until a message arrives), so it pages strictly.
CREATE INDEX conversations_by_last_message ON conversations (last_message_at, id);
