"""A small SQLite store holding a row of every table, written through the real SqliteStore
API, for the `migrate-db` tests; and what a store reads back of it, through the Store API,
to compare the source with the migrated copy."""

import dataclasses
from pathlib import Path
from typing import Any, Final

import numpy as np

from kelpie.env import Entropy
from kelpie.memory import archive_id_of, vector_bytes
from kelpie.schemas import (
    API_KEY_PREFIX,
    ARCHIVE_PREFIX,
    CONVERSATION_PREFIX,
    MCP_SERVER_PREFIX,
    MESSAGE_PREFIX,
    PASSAGE_PREFIX,
    STEP_PREFIX,
    TOOL_PREFIX,
    AgentConfig,
    ApiKey,
    Archive,
    Block,
    Conversation,
    McpServer,
    Message,
    Passage,
    Run,
    RunEvent,
    Step,
    Tool,
    us_from_datetime,
    working_memory_entry,
)
from kelpie.storage import (
    AgentQuery,
    ArchiveQuery,
    BlockQuery,
    ChangedBlock,
    ConversationQuery,
    MessageQuery,
    Page,
    RunQuery,
    SearchFilter,
    SqliteStore,
    StepCommit,
    ThreadUpdate,
    ToolQuery,
)
from kelpie.storage._postgres import PostgresStore

from ._support import agent_config, at, new_block, new_message, new_run

MODEL: Final = "test-model"
DIM: Final = 8
AGENTS: Final = 3
SHARED_PASSAGES: Final = 5
ALL: Final = Page(limit=1000, ascending=True)
NOW_US: Final = us_from_datetime(at(100))
COSINE_TOLERANCE: Final = 2e-3  # halfvec keeps ~3 significant digits


@dataclasses.dataclass(frozen=True)
class Source:
    path: Path
    agents: tuple[AgentConfig, ...]
    blocks: tuple[str, ...]
    conversation: Conversation
    background_run: Run
    archive: Archive
    mcp_server: McpServer


def unit_vector(seed: int) -> bytes:
    values = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector_bytes(values / np.linalg.norm(values))


def _system(entropy: Entropy, agent: AgentConfig, conversation_id: str | None = None) -> Message:
    return Message(
        id=entropy.new_id(MESSAGE_PREFIX),
        agent_id=agent.id,
        role="system",
        text=f"You are {agent.name}.",
        conversation_id=conversation_id,
        created_at=agent.created_at,
    )


async def _agent(
    store: SqliteStore, entropy: Entropy, n: int, shared: Block, tools: list[Tool]
) -> tuple[AgentConfig, list[str]]:
    """An agent with blocks (one value holding a NUL), tools, tags, a finished run of one
    step that changed a block, wrote messages, a passage and working memory."""
    agent = agent_config(entropy, f"agent{n}", created_at=at(n), hidden=n == AGENTS - 1 or None)
    system = _system(entropy, agent)
    agent = agent.model_copy(update={"message_ids": [system.id]})
    human = new_block(entropy, "human", f"friend {n}\x00", tags=["people"])
    persona = new_block(entropy, "persona", "kind\x00 and calm").model_copy(
        update={"description": "how they\x00 speak"}
    )
    await store.insert_agent(
        agent,
        new_blocks=(human, persona),
        block_ids=(human.id, persona.id, shared.id),
        tool_ids=[tool.id for tool in tools],
        tags=("team", f"n{n}"),
        messages=(system,),
    )
    run = new_run(entropy, agent.id, created_at=at(10 + n)).model_copy(
        update={
            "stop_reason": "end_turn",
            "completed_at": at(12 + n),
            "total_duration_ns": 5_000_000,
        }
    )
    said = (
        new_message(entropy, agent.id, f"note\x00 about grazing {n}", created_at=at(11 + n)),
        new_message(entropy, agent.id, "the sheep graze", role="assistant", created_at=at(12 + n)),
    )
    own_passage = Passage(
        id=entropy.new_id(PASSAGE_PREFIX),
        text=f"agent {n} remembers meadows",
        archive_id=archive_id_of(agent.id),
        agent_id=agent.id,
        tags=["memory"],
        created_at=at(12 + n),
    )
    changed = human.model_copy(update={"value": f"best friend {n}", "updated_at": at(12 + n)})
    await store.commit_step(
        StepCommit(
            thread=ThreadUpdate(
                agent_id=agent.id,
                conversation_id=None,
                updated_at=at(12 + n),
                appended=tuple(m.id for m in said),
                finished_run=run,
            ),
            messages=said,
            blocks_changed=(ChangedBlock(changed, f"call-{n}"),),
            passages=(own_passage,),
            working_memory_set=(
                working_memory_entry(
                    "plan", {"step": n, "text": "ünï ☃ \u0000"}, ttl_s=None, now_us=NOW_US
                ),
                working_memory_entry("soon", n, ttl_s=3600, now_us=NOW_US),
            ),
            run=run,
            step=Step(
                id=entropy.new_id(STEP_PREFIX),
                run_id=run.id,
                agent_id=agent.id,
                total_tokens=7,
                created_at=at(11 + n),
            ),
        )
    )
    return agent, [human.id, persona.id]


