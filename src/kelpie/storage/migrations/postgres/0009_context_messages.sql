-- Kelpie schema, version 9 (mirrors sqlite/0009): a thread's in-context message ids as
-- rows, so a step commit appends the ids it adds instead of rewriting the whole list.

-- One row per in-context message, in `position` order. `thread` is '' for the agent's own
-- thread, else the conversation's id. Positions only grow: an append takes the next ones,
-- a replacement (compaction, reset, PATCH) deletes the rows and writes the new list after
-- the old positions. `context_next` (on the agent or the conversation row) is the next
-- position to take: it changes with every write of the list, so a reader that cached the
-- list knows it is still current by that number alone.
CREATE TABLE context_messages (
    agent_id    TEXT COLLATE "C" NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    thread      TEXT COLLATE "C" NOT NULL,
    position    BIGINT NOT NULL,
    message_id  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (agent_id, thread, position)
);

ALTER TABLE agents ADD COLUMN context_next BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN context_next BIGINT NOT NULL DEFAULT 0;

INSERT INTO context_messages (agent_id, thread, position, message_id)
    SELECT a.id, '', j.ordinality - 1, j.value
    FROM agents a, jsonb_array_elements_text(a.data::jsonb -> 'message_ids') WITH ORDINALITY AS j
    WHERE jsonb_typeof(a.data::jsonb -> 'message_ids') = 'array';
UPDATE agents SET
    context_next = jsonb_array_length(data::jsonb -> 'message_ids'),
    data = (data::jsonb - 'message_ids')::text
    WHERE jsonb_typeof(data::jsonb -> 'message_ids') = 'array';

INSERT INTO context_messages (agent_id, thread, position, message_id)
    SELECT c.agent_id, c.id, j.ordinality - 1, j.value
    FROM conversations c,
         jsonb_array_elements_text(c.data::jsonb -> 'in_context_message_ids') WITH ORDINALITY AS j
    WHERE jsonb_typeof(c.data::jsonb -> 'in_context_message_ids') = 'array';
UPDATE conversations SET
    context_next = jsonb_array_length(data::jsonb -> 'in_context_message_ids'),
    data = (data::jsonb - 'in_context_message_ids')::text
    WHERE jsonb_typeof(data::jsonb -> 'in_context_message_ids') = 'array';
