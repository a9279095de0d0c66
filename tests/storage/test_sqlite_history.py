"""Block history in SqliteStore: every change to a tracked field writes one entry in the
change's transaction, with its source; no-op writes write none; seq numbers per block;
the bound on entries kept; paging by seq. (Step commits naming each tool call:
tests/storage/test_conformance_runs.py.)"""

import asyncio
import itertools
from typing import Final

import pytest

from kelpie.env import Entropy
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    BLOCK_HISTORY_ENTRIES_MAX,
    Block,
    BlockHistoryEntry,
)
from kelpie.storage import (
    BlockChange,
    Page,
    SqliteStore,
    StorageConflict,
)

from ._support import agent_config, at, insert_agent, new_block

API: Final = BlockChange(source="api")
ALL: Final = Page(limit=1000, ascending=True)


def _history(store: SqliteStore, block_id: str, page: Page = ALL) -> list[BlockHistoryEntry]:
    return asyncio.run(store.list_block_history(block_id, page))


def _change(store: SqliteStore, block: Block, seconds: int, **fields: object) -> Block:
    changed = block.model_copy(update={**fields, "updated_at": at(seconds)})
    asyncio.run(store.update_block(changed, change=API))
    return changed


@pytest.fixture
def block(store: SqliteStore, entropy: Entropy) -> Block:
    created = new_block(entropy, "human", "Ada")
    asyncio.run(store.insert_block(created))
    return created


def test_a_value_change_writes_one_entry_with_old_and_new(store: SqliteStore, block: Block) -> None:
    _change(store, block, 5, value="Grace")
    [entry] = _history(store, block.id)
    assert (entry.block_id, entry.seq, entry.source, entry.created_at) == (
        block.id,
        1,
        "api",
        at(5),
    )
    assert (entry.old.value, entry.new.value) == ("Ada", "Grace")
    assert (entry.old.label, entry.new.label) == ("human", "human")
    assert (entry.agent_id, entry.tool_call_id, entry.step_id) == (None, None, None)
    assert asyncio.run(store.get_block_history_entry(block.id, 1)) == entry


def test_label_description_and_limit_changes_are_recorded(store: SqliteStore, block: Block) -> None:
    _change(store, block, 1, label="person", description="who", limit=500)
    [entry] = _history(store, block.id)
    assert (entry.old.label, entry.old.description, entry.old.limit) == (
        "human",
        None,
        block.limit,
    )
    assert (entry.new.label, entry.new.description, entry.new.limit) == ("person", "who", 500)


def test_a_write_that_changes_no_tracked_field_writes_no_entry(
    store: SqliteStore, block: Block
) -> None:
    _change(store, block, 1, tags=["x"], metadata={"k": "v"})
    _change(store, block, 2, value="Ada")
    assert _history(store, block.id) == []


def test_seq_counts_changes_and_the_oldest_entries_are_dropped_past_the_bound(
    store: SqliteStore, block: Block
) -> None:
    extra = 5
    for index in range(BLOCK_HISTORY_ENTRIES_MAX + extra):
        _change(store, block, index, value=f"v{index}")
    entries = _history(store, block.id)
    assert [e.seq for e in entries] == list(range(extra + 1, BLOCK_HISTORY_ENTRIES_MAX + extra + 1))
    assert entries[-1].new.value == f"v{BLOCK_HISTORY_ENTRIES_MAX + extra - 1}"
    for older, newer in itertools.pairwise(entries):
        assert newer.old == older.new
    assert asyncio.run(store.get_block_history_entry(block.id, 1)) is None


def test_history_pages_by_seq_both_ways(store: SqliteStore, block: Block) -> None:
    for index in range(7):
        _change(store, block, index, value=f"v{index}")

    def seqs(page: Page) -> list[int]:
        return [entry.seq for entry in _history(store, block.id, page)]

    assert seqs(Page(limit=3)) == [7, 6, 5]
    assert seqs(Page(limit=3, after="5")) == [4, 3, 2]
    assert seqs(Page(limit=3, ascending=True, after="5")) == [6, 7]
    assert seqs(Page(limit=2, ascending=True, before="5")) == [3, 4]
    assert seqs(Page(limit=10, after="6", before="2")) == [5, 4, 3]
    with pytest.raises(InvalidInput, match="sequence number"):
        seqs(Page(limit=3, after="block-1"))


def test_a_rejected_change_writes_no_entry(
    store: SqliteStore, entropy: Entropy, block: Block
) -> None:
    persona = new_block(entropy, "persona", "kind")
    asyncio.run(store.insert_block(persona))
    agent = agent_config(entropy, "ada")
    asyncio.run(insert_agent(store, agent, block_ids=[block.id, persona.id]))
    with pytest.raises(StorageConflict):
        _change(store, persona, 1, label="human", value="changed too")
    assert _history(store, persona.id) == []


def test_deleting_the_block_deletes_its_history(store: SqliteStore, block: Block) -> None:
    _change(store, block, 1, value="Grace")
    assert asyncio.run(store.delete_block(block.id)) is True
    assert _history(store, block.id) == []
