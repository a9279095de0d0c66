"""The conversations role of the Store, the same assertions on every backend (SQLite and
PostgreSQL):

- A conversation reads back equal with its first messages and its in-context ids (left
  out when not asked for); unknown ids read as None.
- An update writes only the fields it names: the in-context list a turn moved meanwhile
  stays, and updated_at never moves back. Deleting a conversation keeps its messages (the
  agent's recall memory) and drops its in-context list.
- list_conversations filters by agent, archived (not archived by default), hidden (left
  out unless asked for) and summary substring (ASCII case folded, LIKE wildcards taken
  literally), orders by created_at or last_message_at, and pages strictly both ways.
- A step commit on a conversation's thread moves that thread's list and the
  conversation's updated_at (never back), not the agent's own thread.
- Run events are listed in seq order after a seq, at most so many; last_run_seq is the
  highest stored (0 for none); a seq stored twice is a StorageConflict that writes none of
  its batch. A retried send finds the newest run of the agent with its request token.
- Deleting the agent deletes its conversations, runs, steps, events and messages (none is
  read back, not even one read before).
"""

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import pytest

from kelpie.env import Entropy
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    CONVERSATION_PREFIX,
    RUN_PREFIX,
    STEP_PREFIX,
    AgentConfig,
    Conversation,
    Message,
    RunEvent,
    Step,
    us_from_datetime,
)
from kelpie.storage import (
    ContextIds,
    ConversationQuery,
    Page,
    StepCommit,
    StorageConflict,
    StorageUnavailable,
    ThreadUpdate,
)

from ._backends import Backend, Conformance
from ._support import T0, agent_config, at, new_message, new_run

ALL: Final = Page(limit=1000, ascending=True)
PAGE_SIZE: Final = 3
SAME_TIME_CONVERSATIONS: Final = 8


def _conversation(
    entropy: Entropy,
    agent: AgentConfig,
    *,
    created_at: dt.datetime = T0,
    summary: str | None = None,
    archived: bool = False,
    hidden: bool = False,
    last_message_at: dt.datetime | None = None,
) -> Conversation:
    return Conversation(
        id=entropy.new_id(CONVERSATION_PREFIX),
        agent_id=agent.id,
        summary=summary,
        archived=archived,
        hidden=hidden,
        last_message_at=last_message_at,
        created_at=created_at,
        updated_at=created_at,
    )


def _ids(items: Sequence[Conversation | Message]) -> list[str]:
    return [item.id for item in items]


async def _insert_agents(store: Conformance, *agents: AgentConfig) -> None:
    for agent in agents:
        await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())


async def _start(store: Conformance, entropy: Entropy, conversation: Conversation) -> Message:
    """Inserts the conversation with its system message in context; returns the message."""
    system = new_message(
        entropy,
        conversation.agent_id,
        "You are Ada.",
        role="system",
        created_at=conversation.created_at,
        conversation_id=conversation.id,
    )
    conversation.in_context_message_ids = [system.id]
    await store.insert_conversation(conversation, [system])
    return system


# Round trips ----------------------------------------------------------------------------


