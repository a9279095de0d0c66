"""Reading an agent's history: `agents.messages.list` cursors and auto-paging over stored
messages that expand to several items, the type filter, the otid rule, and
`reset-messages` (letta-api.md §0 pagination, §1.4, §2.5, §2.7)."""

from __future__ import annotations

import itertools
import uuid

from letta_client import Letta
from letta_client.types.agents import Message, SystemMessage, UserMessage

from ._support import (
    ScriptedLlm,
    calling,
    model_messages,
    new_agent,
    reply,
    tool_call,
)

TURNS = 3
# Per turn: user; assistant text + tool call (two items, one id); tool return;
# reasoning + reply (two items, one id).
STORED_PER_TURN = 4
ITEMS_PER_TURN = 6
PAGE_ALL = 1_000
SMALL_PAGE = 2
# Item types that expand from an assistant or tool message and so follow the otid rule.
OTID_RULE_TYPES = frozenset(
    {"assistant_message", "reasoning_message", "tool_call_message", "tool_return_message"}
)

Key = tuple[str, str | None, str | None]


def key(item: Message) -> Key:
    return (item.id, item.message_type, item.otid)


def keys(items: list[Message]) -> list[Key]:
    return [key(item) for item in items]


def stored_ids(items: list[Message]) -> list[str]:
    """The ids of the stored messages behind `items`, in order, each once."""
    return [item_id for item_id, _ in itertools.groupby(item.id for item in items)]


def letta_otid(message_id: str, index: int) -> str:
    """Letta's `Message.generate_otid_from_id`: the uuid with its low 7 bits set to `index`."""
    raw = uuid.UUID(message_id.removeprefix("message-")).int
    return str(uuid.UUID(int=(raw & ~0x7F) | index))


def build_history(client: Letta, script: ScriptedLlm, turns: int = TURNS) -> str:
    """An agent with `turns` turns of history; returns its id."""
    agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
    for turn in range(turns):
        insert = {"label": "human", "new_string": f"Fact {turn}"}
        script.enqueue(
            calling(tool_call("memory_insert", insert), content=f"Noting fact {turn}."),
            reply(f"Noted fact {turn}.", reasoning=f"The user told me fact {turn}."),
        )
        response = client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": f"Remember fact {turn}"}]
        )
        assert response.stop_reason.stop_reason == "end_turn"
    return agent.id


def full_history(client: Letta, agent_id: str) -> list[Message]:
    return client.agents.messages.list(agent_id, order="asc", limit=PAGE_ALL).items


