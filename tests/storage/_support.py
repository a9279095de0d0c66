"""Builders shared by the storage tests: times, agent configs, blocks, messages, runs,
inserts."""

import datetime as dt
from collections.abc import Sequence
from typing import Final

from kelpie.env import Entropy
from kelpie.schemas import (
    AGENT_PREFIX,
    BLOCK_PREFIX,
    MESSAGE_PREFIX,
    RUN_PREFIX,
    AgentConfig,
    Block,
    LlmConfig,
    Message,
    MessageRole,
    Run,
    RunStatus,
)
from kelpie.storage import SqliteStore, ThreadUpdate

T0: Final = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LLM: Final = LlmConfig(model="gpt-4o-mini", model_endpoint_type="openai", context_window=128_000)
SEED: Final = 20260101


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def agent_config(
    entropy: Entropy,
    name: str,
    *,
    created_at: dt.datetime = T0,
    updated_at: dt.datetime | None = None,
    hidden: bool | None = None,
) -> AgentConfig:
    return AgentConfig(
        id=entropy.new_id(AGENT_PREFIX),
        name=name,
        llm_config=LLM,
        system=f"You are {name}.",
        hidden=hidden,
        created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
    )


def new_block(
    entropy: Entropy,
    label: str,
    value: str = "",
    *,
    created_at: dt.datetime = T0,
    tags: Sequence[str] = (),
) -> Block:
    return Block(
        id=entropy.new_id(BLOCK_PREFIX),
        label=label,
        value=value,
        tags=list(tags),
        created_at=created_at,
        updated_at=created_at,
    )


async def insert_agent(
    store: SqliteStore,
    agent: AgentConfig,
    *,
    new_blocks: Sequence[Block] = (),
    block_ids: Sequence[str] = (),
    tool_ids: Sequence[str] = (),
    tags: Sequence[str] = (),
) -> None:
    await store.insert_agent(
        agent, new_blocks=new_blocks, block_ids=block_ids, tool_ids=tool_ids, tags=tags
    )


def own_thread(agent: AgentConfig, message_ids: Sequence[str] = ()) -> ThreadUpdate:
    """A step commit's update of the agent's own thread."""
    return ThreadUpdate(
        agent_id=agent.id,
        conversation_id=None,
        message_ids=tuple(message_ids or agent.message_ids),
        updated_at=agent.updated_at,
    )


def new_message(
    entropy: Entropy,
    agent_id: str,
    text: str,
    *,
    created_at: dt.datetime = T0,
    role: MessageRole = "user",
    conversation_id: str | None = None,
    run_id: str | None = None,
) -> Message:
    return Message(
        id=entropy.new_id(MESSAGE_PREFIX),
        agent_id=agent_id,
        role=role,
        text=text,
        conversation_id=conversation_id,
        run_id=run_id,
        created_at=created_at,
    )


def new_run(
    entropy: Entropy,
    agent_id: str,
    *,
    created_at: dt.datetime = T0,
    status: RunStatus = "completed",
    background: bool = False,
    conversation_id: str | None = None,
    request_token: str | None = None,
) -> Run:
    return Run(
        id=entropy.new_id(RUN_PREFIX),
        agent_id=agent_id,
        conversation_id=conversation_id,
        status=status,
        background=background,
        created_at=created_at,
        request_token=request_token,
    )