async def _conversation(store: SqliteStore, entropy: Entropy, agent: AgentConfig) -> Conversation:
    conversation_id = entropy.new_id(CONVERSATION_PREFIX)
    system = _system(entropy, agent, conversation_id)
    conversation = Conversation(
        id=conversation_id,
        agent_id=agent.id,
        summary="weekly sync\x00 notes",
        in_context_message_ids=[system.id],
        created_at=at(20),
        updated_at=at(20),
    )
    await store.insert_conversation(conversation, [system])
    said = new_message(
        entropy,
        agent.id,
        "grazing in the conversation",
        created_at=at(21),
        conversation_id=conversation_id,
    )
    await store.commit_step(
        StepCommit(
            thread=ThreadUpdate(
                agent_id=agent.id,
                conversation_id=conversation_id,
                updated_at=at(21),
                appended=(said.id,),
            ),
            messages=(said,),
        )
    )
    return conversation


async def _background_run(store: SqliteStore, entropy: Entropy, agent: AgentConfig) -> Run:
    run = new_run(entropy, agent.id, created_at=at(30), status="running", background=True)
    events = tuple(
        RunEvent(
            run_id=run.id, seq_id=seq, event="error" if seq == 3 else None, data=f'{{"seq": {seq}}}'
        )
        for seq in (1, 2, 3)
    )
    await store.commit_step(
        StepCommit(
            thread=ThreadUpdate(agent_id=agent.id, conversation_id=None, updated_at=at(30)),
            run=run,
            events=events,
        )
    )
    return run


async def _embed(store: SqliteStore) -> None:
    """A vector for every passage, and for every message but the newest (left pending)."""
    passages = await store.pending_embeddings("passage", (), 100)
    await store.save_embeddings(
        "passage", MODEL, DIM, [(seq, unit_vector(seq)) for seq, _ in passages]
    )
    messages = await store.pending_embeddings("message", (), 100)
    await store.save_embeddings(
        "message", MODEL, DIM, [(seq, unit_vector(1000 + seq)) for seq, _ in messages[:-1]]
    )


async def build_source(path: Path, entropy: Entropy) -> Source:
    store = SqliteStore.open(path)
    try:
        server = McpServer(
            id=entropy.new_id(MCP_SERVER_PREFIX),
            server_name="files",
            mcp_server_type="streamable_http",
            server_url="https://files.example/mcp",
            created_at=at(0),
            updated_at=at(0),
        )
        mcp_tool = Tool(
            id=entropy.new_id(TOOL_PREFIX),
            name="read",
            tool_type="external_mcp",
            created_at=at(0),
            updated_at=at(0),
        )
        await store.insert_mcp_server(server, [mcp_tool])
        tool = Tool(
            id=entropy.new_id(TOOL_PREFIX),
            name="plot",
            description="draws",
            created_at=at(0),
            updated_at=at(0),
        )
        await store.insert_tool(tool)
        shared = new_block(entropy, "team", "shared notes", tags=["t1", "t2"])
        await store.insert_block(shared)
        agents: list[AgentConfig] = []
        blocks = [shared.id]
        for n in range(AGENTS):
            agent, own = await _agent(store, entropy, n, shared, [tool, mcp_tool])
            agents.append(agent)
            blocks += own
        conversation = await _conversation(store, entropy, agents[0])
        background = await _background_run(store, entropy, agents[1])
        archive = Archive(id=entropy.new_id(ARCHIVE_PREFIX), name="shared", created_at=at(40))
        await store.insert_archive(archive)
        await store.attach_archive(agents[0].id, archive.id)
        passages = [
            Passage(
                id=entropy.new_id(PASSAGE_PREFIX),
                text=f"shared note {n}{chr(0) if n == 0 else ''} about grazing",
                archive_id=archive.id,
                tags=["shared", f"s{n % 2}"],
                metadata={"n": n},
                created_at=at(41 + n),
            )
            for n in range(SHARED_PASSAGES)
        ]
        await store.insert_passages(passages)
        # The newest key is deleted: SQLite never gives it again, nor may PostgreSQL.
        assert await store.delete_passage([archive.id], passages[-1].id)
        await _embed(store)
        for n, name in enumerate(("ci", "ops")):
            await store.insert_api_key(
                ApiKey(
                    id=entropy.new_id(API_KEY_PREFIX),
                    name=name,
                    secret_hash=f"{n:064x}",
                    admin=n == 1,
                    rate_limit_per_minute=60 if n else None,
                    created_at=at(50),
                    expires_at=None,
                    last_used_at=at(51) if n else None,
                    revoked_at=None,
                )
            )
    finally:
        await store.close()
    return Source(path, tuple(agents), tuple(blocks), conversation, background, archive, server)