def test_a_conversation_reads_back_equal_with_its_messages(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    conversation = _conversation(entropy, agent, summary="trip \u0000 plans").model_copy(
        update={
            "description": "about the trip",
            "model": "openai/gpt-4o-mini",
            "model_settings": {"temperature": 0.5},
            "forked_message_ids": ["message-a"],
        }
    )
    system: list[Message] = []

    async def write(store: Conformance) -> None:
        await _insert_agents(store, agent)
        system.append(await _start(store, entropy, conversation))

    async def read(store: Conformance) -> None:
        assert await store.get_conversation(conversation.id) == conversation
        bare = await store.get_conversation(conversation.id, message_ids=False)
        assert bare == conversation.model_copy(update={"in_context_message_ids": []})
        assert await store.get_messages(_ids(system)) == system
        assert await store.get_conversation(entropy.new_id(CONVERSATION_PREFIX)) is None
        context = await store.context_since(agent.id, conversation.id, None)
        assert context is not None
        assert context.ids == tuple(_ids(system))

    backend.run(write)
    backend.run(read)


def test_an_update_writes_only_the_fields_it_names(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    conversation = _conversation(entropy, agent, summary="old", created_at=at(1))
    reply = new_message(entropy, agent.id, "hi", created_at=at(2), conversation_id=conversation.id)

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent)
        system = await _start(store, entropy, conversation)
        # A turn moves the list after the caller read the conversation.
        turn = ThreadUpdate(
            agent_id=agent.id,
            conversation_id=conversation.id,
            updated_at=at(2),
            appended=(reply.id,),
        )
        await store.commit_step(StepCommit(thread=turn, messages=(reply,)))
        changes = {"summary": "new", "archived": True, "archived_at": at(3)}
        updated = await store.update_conversation(conversation.id, changes, us_from_datetime(at(3)))
        expected = conversation.model_copy(
            update={
                **changes,
                "updated_at": at(3),
                "in_context_message_ids": [system.id, reply.id],
            }
        )
        assert updated == expected
        assert await store.get_conversation(conversation.id) == expected
        # updated_at never moves back.
        again = await store.update_conversation(
            conversation.id, {"description": "d"}, us_from_datetime(at(0))
        )
        assert again == expected.model_copy(update={"description": "d"})
        assert (
            await store.update_conversation(
                entropy.new_id(CONVERSATION_PREFIX), {"summary": "x"}, us_from_datetime(at(4))
            )
            is None
        )

    backend.run(scenario)


def test_deleting_a_conversation_keeps_its_messages(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    conversation = _conversation(entropy, agent)

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent)
        system = await _start(store, entropy, conversation)
        assert await store.delete_conversation(conversation.id) is True
        assert await store.get_conversation(conversation.id) is None
        assert await store.get_messages([system.id]) == [system]
        # Its thread is no longer stored.
        assert await store.context_since(agent.id, conversation.id, None) == ContextIds(-1, ())
        assert await store.list_conversations(ConversationQuery(), ALL) == []
        assert await store.delete_conversation(conversation.id) is False

    backend.run(scenario)


# Lists ----------------------------------------------------------------------------------


def test_list_conversations_filters(backend: Backend, entropy: Entropy) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    trip = _conversation(entropy, ada, created_at=at(1), summary="Trip to Paris")
    sale = _conversation(entropy, ada, created_at=at(2), summary="50%_off sale")
    archived = _conversation(entropy, ada, created_at=at(3), summary="old trip", archived=True)
    hidden = _conversation(entropy, ada, created_at=at(4), hidden=True)
    bobs = _conversation(entropy, bob, created_at=at(5), summary="50 percent")

    async def listed(store: Conformance, **fields: Any) -> list[str]:
        return _ids(await store.list_conversations(ConversationQuery(**fields), ALL))

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, ada, bob)
        for conversation in (trip, sale, archived, hidden, bobs):
            await _start(store, entropy, conversation)
        assert await listed(store) == _ids([trip, sale, bobs])
        assert await listed(store, agent_id=ada.id) == _ids([trip, sale])
        assert await listed(store, agent_id=bob.id) == _ids([bobs])
        assert await listed(store, archived=True) == _ids([archived])
        assert await listed(store, archived=None) == _ids([trip, sale, archived, bobs])
        assert await listed(store, include_hidden=True, agent_id=ada.id) == _ids(
            [trip, sale, hidden]
        )
        assert await listed(store, summary_search="TRIP", archived=None) == _ids([trip, archived])
        assert await listed(store, summary_search="%_") == _ids([sale])
        assert await listed(store, summary_search="0%") == _ids([sale])
        assert await listed(store, summary_search="nowhere") == []
        # Lists carry each conversation's in-context ids.
        found = await store.list_conversations(ConversationQuery(agent_id=bob.id), ALL)
        assert [len(c.in_context_message_ids) for c in found] == [1]

    backend.run(scenario)


