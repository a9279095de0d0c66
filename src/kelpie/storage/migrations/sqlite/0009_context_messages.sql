-- Kelpie schema, version 9: a thread's in-context message ids as rows, so a step commit
-- appends the ids it adds instead of rewriting the whole list (a JSON array in the agent's
-- or the conversation's row until now) on every step.

-- One row per in-context message, in `position` order. `thread` is '' for the agent's own
-- thread, else the conversation's id. Positions only grow: an append takes the next ones,
-- a replacement (compaction, reset, PATCH) deletes the rows and writes the new list after
-- the old positions. `context_next` (on the agent or the conversation row) is the next
-- position to take: it changes with every write of the list, so a reader that cached the
-- list knows it is still current by that number alone.
CREATE TABLE context_messages (
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    thread      TEXT NOT NULL,
    position    INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    PRIMARY KEY (agent_id, thread, position)
) WITHOUT ROWID;

ALTER TABLE agents ADD COLUMN context_next INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN context_next INTEGER NOT NULL DEFAULT 0;

INSERT INTO context_messages (agent_id, thread, position, message_id)
    SELECT a.id, '', CAST(j.key AS INTEGER), j.value
    FROM agents a, json_each(a.data, '$.message_ids') j;
UPDATE agents SET
    context_next = json_array_length(data, '$.message_ids'),
    data = json_remove(data, '$.message_ids')
    WHERE json_type(data, '$.message_ids') = 'array';

INSERT INTO context_messages (agent_id, thread, position, message_id)
    SELECT c.agent_id, c.id, CAST(j.key AS INTEGER), j.value
    FROM conversations c, json_each(c.data, '$.in_context_message_ids') j;
UPDATE conversations SET
    context_next = json_array_length(data, '$.in_context_message_ids'),
    data = json_remove(data, '$.in_context_message_ids')
    WHERE json_type(data, '$.in_context_message_ids') = 'array';
