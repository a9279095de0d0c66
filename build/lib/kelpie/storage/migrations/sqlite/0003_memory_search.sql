-- Search over archival passages and recall messages (issue 6).
--
-- Each searchable row gets an index row with a stable integer key (`seq`, AUTOINCREMENT so a
-- key is never reused: FTS rows and cached vectors refer to it, and VACUUM may renumber an
-- implicit rowid). The index row holds the columns search filters on, and the row's vector:
-- float32 little-endian, with the model id and dimension that made it. A NULL vector is the
-- durable record of embedding work still to do. `vector_seq` orders vector writes, so a cache
-- of an archive's vectors loads only what was written since it last looked.
--
-- FTS5 rows are written in the same transaction as the row they index (passages by trigger,
-- messages by the store), so keyword search finds every acknowledged write, even one whose
-- vector a crash left unwritten.

CREATE TABLE search_counters (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
);
INSERT INTO search_counters (name, value) VALUES ('passage', 0), ('message', 0);

CREATE TABLE passage_index (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    passage_id  TEXT NOT NULL UNIQUE,
    archive_id  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    model       TEXT,
    dim         INTEGER,
    vector      BLOB,
    vector_seq  INTEGER
);
CREATE INDEX passage_index_by_archive ON passage_index (archive_id, vector_seq);
CREATE INDEX passage_index_by_archive_created ON passage_index (archive_id, created_at);
CREATE INDEX passage_index_pending ON passage_index (archive_id, seq) WHERE vector IS NULL;

CREATE TABLE passage_tags (
    passage_id  TEXT NOT NULL,
    archive_id  TEXT NOT NULL,
    tag         TEXT NOT NULL,
    PRIMARY KEY (passage_id, tag)
);
CREATE INDEX passage_tags_by_tag ON passage_tags (archive_id, tag, passage_id);

CREATE VIRTUAL TABLE passage_fts USING fts5 (
    text, tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER passages_indexed AFTER INSERT ON passages BEGIN
    INSERT INTO passage_index (passage_id, archive_id, created_at)
        VALUES (new.id, new.archive_id, new.created_at);
    INSERT INTO passage_fts (rowid, text) VALUES (last_insert_rowid(), new.text);
    INSERT OR IGNORE INTO passage_tags (passage_id, archive_id, tag)
        SELECT new.id, new.archive_id, value FROM json_each(new.data, '$.tags');
END;

-- Fires for cascades too (an archive deleted takes its passages with it).
CREATE TRIGGER passages_unindexed AFTER DELETE ON passages BEGIN
    DELETE FROM passage_fts WHERE rowid IN
        (SELECT seq FROM passage_index WHERE passage_id = old.id);
    DELETE FROM passage_index WHERE passage_id = old.id;
    DELETE FROM passage_tags WHERE passage_id = old.id;
END;

CREATE TABLE message_index (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id       TEXT NOT NULL UNIQUE,
    agent_id         TEXT NOT NULL,
    conversation_id  TEXT,
    role             TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    model            TEXT,
    dim              INTEGER,
    vector           BLOB,
    vector_seq       INTEGER
);
CREATE INDEX message_index_by_agent ON message_index (agent_id, vector_seq);
CREATE INDEX message_index_by_agent_created ON message_index (agent_id, created_at);
CREATE INDEX message_index_pending ON message_index (agent_id, seq) WHERE vector IS NULL;

CREATE VIRTUAL TABLE message_fts USING fts5 (
    text, tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Messages are indexed by the store (the searchable text is computed from the message);
-- deletions, including cascades from a deleted agent, are followed here.
CREATE TRIGGER messages_unindexed AFTER DELETE ON messages BEGIN
    DELETE FROM message_fts WHERE rowid IN
        (SELECT seq FROM message_index WHERE message_id = old.id);
    DELETE FROM message_index WHERE message_id = old.id;
END;

-- Rows written before this migration.
INSERT INTO passage_index (passage_id, archive_id, created_at)
    SELECT id, archive_id, created_at FROM passages ORDER BY created_at, id;
INSERT INTO passage_fts (rowid, text)
    SELECT i.seq, p.text FROM passage_index i JOIN passages p ON p.id = i.passage_id;
INSERT OR IGNORE INTO passage_tags (passage_id, archive_id, tag)
    SELECT p.id, p.archive_id, t.value FROM passages p, json_each(p.data, '$.tags') t;

INSERT INTO message_index (message_id, agent_id, conversation_id, role, created_at)
    SELECT id, agent_id, conversation_id, role, created_at FROM messages
    WHERE role IN ('user', 'assistant', 'tool')
      AND NOT json_extract(data, '$.hidden')
      AND coalesce(json_extract(data, '$.tool_return'), json_extract(data, '$.text'), '') != ''
    ORDER BY created_at, id;
INSERT INTO message_fts (rowid, text)
    SELECT i.seq, coalesce(json_extract(m.data, '$.tool_return'), json_extract(m.data, '$.text'))
    FROM message_index i JOIN messages m ON m.id = i.message_id;