def test_list_conversations_orders_by_created_at_or_last_message_at(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    # Created in one order; messages last arrived in the other (the first none yet).
    quiet = _conversation(entropy, agent, created_at=at(3))
    busy = _conversation(entropy, agent, created_at=at(1), last_message_at=at(9))
    recent = _conversation(entropy, agent, created_at=at(2), last_message_at=at(5))

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent)
        for conversation in (quiet, busy, recent):
            await _start(store, entropy, conversation)
        by_created = await store.list_conversations(ConversationQuery(), ALL)
        assert _ids(by_created) == _ids([busy, recent, quiet])
        by_last = ConversationQuery(order_by="last_message_at")
        assert _ids(await store.list_conversations(by_last, ALL)) == _ids([quiet, recent, busy])
        newest = await store.list_conversations(by_last, Page(limit=2))
        assert _ids(newest) == _ids([busy, recent])
        after = await store.list_conversations(by_last, Page(limit=5, after=busy.id))
        assert _ids(after) == _ids([recent, quiet])
        # A PATCH of last_message_at moves the conversation in that order.
        await store.update_conversation(
            quiet.id, {"last_message_at": at(20)}, us_from_datetime(at(20))
        )
        assert _ids(await store.list_conversations(by_last, Page(limit=1))) == [quiet.id]

    backend.run(scenario)


@pytest.mark.parametrize("ascending", [True, False])
def test_list_conversations_pages_same_time_conversations_strictly_both_ways(
    backend: Backend, entropy: Entropy, ascending: bool
) -> None:
    agent = agent_config(entropy, "ada")
    conversations = [_conversation(entropy, agent) for _ in range(SAME_TIME_CONVERSATIONS)]
    expected = sorted(_ids(conversations), reverse=not ascending)

    async def walk(store: Conformance, *, back: bool) -> list[list[str]]:
        pages: list[list[str]] = []
        cursor = expected[-1] if back else None
        while True:
            page = (
                Page(limit=PAGE_SIZE, ascending=ascending, before=cursor)
                if back
                else Page(limit=PAGE_SIZE, ascending=ascending, after=cursor)
            )
            found = _ids(await store.list_conversations(ConversationQuery(), page))
            if not found:
                return pages
            pages.append(found)
            cursor = found[0] if back else found[-1]

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent)
        for conversation in conversations:
            await _start(store, entropy, conversation)
        forward = await walk(store, back=False)
        assert [len(page) for page in forward] == [3, 3, 2]
        assert [item for page in forward for item in page] == expected
        backward = await walk(store, back=True)
        assert backward[0] == expected[-1 - PAGE_SIZE : -1]
        assert [item for page in reversed(backward) for item in page] == expected[:-1]
        window = Page(limit=10, ascending=ascending, after=expected[1], before=expected[6])
        found = await store.list_conversations(ConversationQuery(), window)
        assert _ids(found) == expected[2:6]
        unknown = entropy.new_id(CONVERSATION_PREFIX)
        with pytest.raises(InvalidInput, match=unknown):
            await store.list_conversations(ConversationQuery(), Page(limit=1, after=unknown))

    backend.run(scenario)


# The thread a step commit moves -----------------------------------------------------------


def test_a_step_commit_moves_the_conversations_thread_only(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    conversation = _conversation(entropy, agent)
    reply = new_message(entropy, agent.id, "hi", created_at=at(5), conversation_id=conversation.id)

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent)
        system = await _start(store, entropy, conversation)
        own_before = await store.context_since(agent.id, None, None)
        turn = ThreadUpdate(
            agent_id=agent.id,
            conversation_id=conversation.id,
            updated_at=at(5),
            appended=(reply.id,),
        )
        await store.commit_step(StepCommit(thread=turn, messages=(reply,)))
        stored = await store.get_conversation(conversation.id)
        assert stored is not None
        assert stored.in_context_message_ids == [system.id, reply.id]
        assert stored.updated_at == at(5)
        assert await store.context_since(agent.id, None, None) == own_before
        stored_agent = await store.get_agent(agent.id)
        assert stored_agent is not None
        assert stored_agent.updated_at == at(5)
        # A commit stamped earlier (a slower turn) moves no updated_at back.
        late = ThreadUpdate(agent_id=agent.id, conversation_id=conversation.id, updated_at=at(1))
        await store.commit_step(StepCommit(thread=late))
        again = await store.get_conversation(conversation.id)
        assert again == stored
        assert await store.get_agent(agent.id) == stored_agent

    backend.run(scenario)


