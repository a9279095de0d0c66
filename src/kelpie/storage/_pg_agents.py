"""PostgreSQL rows for agents, their blocks, tools and tags, block history and in-context
ids: the "agents and blocks" role of the Store (`_roles.AgentsAndBlocks`), with the
semantics of the SQLite store's methods of the same names (the conformance suite,
tests/storage/test_conformance_agents.py, runs the same assertions on both).

Differences from SQLite that are not visible through the protocol: writers can run
concurrently here, so read-then-write sequences lock the row they start from (`FOR
UPDATE`, or an `UPDATE ... RETURNING`), where SQLite relies on its single writer.
"""

from collections.abc import Sequence
from typing import Any, Final

from kelpie.errors import InvalidInput
from kelpie.schemas import (
    BLOCK_HISTORY_ENTRIES_MAX,
    BLOCK_HISTORY_SEQ_MAX,
    AgentConfig,
    AgentState,
    Block,
    BlockHistoryEntry,
    Message,
    Tool,
    block_version,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage._commits import AgentsImport, BlockChange, ContextIds, NewAgent
from kelpie.storage._errors import StorageConflict
from kelpie.storage._pagination import key_page_clause
from kelpie.storage._pg_rows import Connection, PgRows, qmarks, searchable
from kelpie.storage._queries import AgentQuery, BlockQuery, Page, ToolQuery
from kelpie.storage._row_shapes import MESSAGE_COLUMNS, message_values
from kelpie.storage._search import message_search_text
from kelpie.storage._sql import like_pattern

# What an agent row's JSON holds: its configuration, never its relationships (nor its
# in-context message ids: rows of context_messages).
_AGENT_CONFIG_FIELDS: Final = set(AgentConfig.model_fields) - {"message_ids"}
# A thread's key in context_messages: '' for the agent's own thread.
OWN_THREAD: Final = ""
# The agent's own in-context ids, as one array column of the agent's row (one round trip).
_OWN_CONTEXT: Final = (
    "(SELECT coalesce(array_agg(cm.message_id ORDER BY cm.position), '{}')"
    " FROM context_messages cm WHERE cm.agent_id = a.id AND cm.thread = '')"
)
# The row's JSON, then the columns laid over it (see migration 0001), then the ids.
_AGENT_FIELDS: Final = (
    "a.data, a.updated_at, a.last_run_completion, a.last_run_duration_ms, a.last_stop_reason"
)
_AGENT_COLUMNS: Final = f"{_AGENT_FIELDS}, {_OWN_CONTEXT}"


def _agent_json(agent: AgentConfig) -> str:
    return agent.model_dump_json(include=_AGENT_CONFIG_FIELDS)


def _agent_values(agent: AgentConfig) -> tuple[object, ...]:
    """The agent's row, in the column order of `_AGENT_WRITE` (id last)."""
    completion = agent.last_run_completion
    return (
        agent.name,
        agent.agent_type,
        bool(agent.hidden),
        us_from_datetime(agent.updated_at),
        None if completion is None else us_from_datetime(completion),
        agent.last_run_duration_ms,
        agent.last_stop_reason,
        _agent_json(agent),
        agent.id,
    )


_AGENT_WRITE: Final = (
    "name, agent_type, hidden, updated_at, last_run_completion, last_run_duration_ms,"
    " last_stop_reason, data, id"
)


def _agent_state(row: Sequence[Any]) -> AgentState:
    """A stored agent in the response shape (relationships empty), with the columns that
    move without a rewrite of its JSON laid over it."""
    data, updated_at, completion, duration_ms, stop_reason, message_ids = row
    agent = AgentState.model_validate_json(data)
    agent.updated_at = datetime_from_us(updated_at)
    agent.last_run_completion = None if completion is None else datetime_from_us(completion)
    agent.last_run_duration_ms = duration_ms
    agent.last_stop_reason = stop_reason
    if message_ids is not None:
        agent.message_ids = list(message_ids)
    return agent


def _thread_key(conversation_id: str | None) -> str:
    return OWN_THREAD if conversation_id is None else conversation_id


def _history_seq(cursor: str) -> int:
    try:
        seq = int(cursor)
    except ValueError:
        seq = -1
    if not 0 <= seq <= BLOCK_HISTORY_SEQ_MAX:
        raise InvalidInput(f"Cursor '{cursor}' is not a history sequence number to page from")
    return seq


def _tag_filter(
    table: str, key: str, tags: Sequence[str], match_all: bool
) -> tuple[str, list[object]]:
    """`key IN (rows tagged with any / all of tags)`; a repeated tag counts once."""
    unique = sorted(set(tags))
    having = f" GROUP BY {key} HAVING COUNT(*) = {len(unique)}" if match_all else ""
    return f"SELECT {key} FROM {table} WHERE tag = ANY(%s){having}", [unique]


class AgentRows(PgRows):
    # Agents ---------------------------------------------------------------------------

    async def insert_agent(
        self,
        agent: AgentConfig,
        *,
        new_blocks: Sequence[Block],
        block_ids: Sequence[str],
        tool_ids: Sequence[str],
        tags: Sequence[str],
        messages: Sequence[Message] = (),
    ) -> None:
        new = NewAgent(
            agent=agent,
            new_blocks=tuple(new_blocks),
            block_ids=tuple(block_ids),
            tool_ids=tuple(tool_ids),
            tags=tuple(tags),
            messages=tuple(messages),
        )
        async with self._tx() as db:
            await self._insert_agent_rows(db, new)

    async def import_agents(self, batch: AgentsImport) -> None:
        """Tools first (agents attach them), then shared blocks, then each agent."""
        async with self._tx() as db:
            for tool in batch.tools_created:
                await self._insert_tool_row(db, tool)
            for tool in batch.tools_replaced:
                if not await self._update_tool_row(db, tool):
                    raise StorageConflict(f"Tool {tool.id} was deleted during the import")
            for block in batch.blocks_created:
                await self._write_block_row(db, block, insert=True)
            for new in batch.agents:
                await self._insert_agent_rows(db, new)

    async def _insert_agent_rows(self, db: Connection, new: NewAgent) -> None:
        agent = new.agent
        created = us_from_datetime(agent.created_at)
        for block in new.new_blocks:
            await self._write_block_row(db, block, insert=True)
        await db.execute(
            f"INSERT INTO agents (created_at, {_AGENT_WRITE})"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (created, *_agent_values(agent)),
        )
        await self._set_agent_blocks(db, agent.id, new.block_ids, created)
        await self._set_agent_tools(db, agent.id, new.tool_ids, created)
        await self._set_agent_tags(db, agent.id, new.tags)
        await self._insert_messages(db, new.messages)
        await self._replace_context(db, agent.id, None, agent.message_ids)

    async def get_agent(self, agent_id: str, *, message_ids: bool = True) -> AgentState | None:
        """The agent; with `message_ids` False, its in-context list is left empty."""
        columns = _AGENT_COLUMNS if message_ids else f"{_AGENT_FIELDS}, NULL"
        rows = await self._read(f"SELECT {columns} FROM agents a WHERE a.id = %s", (agent_id,))
        return _agent_state(rows[0]) if rows else None

    async def update_agent(
        self,
        agent: AgentConfig,
        *,
        block_ids: Sequence[str] | None = None,
        tool_ids: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        updated = us_from_datetime(agent.updated_at)
        async with self._tx() as db:
            await self._write_agent_row(db, agent)
            if block_ids is not None:
                await db.execute("DELETE FROM agent_blocks WHERE agent_id = %s", (agent.id,))
                await self._set_agent_blocks(db, agent.id, block_ids, updated)
            if tool_ids is not None:
                await db.execute("DELETE FROM agent_tools WHERE agent_id = %s", (agent.id,))
                await self._set_agent_tools(db, agent.id, tool_ids, updated)
            if tags is not None:
                await db.execute("DELETE FROM agent_tags WHERE agent_id = %s", (agent.id,))
                await self._set_agent_tags(db, agent.id, tags)

    async def _write_agent_row(self, db: Connection, agent: AgentConfig) -> None:
        cursor = await db.execute(
            "UPDATE agents SET name = %s, agent_type = %s, hidden = %s, updated_at = %s,"
            " last_run_completion = %s, last_run_duration_ms = %s, last_stop_reason = %s,"
            " data = %s WHERE id = %s",
            _agent_values(agent),
        )
        assert cursor.rowcount == 1, "update of an agent that is not stored"
        if await self._read_context(db, agent.id, None) != tuple(agent.message_ids):
            await self._replace_context(db, agent.id, None, agent.message_ids)

    @staticmethod
    async def _set_agent_blocks(
        db: Connection, agent_id: str, block_ids: Sequence[str], at_us: int
    ) -> None:
        # The label is copied from the block so (agent, label) uniqueness is enforced here.
        if block_ids:
            await db.cursor().executemany(
                "INSERT INTO agent_blocks (agent_id, block_id, label, attached_at)"
                " SELECT %s, id, label, %s FROM blocks WHERE id = %s",
                [(agent_id, at_us, block_id) for block_id in block_ids],
            )

    @staticmethod
    async def _set_agent_tools(
        db: Connection, agent_id: str, tool_ids: Sequence[str], at_us: int
    ) -> None:
        if tool_ids:
            await db.cursor().executemany(
                "INSERT INTO agent_tools (agent_id, tool_id, attached_at) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(agent_id, tool_id, at_us) for tool_id in tool_ids],
            )

    @staticmethod
    async def _set_agent_tags(db: Connection, agent_id: str, tags: Sequence[str]) -> None:
        if tags:
            await db.execute(
                "INSERT INTO agent_tags (agent_id, tag) SELECT %s, unnest(%s::text[])"
                " ON CONFLICT DO NOTHING",
                (agent_id, list(tags)),
            )

    async def delete_agent(self, agent_id: str) -> bool:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM agents WHERE id = %s", (agent_id,))
            return cursor.rowcount == 1

    async def list_agents(self, query: AgentQuery, page: Page) -> list[AgentState]:
        where: list[str] = []
        params: list[object] = []
        if not query.include_hidden:
            where.append("NOT a.hidden")
        if query.name is not None:
            where.append("a.name = %s")
            params.append(query.name)
        if query.query_text:
            where.append("a.name ILIKE %s ESCAPE '\\'")
            params.append(like_pattern(query.query_text))
        if query.tags:
            tagged, tag_params = _tag_filter(
                "agent_tags", "agent_id", query.tags, query.match_all_tags
            )
            where.append(f"a.id IN ({tagged})")
            params.extend(tag_params)
        return await self._agents_page("agents a", page, where, params, column=query.order_by)

    async def _agents_page(
        self,
        source: str,
        page: Page,
        where: list[str],
        params: list[object],
        column: str = "created_at",
    ) -> list[AgentState]:
        async with self._reading() as db:
            tail, all_params, reverse = await self._paged(
                db, "agents", "a", page, where, params, column=column
            )
            cursor = await db.execute(f"SELECT {_AGENT_COLUMNS} FROM {source} {tail}", all_params)
            rows = await cursor.fetchall()
        agents = [_agent_state(row) for row in rows]
        return agents[::-1] if reverse else agents

    async def count_agents(self) -> int:
        return int((await self._read("SELECT COUNT(*) FROM agents"))[0][0])

    async def tags_of_agents(self, agent_ids: Sequence[str]) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {agent_id: [] for agent_id in agent_ids}
        if agent_ids:
            rows = await self._read(
                "SELECT agent_id, tag FROM agent_tags WHERE agent_id = ANY(%s)"
                " ORDER BY agent_id, tag",
                (list(agent_ids),),
            )
            for agent_id, tag in rows:
                result[agent_id].append(tag)
        return result

    async def blocks_of_agents(self, agent_ids: Sequence[str]) -> dict[str, list[Block]]:
        result: dict[str, list[Block]] = {agent_id: [] for agent_id in agent_ids}
        if agent_ids:
            rows = await self._read(
                "SELECT ab.agent_id, b.data FROM agent_blocks ab JOIN blocks b"
                " ON b.id = ab.block_id WHERE ab.agent_id = ANY(%s)"
                " ORDER BY ab.agent_id, b.created_at, b.id",
                (list(agent_ids),),
            )
            for agent_id, data in rows:
                result[agent_id].append(Block.model_validate_json(data))
        return result

    async def tools_of_agents(self, agent_ids: Sequence[str]) -> dict[str, list[Tool]]:
        result: dict[str, list[Tool]] = {agent_id: [] for agent_id in agent_ids}
        if agent_ids:
            rows = await self._read(
                "SELECT at.agent_id, t.data FROM agent_tools at JOIN tools t"
                " ON t.id = at.tool_id WHERE at.agent_id = ANY(%s)"
                " ORDER BY at.agent_id, t.created_at, t.id",
                (list(agent_ids),),
            )
            for agent_id, data in rows:
                result[agent_id].append(Tool.model_validate_json(data))
        return result

    async def list_agent_blocks(self, agent_id: str, page: Page) -> list[Block]:
        async with self._reading() as db:
            tail, params, reverse = await self._paged(
                db, "blocks", "b", page, ["ab.agent_id = %s"], [agent_id]
            )
            cursor = await db.execute(
                f"SELECT b.data FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id {tail}",
                params,
            )
            rows = await cursor.fetchall()
        blocks = [Block.model_validate_json(row[0]) for row in rows]
        return blocks[::-1] if reverse else blocks

    async def get_agent_block(self, agent_id: str, label: str) -> Block | None:
        rows = await self._read(
            "SELECT b.data FROM agent_blocks ab JOIN blocks b ON b.id = ab.block_id"
            " WHERE ab.agent_id = %s AND ab.label = %s",
            (agent_id, label),
        )
        return Block.model_validate_json(rows[0][0]) if rows else None

    async def attach_block(self, agent_id: str, block: Block, attached_at_us: int) -> None:
        """Attaching an attached block is a no-op; a label the agent already has under
        another block breaks the (agent, label) rule and raises StorageConflict."""
        async with self._tx() as db:
            await db.execute(
                "INSERT INTO agent_blocks (agent_id, block_id, label, attached_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (agent_id, block_id) DO NOTHING",
                (agent_id, block.id, block.label, attached_at_us),
            )
            await self._touch_agent(db, agent_id, attached_at_us)

    async def detach_block(self, agent_id: str, block_id: str, updated_at_us: int) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "DELETE FROM agent_blocks WHERE agent_id = %s AND block_id = %s",
                (agent_id, block_id),
            )
            await self._touch_agent(db, agent_id, updated_at_us)
            return cursor.rowcount == 1

    async def list_agent_tools(self, agent_id: str, page: Page) -> list[Tool]:
        async with self._reading() as db:
            tail, params, reverse = await self._paged(
                db, "tools", "t", page, ["at.agent_id = %s"], [agent_id]
            )
            cursor = await db.execute(
                f"SELECT t.data FROM agent_tools at JOIN tools t ON t.id = at.tool_id {tail}",
                params,
            )
            rows = await cursor.fetchall()
        tools = [Tool.model_validate_json(row[0]) for row in rows]
        return tools[::-1] if reverse else tools

    async def attach_tool(self, agent_id: str, tool_id: str, attached_at_us: int) -> None:
        async with self._tx() as db:
            await self._set_agent_tools(db, agent_id, [tool_id], attached_at_us)
            await self._touch_agent(db, agent_id, attached_at_us)

    async def detach_tool(self, agent_id: str, tool_id: str, updated_at_us: int) -> bool:
        async with self._tx() as db:
            cursor = await db.execute(
                "DELETE FROM agent_tools WHERE agent_id = %s AND tool_id = %s",
                (agent_id, tool_id),
            )
            await self._touch_agent(db, agent_id, updated_at_us)
            return cursor.rowcount == 1

    @staticmethod
    async def _touch_agent(db: Connection, agent_id: str, at_us: int) -> None:
        """Moves updated_at forward (never back): the column, which reads lay over the
        JSON, so the row's JSON is not rewritten."""
        await db.execute(
            "UPDATE agents SET updated_at = %s WHERE id = %s AND updated_at < %s",
            (at_us, agent_id, at_us),
        )

    async def list_tags(
        self, *, after: str | None, limit: int, query_text: str | None
    ) -> list[str]:
        where, params = ["TRUE"], list[object]()
        if after is not None:
            where.append("tag > %s")
            params.append(after)
        if query_text:
            where.append("tag ILIKE %s ESCAPE '\\'")
            params.append(like_pattern(query_text))
        rows = await self._read(
            f"SELECT DISTINCT tag FROM agent_tags WHERE {' AND '.join(where)}"
            " ORDER BY tag LIMIT %s",
            [*params, limit],
        )
        return [row[0] for row in rows]

    # In-context ids ---------------------------------------------------------------------

    @staticmethod
    async def _read_context(
        db: Connection, agent_id: str, conversation_id: str | None
    ) -> tuple[str, ...]:
        cursor = await db.execute(
            "SELECT message_id FROM context_messages WHERE agent_id = %s AND thread = %s"
            " ORDER BY position",
            (agent_id, _thread_key(conversation_id)),
        )
        return tuple(row[0] for row in await cursor.fetchall())

    @staticmethod
    async def _take_positions(
        db: Connection, agent_id: str, conversation_id: str | None, count: int
    ) -> int | None:
        """Moves the thread's head `count` positions on; the first position taken (None when
        the thread is not stored). The UPDATE locks the row until commit, so concurrent
        writers of one thread take turns instead of colliding on positions."""
        if conversation_id is None:
            cursor = await db.execute(
                "UPDATE agents SET context_next = context_next + %s WHERE id = %s"
                " RETURNING context_next - %s",
                (count, agent_id, count),
            )
        else:
            cursor = await db.execute(
                "UPDATE conversations SET context_next = context_next + %s"
                " WHERE id = %s AND agent_id = %s RETURNING context_next - %s",
                (count, conversation_id, agent_id, count),
            )
        row = await cursor.fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    async def _insert_context(
        db: Connection, agent_id: str, conversation_id: str | None, start: int, ids: Sequence[str]
    ) -> None:
        if ids:
            await db.execute(
                "INSERT INTO context_messages (agent_id, thread, position, message_id)"
                " SELECT %s, %s, %s + t.n - 1, t.id"
                " FROM unnest(%s::text[]) WITH ORDINALITY AS t (id, n)",
                (agent_id, _thread_key(conversation_id), start, list(ids)),
            )

    async def _replace_context(
        self, db: Connection, agent_id: str, conversation_id: str | None, ids: Sequence[str]
    ) -> None:
        """The thread's whole list, written after the old positions (the head moves)."""
        start = await self._take_positions(db, agent_id, conversation_id, max(1, len(ids)))
        assert start is not None, "in-context list of a thread that is not stored"
        await db.execute(
            "DELETE FROM context_messages WHERE agent_id = %s AND thread = %s",
            (agent_id, _thread_key(conversation_id)),
        )
        await self._insert_context(db, agent_id, conversation_id, start, ids)

    async def context_since(
        self, agent_id: str, conversation_id: str | None, head: int | None
    ) -> ContextIds | None:
        """The thread's in-context ids, or None when its head is still `head` (a cached
        copy is current). A thread that is not stored has no ids (head -1). One statement,
        so the head and the ids come from one snapshot."""
        ids = (
            "CASE WHEN t.context_next = %s THEN NULL ELSE"
            " (SELECT coalesce(array_agg(cm.message_id ORDER BY cm.position), '{}')"
            " FROM context_messages cm WHERE cm.agent_id = %s AND cm.thread = %s) END"
        )
        params: list[object] = [head, agent_id, _thread_key(conversation_id)]
        if conversation_id is None:
            source = "agents t WHERE t.id = %s"
            params.append(agent_id)
        else:
            source = "conversations t WHERE t.id = %s AND t.agent_id = %s"
            params.extend((conversation_id, agent_id))
        rows = await self._read(f"SELECT t.context_next, {ids} FROM {source}", params)
        if not rows:
            return ContextIds(head=-1, ids=())
        stored, message_ids = rows[0]
        if message_ids is None:
            assert stored == head, "ids are left out only for a current head"
            return None
        return ContextIds(head=int(stored), ids=tuple(message_ids))

    # Messages written with an agent -----------------------------------------------------

    async def _insert_messages(self, db: Connection, messages: Sequence[Message]) -> None:
        """Message rows and, for the searchable ones, their index rows (tsvector generated
        from the text), in the caller's transaction."""
        if not messages:
            return
        await db.cursor().executemany(
            f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            # The system message is rewritten in place when the prompt is recompiled.
            " ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            [message_values(m) for m in messages],
        )
        indexed = [
            (m.id, m.agent_id, m.conversation_id, m.role, us_from_datetime(m.created_at), text)
            for m in messages
            if (text := message_search_text(m)) is not None
        ]
        if indexed:
            await db.cursor().executemany(
                "INSERT INTO message_index (message_id, agent_id, conversation_id, role,"
                " created_at, text) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (message_id) DO NOTHING",
                # PostgreSQL text cannot hold NUL; the message's own JSON keeps it.
                [(*row[:5], row[5].replace("\x00", "")) for row in indexed],
            )

    # Blocks ---------------------------------------------------------------------------

    async def _write_block_row(self, db: Connection, block: Block, *, insert: bool) -> None:
        assert block.created_at is not None, "block stored without created_at"
        assert block.updated_at is not None, "block stored without updated_at"
        values = (
            block.label,
            bool(block.is_template),
            us_from_datetime(block.created_at),
            us_from_datetime(block.updated_at),
            searchable(block.value),
            searchable(block.description),
            block.model_dump_json(),
            block.id,
        )
        if insert:
            await db.execute(
                "INSERT INTO blocks (label, is_template, created_at, updated_at, value,"
                " description, data, id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                values,
            )
        else:
            cursor = await db.execute(
                "UPDATE blocks SET label = %s, is_template = %s, created_at = %s,"
                " updated_at = %s, value = %s, description = %s, data = %s WHERE id = %s",
                values,
            )
            assert cursor.rowcount == 1, "update of a block that is not stored"
            # Only a relabel touches the links: a shared block's value edit then neither
            # rewrites nor locks every attached agent's row (which deadlocked step commits
            # with concurrent rewrites of those agents' links).
            await db.execute(
                "UPDATE agent_blocks SET label = %s WHERE block_id = %s AND label <> %s",
                (block.label, block.id, block.label),
            )
            await db.execute("DELETE FROM block_tags WHERE block_id = %s", (block.id,))
        if block.tags:
            await db.execute(
                "INSERT INTO block_tags (block_id, tag) SELECT %s, unnest(%s::text[])"
                " ON CONFLICT DO NOTHING",
                (block.id, list(block.tags)),
            )

    async def insert_block(self, block: Block) -> None:
        async with self._tx() as db:
            await self._write_block_row(db, block, insert=True)

    async def get_block(self, block_id: str) -> Block | None:
        rows = await self._read("SELECT data FROM blocks WHERE id = %s", (block_id,))
        return Block.model_validate_json(rows[0][0]) if rows else None

    async def get_blocks(self, block_ids: Sequence[str]) -> list[Block]:
        if not block_ids:
            return []
        rows = await self._read("SELECT data FROM blocks WHERE id = ANY(%s)", (list(block_ids),))
        return [Block.model_validate_json(row[0]) for row in rows]

    async def update_block(self, block: Block, *, change: BlockChange) -> None:
        async with self._tx() as db:
            await self._change_block(db, block, change)

    async def _change_block(self, db: Connection, block: Block, change: BlockChange) -> None:
        """Writes an existing block and, when a tracked field (value, label, description,
        limit) changed, appends its history entry and drops entries past the bound. The
        block's row stays locked from the read of its old version to the commit (NO KEY
        UPDATE: it keeps other changes of the block out, not the foreign-key checks of
        agents attaching it, which would deadlock with a step commit that then moves the
        agent's row)."""
        cursor = await db.execute(
            "SELECT data, (SELECT MAX(seq) FROM block_history h WHERE h.block_id = blocks.id)"
            " FROM blocks WHERE id = %s FOR NO KEY UPDATE",
            (block.id,),
        )
        row = await cursor.fetchone()
        assert row is not None, "change of a block that is not stored"
        old = block_version(Block.model_validate_json(row[0]))
        await self._write_block_row(db, block, insert=False)
        new = block_version(block)
        if new == old:
            return
        assert block.updated_at is not None, "block changed without updated_at"
        seq = (row[1] or 0) + 1
        entry = BlockHistoryEntry(
            block_id=block.id,
            seq=seq,
            created_at=block.updated_at,
            source=change.source,
            agent_id=change.agent_id,
            tool_call_id=change.tool_call_id,
            step_id=change.step_id,
            restored_seq=change.restored_seq,
            restored_side=change.restored_side,
            old=old,
            new=new,
        )
        await db.execute(
            "INSERT INTO block_history (block_id, seq, created_at, data) VALUES (%s, %s, %s, %s)",
            (block.id, seq, us_from_datetime(block.updated_at), entry.model_dump_json()),
        )
        if seq > BLOCK_HISTORY_ENTRIES_MAX:
            await db.execute(
                "DELETE FROM block_history WHERE block_id = %s AND seq <= %s",
                (block.id, seq - BLOCK_HISTORY_ENTRIES_MAX),
            )

    async def delete_block(self, block_id: str) -> bool:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM blocks WHERE id = %s", (block_id,))
            return cursor.rowcount == 1

    async def list_blocks(self, query: BlockQuery, page: Page) -> list[Block]:
        where: list[str] = []
        params: list[object] = []
        if query.label is not None:
            where.append("b.label = %s")
            params.append(query.label)
        for column, text in (
            ("b.label", query.label_search),
            ("b.value", query.value_search),
            ("b.description", query.description_search),
        ):
            if text:
                where.append(f"{column} ILIKE %s ESCAPE '\\'")
                params.append(like_pattern(text))
        if query.templates_only:
            where.append("b.is_template")
        if query.tags:
            tagged, tag_params = _tag_filter(
                "block_tags", "block_id", query.tags, query.match_all_tags
            )
            where.append(f"b.id IN ({tagged})")
            params.extend(tag_params)
        async with self._reading() as db:
            tail, all_params, reverse = await self._paged(db, "blocks", "b", page, where, params)
            cursor = await db.execute(f"SELECT b.data FROM blocks b {tail}", all_params)
            rows = await cursor.fetchall()
        blocks = [Block.model_validate_json(row[0]) for row in rows]
        return blocks[::-1] if reverse else blocks

    async def list_block_agents(self, block_id: str, page: Page) -> list[AgentState]:
        return await self._agents_page(
            "agent_blocks ab JOIN agents a ON a.id = ab.agent_id",
            page,
            ["ab.block_id = %s"],
            [block_id],
        )

    # Block history --------------------------------------------------------------------

    async def list_block_history(self, block_id: str, page: Page) -> list[BlockHistoryEntry]:
        """A page of the block's history by seq; `after`/`before` are seq numbers."""
        after = None if page.after is None else _history_seq(page.after)
        before = None if page.before is None else _history_seq(page.before)
        clause = key_page_clause("seq", page, after=after, before=before)
        conditions = ["block_id = %s", *(qmarks(condition) for condition in clause.where)]
        rows = await self._read(
            f"SELECT data FROM block_history WHERE {' AND '.join(conditions)}"
            f" ORDER BY {clause.order} LIMIT %s",
            [block_id, *clause.params, page.limit],
        )
        entries = [BlockHistoryEntry.model_validate_json(row[0]) for row in rows]
        return entries[::-1] if clause.reverse else entries

    async def get_block_history_entry(self, block_id: str, seq: int) -> BlockHistoryEntry | None:
        rows = await self._read(
            "SELECT data FROM block_history WHERE block_id = %s AND seq = %s", (block_id, seq)
        )
        return BlockHistoryEntry.model_validate_json(rows[0][0]) if rows else None

    # Tools ----------------------------------------------------------------------------

    @staticmethod
    def _tool_values(tool: Tool) -> tuple[object, ...]:
        assert tool.created_at is not None, "tool stored without created_at"
        assert tool.updated_at is not None, "tool stored without updated_at"
        return (
            tool.name,
            tool.tool_type,
            us_from_datetime(tool.created_at),
            us_from_datetime(tool.updated_at),
            tool.model_dump_json(),
            tool.id,
        )

    async def _insert_tool_row(self, db: Connection, tool: Tool) -> None:
        await db.execute(
            "INSERT INTO tools (name, tool_type, created_at, updated_at, data, id)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            self._tool_values(tool),
        )

    async def _update_tool_row(self, db: Connection, tool: Tool) -> bool:
        cursor = await db.execute(
            "UPDATE tools SET name = %s, tool_type = %s, created_at = %s, updated_at = %s,"
            " data = %s WHERE id = %s",
            self._tool_values(tool),
        )
        return cursor.rowcount == 1

    async def insert_tool(self, tool: Tool) -> None:
        async with self._tx() as db:
            await self._insert_tool_row(db, tool)

    async def get_tool(self, tool_id: str) -> Tool | None:
        rows = await self._read("SELECT data FROM tools WHERE id = %s", (tool_id,))
        return Tool.model_validate_json(rows[0][0]) if rows else None

    async def get_tools(self, tool_ids: Sequence[str]) -> list[Tool]:
        if not tool_ids:
            return []
        rows = await self._read("SELECT data FROM tools WHERE id = ANY(%s)", (list(tool_ids),))
        return [Tool.model_validate_json(row[0]) for row in rows]

    async def get_tools_by_name(self, names: Sequence[str]) -> list[Tool]:
        if not names:
            return []
        rows = await self._read("SELECT data FROM tools WHERE name = ANY(%s)", (list(names),))
        return [Tool.model_validate_json(row[0]) for row in rows]

    async def update_tool(self, tool: Tool) -> None:
        async with self._tx() as db:
            updated = await self._update_tool_row(db, tool)
        assert updated, "update of a tool that is not stored"

    async def upsert_tools(self, tools: Sequence[Tool]) -> list[Tool]:
        """Inserts or replaces by name, in name order (a deterministic write order, which
        also keeps two concurrent upserts from locking rows in opposite orders), keeping the
        id and created_at of a tool already stored under the name."""
        stored: list[Tool] = []
        async with self._tx() as db:
            for tool in sorted(tools, key=lambda t: t.name):
                cursor = await db.execute(
                    "SELECT data FROM tools WHERE name = %s FOR UPDATE", (tool.name,)
                )
                row = await cursor.fetchone()
                if row is None:
                    await self._insert_tool_row(db, tool)
                    stored.append(tool)
                    continue
                existing = Tool.model_validate_json(row[0])
                merged = tool.model_copy(
                    update={"id": existing.id, "created_at": existing.created_at}
                )
                await self._update_tool_row(db, merged)
                stored.append(merged)
        return stored

    async def delete_tool(self, tool_id: str) -> bool:
        async with self._tx() as db:
            cursor = await db.execute("DELETE FROM tools WHERE id = %s", (tool_id,))
            return cursor.rowcount == 1

    async def list_tools(self, query: ToolQuery, page: Page) -> list[Tool]:
        where: list[str] = []
        params: list[object] = []
        for column, values, negate in (
            ("t.name", query.names, False),
            ("t.id", query.tool_ids, False),
            ("t.tool_type", query.tool_types, False),
            ("t.tool_type", query.exclude_tool_types, True),
        ):
            if values:
                where.append(f"{'NOT ' if negate else ''}{column} = ANY(%s)")
                params.append(list(values))
        if query.search:
            where.append("t.name ILIKE %s ESCAPE '\\'")
            params.append(like_pattern(query.search))
        async with self._reading() as db:
            tail, all_params, reverse = await self._paged(db, "tools", "t", page, where, params)
            cursor = await db.execute(f"SELECT t.data FROM tools t {tail}", all_params)
            rows = await cursor.fetchall()
        tools = [Tool.model_validate_json(row[0]) for row in rows]
        return tools[::-1] if reverse else tools
