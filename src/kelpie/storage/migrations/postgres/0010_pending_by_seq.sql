-- Kelpie schema, version 10: rows waiting for a vector, in key order across every agent and
-- archive. The embedding worker takes the oldest first; with only the (scope, seq) indexes
-- SQLite sorted every pending row (or scanned the whole FTS table) for each batch, so a
-- backlog made each batch slower, on the event loop (a soak stalled for seconds a batch).
CREATE INDEX message_index_pending_seq ON message_index (seq) WHERE vector IS NULL;
CREATE INDEX passage_index_pending_seq ON passage_index (seq) WHERE vector IS NULL;
