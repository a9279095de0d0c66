-- MCP servers, and which tools come from one (mirrors sqlite/0006). A server's tools are
-- ordinary tool rows (tool_type external_mcp) that name it: deleting the server deletes
-- them, and with them every agent's link to them (agent_tools cascades from tools).
CREATE TABLE mcp_servers (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX mcp_servers_by_created ON mcp_servers (created_at, id);

ALTER TABLE tools ADD COLUMN mcp_server_id TEXT COLLATE "C"
    REFERENCES mcp_servers (id) ON DELETE CASCADE;
CREATE INDEX tools_by_mcp_server ON tools (mcp_server_id) WHERE mcp_server_id IS NOT NULL;
