-- Kelpie schema, version 8: a background run's stored stream is deleted once it is no
-- longer served (its run is older than the window streams are kept for, and has ended).
-- `stream_pruned` records that, so a reader is told the stream expired (even after the
-- wall clock stepped back) instead of being served an empty one.
ALTER TABLE runs ADD COLUMN stream_pruned INTEGER NOT NULL DEFAULT 0;
-- The background runs whose streams are still stored, oldest first: what pruning walks.
CREATE INDEX runs_with_stream ON runs (created_at) WHERE background = 1 AND stream_pruned = 0;
