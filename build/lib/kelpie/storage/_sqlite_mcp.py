"""SQLite rows for MCP servers and the tools they bring. A mixin of SqliteStore.

A server's tools are tool rows whose `mcp_server_id` names it; writing a server writes its
tool list in the same transaction, so an agent never sees a server without its tools or
tools of a server that is gone (deleting the server cascades to its tools and their links).
"""

import sqlite3
from collections.abc import Sequence

from kelpie.schemas import McpServer, Tool, us_from_datetime
from kelpie.storage._sqlite_rows import SqliteRows

# Agents with every one of a server's tools attached (none when it has no tools).
_FOLLOWERS = (
    "SELECT at.agent_id FROM agent_tools at JOIN tools t ON t.id = at.tool_id"
    " WHERE t.mcp_server_id = ? GROUP BY at.agent_id"
    " HAVING COUNT(*) = (SELECT COUNT(*) FROM tools WHERE mcp_server_id = ?)"
    " ORDER BY at.agent_id"
)


def _server_values(server: McpServer) -> tuple[object, ...]:
    assert server.created_at is not None, "MCP server stored without created_at"
    assert server.updated_at is not None, "MCP server stored without updated_at"
    return (
        server.server_name,
        us_from_datetime(server.created_at),
        us_from_datetime(server.updated_at),
        server.model_dump_json(),
        server.id,
    )


def _tool_row(tool: Tool, server_id: str) -> tuple[object, ...]:
    assert tool.tool_type == "external_mcp", "a server's tools are external_mcp tools"
    assert tool.created_at is not None
    assert tool.updated_at is not None
    return (
        tool.name,
        tool.tool_type,
        us_from_datetime(tool.created_at),
        us_from_datetime(tool.updated_at),
        tool.model_dump_json(),
        server_id,
        tool.id,
    )


class McpRows(SqliteRows):
    async def insert_mcp_server(self, server: McpServer, tools: Sequence[Tool]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO mcp_servers (name, created_at, updated_at, data, id)"
                " VALUES (?, ?, ?, ?, ?)",
                _server_values(server),
            )
            self._insert_server_tools(db, server.id, tools)

    async def replace_mcp_server(
        self, server: McpServer, tools: Sequence[Tool], attach_to: Sequence[str] = ()
    ) -> list[Tool] | None:
        """Writes the server and makes `tools` its tool list: a tool whose name it already
        had keeps its id, created_at and agents; tools no longer listed are deleted. Agents
        that had all of its tools get the new ones too, and so do the agents `attach_to`
        names. None if the server is not stored (deleted meanwhile)."""
        assert server.updated_at is not None
        now_us = us_from_datetime(server.updated_at)
        with self._tx() as db:
            followers = [row[0] for row in db.execute(_FOLLOWERS, (server.id, server.id))]
            updated = db.execute(
                "UPDATE mcp_servers SET name = ?, created_at = ?, updated_at = ?, data = ?"
                " WHERE id = ?",
                _server_values(server),
            ).rowcount
            if updated != 1:
                return None
            kept = {
                tool.name: tool
                for tool in (
                    Tool.model_validate_json(row[0])
                    for row in db.execute(
                        "SELECT data FROM tools WHERE mcp_server_id = ?", (server.id,)
                    )
                )
            }
            stored = [
                tool
                if tool.name not in kept
                else tool.model_copy(
                    update={"id": kept[tool.name].id, "created_at": kept[tool.name].created_at}
                )
                for tool in tools
            ]
            listed = {tool.name for tool in tools}
            for name in sorted(set(kept) - listed):
                db.execute("DELETE FROM tools WHERE id = ?", (kept[name].id,))
            for tool in stored:
                if tool.name in kept:
                    db.execute(
                        "UPDATE tools SET name = ?, tool_type = ?, created_at = ?,"
                        " updated_at = ?, data = ?, mcp_server_id = ? WHERE id = ?",
                        _tool_row(tool, server.id),
                    )
            self._insert_server_tools(db, server.id, [t for t in stored if t.name not in kept])
            for agent_id in sorted(set(followers) | set(attach_to)):
                self._set_agent_tools(db, agent_id, [tool.id for tool in stored], now_us)
                self._touch_agent(db, agent_id, now_us)
        return stored

    @staticmethod
    def _insert_server_tools(db: sqlite3.Connection, server_id: str, tools: Sequence[Tool]) -> None:
        for tool in sorted(tools, key=lambda t: t.name):  # a deterministic write order
            db.execute(
                "INSERT INTO tools (name, tool_type, created_at, updated_at, data,"
                " mcp_server_id, id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                _tool_row(tool, server_id),
            )

    async def get_mcp_server(self, server_id: str) -> McpServer | None:
        rows = self._read("SELECT data FROM mcp_servers WHERE id = ?", (server_id,))
        return McpServer.model_validate_json(rows[0][0]) if rows else None

    async def get_mcp_server_by_name(self, name: str) -> McpServer | None:
        rows = self._read("SELECT data FROM mcp_servers WHERE name = ?", (name,))
        return McpServer.model_validate_json(rows[0][0]) if rows else None

    async def list_mcp_servers(self) -> list[McpServer]:
        rows = self._read("SELECT data FROM mcp_servers ORDER BY created_at, id")
        return [McpServer.model_validate_json(row[0]) for row in rows]

    async def mcp_server_tools(self, server_id: str) -> list[Tool]:
        rows = self._read(
            "SELECT data FROM tools WHERE mcp_server_id = ? ORDER BY name", (server_id,)
        )
        return [Tool.model_validate_json(row[0]) for row in rows]

    async def delete_mcp_server(self, server_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM mcp_servers WHERE id = ?", (server_id,)).rowcount == 1
