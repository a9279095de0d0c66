-- Kelpie schema, version 8 (mirrors sqlite/0008): a background run's stored stream is
-- deleted once it is no longer served (its run is older than the window streams are kept
-- for, and has ended). `stream_pruned` records that, so a reader is told the stream expired
-- instead of being served an empty one.
ALTER TABLE runs ADD COLUMN stream_pruned BOOLEAN NOT NULL DEFAULT FALSE;
-- The background runs whose streams are still stored, oldest first: what pruning walks.
CREATE INDEX runs_with_stream ON runs (created_at) WHERE background AND NOT stream_pruned;