async def read_back(store: SqliteStore | PostgresStore, source: Source) -> dict[str, Any]:
    """Everything of the source a store reads back through the Store API."""
    seen: dict[str, Any] = {
        "agents": await store.list_agents(AgentQuery(include_hidden=True), ALL),
        "agent count": await store.count_agents(),
        "tags": await store.list_tags(after=None, limit=100, query_text=None),
        "tools": await store.list_tools(ToolQuery(), ALL),
        "mcp servers": await store.list_mcp_servers(),
        "mcp tools": await store.mcp_server_tools(source.mcp_server.id),
        "api keys": await store.list_api_keys(),
        "archives": await store.list_archives(ArchiveQuery(), ALL),
        "conversation": await store.get_conversation(source.conversation.id),
        "conversation context": await store.context_since(
            source.conversation.agent_id, source.conversation.id, None
        ),
        "run events": await store.list_run_events(source.background_run.id, 0, 100),
        "last run seq": await store.last_run_seq(source.background_run.id),
        "history": [await store.list_block_history(block, ALL) for block in source.blocks],
        "blocks": await store.get_blocks(source.blocks),
        # Searches of the columns PostgreSQL derives from the row (NUL-free copies; SQLite
        # searches up to a NUL only).
        "kind blocks": await store.list_blocks(BlockQuery(value_search="kind"), ALL),
        "how blocks": await store.list_blocks(BlockQuery(description_search="how"), ALL),
        "sync conversations": await store.list_conversations(
            ConversationQuery(summary_search="weekly"), ALL
        ),
        "noted passages": await store.list_passages([source.archive.id], ALL, "shared note"),
    }
    for agent in source.agents:
        archives = await store.archive_ids_of_agent(agent.id)
        seen[agent.id] = (
            await store.get_agent(agent.id),
            await store.list_messages(MessageQuery(agent_id=agent.id, all_threads=True), ALL),
            await store.list_agent_blocks(agent.id, ALL),
            await store.list_agent_tools(agent.id, ALL),
            await store.tags_of_agents([agent.id]),
            archives,
            await store.list_passages(archives, ALL, None),
            await store.list_working_memory(agent.id, "", ALL, NOW_US),
            await store.context_since(agent.id, None, None),
            await store.list_runs(RunQuery(agent_ids=(agent.id,)), ALL),
            await store.list_steps(None, agent.id, ALL),
            await store.list_conversations(
                ConversationQuery(agent_id=agent.id, archived=None, include_hidden=True), ALL
            ),
        )
    for kind in ("passage", "message"):
        everything = SearchFilter(kind=kind)
        seen[f"{kind} embeddings"] = await store.count_embeddings(kind, MODEL)
        seen[f"{kind} vector seq"] = await store.last_vector_seq(kind, None)
        seen[f"{kind} pending"] = await store.pending_embeddings(kind, (), 100)
        seen[f"{kind} keys"] = sorted(await store.filtered_keys(everything))
        seen[f"{kind} keyword"] = sorted(
            await store.keyword_search(everything, ["grazing"], every_word=True, limit=100)
        )
    return seen