class TestCursors:
    def test_history_has_messages_that_expand_to_several_items(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent_id = build_history(client, script)

        items = [i for i in full_history(client, agent_id) if i.message_type != "system_message"]

        assert len(items) == TURNS * ITEMS_PER_TURN
        assert len(stored_ids(items)) == TURNS * STORED_PER_TURN
        assert len(set(stored_ids(items))) == len(stored_ids(items)), "an id's items are split"

    def test_after_cursor_pages_hold_each_stored_message_on_one_page(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent_id = build_history(client, script)
        full = full_history(client, agent_id)

        pages: list[list[Message]] = []
        after: str | None = None
        while len(pages) <= len(full):
            if after is None:
                page = client.agents.messages.list(agent_id, order="asc", limit=SMALL_PAGE)
            else:
                page = client.agents.messages.list(
                    agent_id, order="asc", limit=SMALL_PAGE, after=after
                )
            if not page.items:
                break
            pages.append(page.items)
            after = page.items[-1].id

        assert keys([item for page in pages for item in page]) == keys(full)
        seen: set[str] = set()
        for items in pages:
            page_ids = set(stored_ids(items))
            assert not page_ids & seen, f"ids {page_ids & seen} appear on two pages"
            seen |= page_ids
            assert len(page_ids) <= SMALL_PAGE

    def test_auto_pager_yields_every_item_once_and_stops(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent_id = build_history(client, script)
        full = full_history(client, agent_id)

        pager = client.agents.messages.list(agent_id, order="asc", limit=SMALL_PAGE)
        # A cap rather than list(): a server that ignores `after` would page forever.
        paged = list(itertools.islice(pager, len(full) + 10))

        assert keys(paged) == keys(full)

    def test_auto_pager_newest_first(self, client: Letta, script: ScriptedLlm) -> None:
        agent_id = build_history(client, script)
        full = full_history(client, agent_id)

        pager = client.agents.messages.list(agent_id, limit=SMALL_PAGE + 1)
        paged = list(itertools.islice(pager, len(full) + 10))

        assert sorted(keys(paged)) == sorted(keys(full))
        assert stored_ids(paged) == stored_ids(full)[::-1]

    def test_before_cursor_returns_the_earlier_messages(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent_id = build_history(client, script)
        full = full_history(client, agent_id)
        ids = stored_ids(full)
        pivot = ids[len(ids) // 2]

        earlier = client.agents.messages.list(
            agent_id, order="asc", before=pivot, limit=PAGE_ALL
        ).items

        expected = list(itertools.takewhile(lambda item: item.id != pivot, full))
        assert keys(earlier) == keys(expected)


class TestFilterAndOtids:
    def test_include_return_message_types_filters_items(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent_id = build_history(client, script, turns=2)
        full = full_history(client, agent_id)

        only = client.agents.messages.list(
            agent_id,
            order="asc",
            limit=PAGE_ALL,
            include_return_message_types=["user_message", "tool_return_message"],
        ).items

        wanted = {"user_message", "tool_return_message"}
        assert keys(only) == [key(item) for item in full if item.message_type in wanted]
        assert [item.message_type for item in only] == ["user_message", "tool_return_message"] * 2

    def test_expanded_items_follow_the_otid_rule(self, client: Letta, script: ScriptedLlm) -> None:
        agent_id = build_history(client, script, turns=1)
        full = full_history(client, agent_id)

        checked = 0
        for _, group in itertools.groupby(full, key=lambda item: item.id):
            for index, item in enumerate(group):
                if item.message_type not in OTID_RULE_TYPES:
                    continue
                assert item.otid == letta_otid(item.id, index), (item.message_type, index)
                assert item.otid[-1] == str(index)
                checked += 1
        assert checked == ITEMS_PER_TURN - 1

    def test_response_items_match_the_stored_items(
        self, client: Letta, script: ScriptedLlm
    ) -> None:
        agent = new_agent(client)
        script.enqueue(
            calling(tool_call("conversation_search", {"query": "x"}), content="Looking."),
            reply("Nothing found."),
        )

        response = client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "Search"}]
        )

        listed = [
            item
            for item in full_history(client, agent.id)
            if item.message_type not in ("system_message", "user_message")
        ]
        assert "user_message" not in [m.message_type for m in response.messages]
        assert keys(list(response.messages)) == keys(listed)

    def test_user_message_keeps_the_client_otid(self, client: Letta, script: ScriptedLlm) -> None:
        agent = new_agent(client)
        otid = str(uuid.uuid4())
        script.enqueue(reply("Hi"))

        client.agents.messages.create(
            agent.id, messages=[{"role": "user", "content": "Hello", "otid": otid}]
        )

        users = [m for m in full_history(client, agent.id) if isinstance(m, UserMessage)]
        assert [(m.content, m.otid) for m in users] == [("Hello", otid)]


class TestReset:
    def test_reset_empties_the_history(self, client: Letta, script: ScriptedLlm) -> None:
        agent_id = build_history(client, script, turns=2)

        client.agents.messages.reset(agent_id)

        left = full_history(client, agent_id)
        assert [m.message_type for m in left if m.message_type != "system_message"] == []

    def test_next_turn_after_reset_starts_afresh(self, client: Letta, script: ScriptedLlm) -> None:
        agent_id = build_history(client, script, turns=1)
        client.agents.messages.reset(agent_id)
        script.clear()
        script.enqueue(reply("Hello again"))

        response = client.agents.messages.create(
            agent_id, messages=[{"role": "user", "content": "Start over"}]
        )

        assert response.stop_reason.stop_reason == "end_turn"
        sent = model_messages(script.requests()[0])
        assert [(m["role"], m["content"]) for m in sent[1:]] == [("user", "Start over")]
        assert sent[0]["role"] == "system"
        listed = [m.message_type for m in full_history(client, agent_id)]
        assert listed[-2:] == ["user_message", "assistant_message"]
        assert listed.count("user_message") == 1

    def test_reset_keeps_the_system_message(self, client: Letta, script: ScriptedLlm) -> None:
        # Letta's reset_messages keeps message_ids[0], the system message, and deletes the rest.
        agent_id = build_history(client, script, turns=1)
        system_before = full_history(client, agent_id)[0]
        assert isinstance(system_before, SystemMessage)

        state = client.agents.messages.reset(agent_id)

        assert state is not None
        assert state.message_ids == [system_before.id]
        assert keys(full_history(client, agent_id)) == [key(system_before)]
