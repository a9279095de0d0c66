-- Kelpie schema (mirrors sqlite/0005): `GET /v1/messages/` pages through every agent's
-- messages in the strict cursor order, (created_at, id), without scanning the table.
CREATE INDEX messages_by_created ON messages (created_at, id);
