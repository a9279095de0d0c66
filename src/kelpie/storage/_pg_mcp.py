"""PostgreSQL rows for MCP servers and the tools they bring: the `_roles.McpServers` role,
with the semantics of the SQLite store's methods of the same names (`_sqlite_mcp.py`).

A server's tools are tool rows whose `mcp_server_id` names it, written in the server's
transaction; deleting the server cascades to its tools and their links. Unlike SQLite,
writers run concurrently here, so a replace starts by updating (and so locking) the
server's row: two replaces of one server run one after the other.
"""

from collections.abc import Sequence
from typing import Final

from kelpie.schemas import McpServer, Tool, us_from_datetime
from kelpie.storage._pg_rows import Connection, PgRows

# Agents with every one of a server's tools attached (none when it has no tools).
_FOLLOWERS: Final = (
    "SELECT at.agent_id FROM agent_tools at JOIN tools t ON t.id = at.tool_id"
    " WHERE t.mcp_server_id = %s GROUP BY at.agent_id"
    " HAVING COUNT(*) = (SELECT COUNT(*) FROM tools WHERE mcp_server_id = %s)"
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


class McpRows(PgRows):
    async def insert_mcp_server(self, server: McpServer, tools: Sequence[Tool]) -> None:
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO mcp_servers (name, created_at, updated_at, data, id)"
                " VALUES (%s, %s, %s, %s, %s)",
                _server_values(server),
            )
            await self._insert_server_tools(db, server.id, tools)

    async def replace_mcp_server(
        self, server: McpServer, tools: Sequence[Tool], attach_to: Sequence[str] = ()
    ) -> list[Tool] | None:
        """Writes the server and makes `tools` its tool list: a tool whose name it already
        had keeps its id, created_at and agents; tools no longer listed are deleted. Agents
        that had all of its tools get the new ones too, and so do the agents `attach_to`
        names. None if the server is not stored (deleted meanwhile)."""
        assert server.updated_at is not None
        now_us = us_from_datetime(server.updated_at)
        async with self._tx() as db:
            updated = await db.execute(
                "UPDATE mcp_servers SET name = %s, created_at = %s, updated_at = %s, data = %s"
                " WHERE id = %s",
                _server_values(server),
            )
            if updated.rowcount != 1:
                return None
            cursor = await db.execute(_FOLLOWERS, (server.id, server.id))
            followers = [row[0] for row in await cursor.fetchall()]
            cursor = await db.execute(
                "SELECT data FROM tools WHERE mcp_server_id = %s ORDER BY name FOR UPDATE",
                (server.id,),
            )
            kept = {
                tool.name: tool
                for tool in (Tool.model_validate_json(row[0]) for row in await cursor.fetchall())
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
            gone = [kept[name].id for name in sorted(set(kept) - listed)]
            if gone:
                await db.execute("DELETE FROM tools WHERE id = ANY(%s)", (gone,))
            for tool in stored:
                if tool.name in kept:
                    await db.execute(
                        "UPDATE tools SET name = %s, tool_type = %s, created_at = %s,"
                        " updated_at = %s, data = %s, mcp_server_id = %s WHERE id = %s",
                        _tool_row(tool, server.id),
                    )
            await self._insert_server_tools(
                db, server.id, [tool for tool in stored if tool.name not in kept]
            )
            for agent_id in sorted(set(followers) | set(attach_to)):
                await self._set_agent_tools(db, agent_id, [tool.id for tool in stored], now_us)
                await self._touch_agent(db, agent_id, now_us)
        return stored

    @staticmethod
    async def _insert_server_tools(db: Connection, server_id: str, tools: Sequence[Tool]) -> None:
        if tools:
            await db.cursor().executemany(
                "INSERT INTO tools (name, tool_type, created_at, updated_at, data,"
                " mcp_server_id, id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                # A deterministic write order, as SQLite's.
                [_tool_row(tool, server_id) for tool in sorted(tools, key=lambda t: t.name)],
            )

    async def get_mcp_server(self, server_id: str) -> McpServer | None:
        rows = await self._read("SELECT data FROM mcp_servers WHERE id = %s", (server_id,))
        return McpServer.model_validate_json(rows[0][0]) if rows else None

    async def get_mcp_server_by_name(self, name: str) -> McpServer | None:
        rows = await self._read("SELECT data FROM mcp_servers WHERE name = %s", (name,))
        return McpServer.model_validate_json(rows[0][0]) if rows else None

    async def list_mcp_servers(self) -> list[McpServer]:
        rows = await self._read("SELECT data FROM mcp_servers ORDER BY created_at, id")
        return [McpServer.model_validate_json(row[0]) for row in rows]

    async def mcp_server_tools(self, server_id: str) -> list[Tool]:
        rows = await self._read(
            "SELECT data FROM tools WHERE mcp_server_id = %s ORDER BY name", (server_id,)
        )
        return [Tool.model_validate_json(row[0]) for row in rows]

    async def delete_mcp_server(self, server_id: str) -> bool:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM mcp_servers WHERE id = %s", (server_id,))
            return cursor.rowcount == 1