# Run events and request tokens ----------------------------------------------------------


def _events(run_id: str, seqs: Sequence[int]) -> list[RunEvent]:
    return [
        RunEvent(run_id=run_id, seq_id=seq, event="error" if seq == 3 else None, data=f"d{seq}")
        for seq in seqs
    ]


def test_run_events_are_listed_in_seq_order_after_a_seq(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    run, other = new_run(entropy, agent.id, background=True), new_run(entropy, agent.id)

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent)
        await store.save_run(run, _events(run.id, [1, 2]))
        await store.save_run(other)
        assert await store.last_run_seq(other.id) == 0
        await store.append_run_events(_events(run.id, [4, 3]))
        await store.append_run_events(_events(other.id, [1]))
        await store.append_run_events([])
        assert await store.list_run_events(run.id, 0, 100) == _events(run.id, [1, 2, 3, 4])
        assert await store.list_run_events(run.id, 1, 2) == _events(run.id, [2, 3])
        assert await store.list_run_events(run.id, 4, 100) == []
        assert await store.last_run_seq(run.id) == 4
        assert await store.list_run_events(other.id, 0, 100) == _events(other.id, [1])
        # A seq stored twice: none of its batch is written.
        with pytest.raises(StorageConflict):
            await store.append_run_events(_events(run.id, [5, 2]))
        assert await store.last_run_seq(run.id) == 4
        assert await store.last_run_seq(entropy.new_id(RUN_PREFIX)) == 0

    backend.run(scenario)


def test_a_retried_send_finds_the_newest_run_with_its_token(
    backend: Backend, entropy: Entropy
) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    older = new_run(entropy, ada.id, created_at=at(1), request_token="t1")
    newer = new_run(entropy, ada.id, created_at=at(2), request_token="t1")
    untokened = new_run(entropy, ada.id, created_at=at(3))
    bobs = new_run(entropy, bob.id, created_at=at(4), request_token="t2")

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, ada, bob)
        for run in (older, newer, untokened, bobs):
            await store.save_run(run)
        assert await store.find_run_by_request_token(ada.id, "t1") == newer
        assert await store.find_run_by_request_token(ada.id, "t2") is None
        assert await store.find_run_by_request_token(bob.id, "t2") == bobs
        assert await store.find_run_by_request_token(bob.id, "t1") is None

    backend.run(scenario)


# Cascades and storage errors ------------------------------------------------------------


def test_deleting_the_agent_deletes_its_threads_and_runs(
    backend: Backend, entropy: Entropy
) -> None:
    agent, kept = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    conversation = _conversation(entropy, agent)
    run = new_run(entropy, agent.id, background=True)
    step = Step(id=entropy.new_id(STEP_PREFIX), run_id=run.id, agent_id=agent.id, created_at=T0)
    message = new_message(entropy, agent.id, "hi", run_id=run.id)

    async def scenario(store: Conformance) -> None:
        await _insert_agents(store, agent, kept)
        system = await _start(store, entropy, conversation)
        thread = ThreadUpdate(agent_id=agent.id, conversation_id=None, updated_at=T0)
        events = tuple(_events(run.id, [1]))
        await store.commit_step(
            StepCommit(thread=thread, messages=(message,), run=run, step=step, events=events)
        )
        assert await store.get_messages([system.id, message.id]) == [system, message]
        assert await store.delete_agent(agent.id) is True
        assert await store.get_conversation(conversation.id) is None
        assert await store.get_run(run.id) is None
        assert await store.get_step(step.id) is None
        assert await store.list_run_events(run.id, 0, 10) == []
        assert await store.get_messages([system.id, message.id]) == []
        assert await store.count_messages(agent.id) == 0

    backend.run(scenario)


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        await store.close()
        with pytest.raises(StorageUnavailable):
            await store.get_conversation(entropy.new_id(CONVERSATION_PREFIX))
        with pytest.raises(StorageUnavailable):
            await store.insert_conversation(_conversation(entropy, agent), [])
        with pytest.raises(StorageUnavailable):
            await store.list_run_events(entropy.new_id(RUN_PREFIX), 0, 10)

    backend.run(scenario)
