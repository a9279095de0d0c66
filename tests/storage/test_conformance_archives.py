"""The archives role of the Store, the same assertions on every backend (SQLite and
PostgreSQL):

- A passage reads back equal (text, tags, metadata, times), listed in strict (created_at,
  id) order, paged by cursor both ways; a `text` filter keeps the passages containing it
  (ASCII case folded, LIKE wildcards taken literally).
- An agent's passage creates the agent's own archive with its first passage and attaches
  it; later passages leave that archive as it was.
- delete_passage deletes only from the archives it is given; count_passages counts one
  archive's.
- Archives round trip, update and delete; list_archives filters by name and by attached
  agent, and pages. Deleting an archive deletes its passages and attachments.
- attach_archive is idempotent, refuses unknown agents and archives (StorageConflict);
  detach says whether there was anything to detach; archive_ids_of_agent is in id order.
- A batch that fails half way (a repeated passage id, an unknown archive) writes nothing,
  not even the agent's own archive.
- White box, for the search role: each passage leaves one index row (in write order, its
  text, no vector yet) and its tag rows, and takes them along when it goes.
"""

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import pytest

from kelpie.env import Entropy
from kelpie.errors import InvalidInput
from kelpie.memory import archive_id_of
from kelpie.schemas import (
    AGENT_PREFIX,
    ARCHIVE_PREFIX,
    PASSAGE_PREFIX,
    AgentConfig,
    Archive,
    EmbeddingConfig,
    Passage,
    us_from_datetime,
)
from kelpie.storage import (
    ArchiveQuery,
    Page,
    SqliteStore,
    StorageConflict,
    StorageUnavailable,
)
from kelpie.storage._postgres import PostgresStore

from ._backends import Backend, Conformance
from ._support import T0, agent_config, at

ALL: Final = Page(limit=1000, ascending=True)
PAGE_SIZE: Final = 3
SAME_TIME_PASSAGES: Final = 8
RACERS: Final = 4
RACE_WARMUPS: Final = 5
EMBEDDING: Final = EmbeddingConfig(
    embedding_endpoint_type="openai", embedding_model="text-embedding-3-small", embedding_dim=8
)


def _archive(entropy: Entropy, name: str, *, created_at: dt.datetime = T0) -> Archive:
    return Archive(id=entropy.new_id(ARCHIVE_PREFIX), name=name, created_at=created_at)


def _passage(
    entropy: Entropy,
    archive_id: str,
    text: str,
    *,
    created_at: dt.datetime = T0,
    agent_id: str | None = None,
    tags: Sequence[str] = (),
) -> Passage:
    return Passage(
        id=entropy.new_id(PASSAGE_PREFIX),
        text=text,
        archive_id=archive_id,
        agent_id=agent_id,
        tags=list(tags),
        created_at=created_at,
        updated_at=created_at,
    )


def _agent_passage(
    entropy: Entropy, agent: AgentConfig, text: str, *, created_at: dt.datetime = T0
) -> Passage:
    """A passage of the agent's archival memory (its own archive, as the tools write it)."""
    return _passage(
        entropy, archive_id_of(agent.id), text, created_at=created_at, agent_id=agent.id
    )


def _ids(items: Sequence[Passage | Archive]) -> list[str]:
    return [item.id for item in items]


async def _insert_agent(store: Conformance, agent: AgentConfig) -> None:
    await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())


async def _search_rows(store: Conformance) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """White box: what passages leave for search, in index-key order: (passage, archive,
    created_at, text, vector still to do, vector_seq), and (passage, archive, tag) rows; and
    the passage vector counter, which only vector writes move."""
    index = (
        "SELECT i.passage_id, i.archive_id, i.created_at, {text}, i.vector IS NULL,"
        " i.vector_seq FROM passage_index i {join} ORDER BY i.seq"
    )
    tags = "SELECT passage_id, archive_id, tag FROM passage_tags ORDER BY passage_id, tag"
    counter = "SELECT value FROM search_counters WHERE name = 'passage'"
    if isinstance(store, SqliteStore):
        fts = index.format(text="f.text", join="JOIN passage_fts f ON f.rowid = i.seq")
        rows, tag_rows, counted = store._read(fts), store._read(tags), store._read(counter)
    else:
        assert isinstance(store, PostgresStore)
        own = index.format(text="i.text", join="")
        rows, tag_rows = await store._read(own), await store._read(tags)
        counted = await store._read(counter)
    assert counted == [(0,)], "a passage write moved the vector counter"
    return [tuple(row) for row in rows], [tuple(row) for row in tag_rows]


async def _texts(
    store: Conformance, archive_ids: Sequence[str], text: str | None, page: Page = ALL
) -> list[str]:
    return [passage.text for passage in await store.list_passages(archive_ids, page, text)]


async def _walk_passages(
    store: Conformance, archive_ids: Sequence[str], *, ascending: bool, backwards: bool = False
) -> list[list[str]]:
    """Every page of list_passages, following `after` cursors (or `before` ones from the far
    end when `backwards`)."""
    pages: list[list[str]] = []
    cursor: str | None = None
    if backwards:
        everything = await store.list_passages(
            archive_ids, Page(limit=1000, ascending=ascending), None
        )
        cursor = everything[-1].id
        pages.append([cursor])
    while True:
        page = (
            Page(limit=PAGE_SIZE, ascending=ascending, before=cursor)
            if backwards
            else Page(limit=PAGE_SIZE, ascending=ascending, after=cursor)
        )
        found = await store.list_passages(archive_ids, page, None)
        if not found:
            return pages[::-1] if backwards else pages
        pages.append(_ids(found))
        cursor = found[0].id if backwards else found[-1].id


# Passages ---------------------------------------------------------------------------------


def test_passages_round_trip_in_created_at_order(backend: Backend, entropy: Entropy) -> None:
    archive = _archive(entropy, "notes")
    later = _passage(
        entropy, archive.id, "later \u00e9\u4e2d \u0000 nul", created_at=at(9), tags=["n\u0000ul"]
    )
    earlier = _passage(entropy, archive.id, "earlier", created_at=at(1), tags=["b", "a", "b"])
    earlier = earlier.model_copy(
        update={
            "metadata": {"source": "chat", "n": [1, 2.5, None, {"deep": True}]},
            "embedding_config": EMBEDDING,
        }
    )

    async def write(store: Conformance) -> None:
        await store.insert_archive(archive)
        await store.insert_passages([later, earlier])
        assert await store.list_passages([archive.id], ALL, None) == [earlier, later]
        assert await store.count_passages(archive.id) == 2

    async def read(store: Conformance) -> None:
        # Read back equal by a freshly opened store, newest first by default.
        found = await store.list_passages([archive.id], Page(limit=10), None)
        assert found == [later, earlier]
        assert found[0].text == "later \u00e9\u4e2d \u0000 nul"
        assert found[1].tags == ["b", "a", "b"]
        assert await store.list_passages([], ALL, None) == []
        assert await store.list_passages([entropy.new_id(ARCHIVE_PREFIX)], ALL, None) == []
        assert await store.count_passages(entropy.new_id(ARCHIVE_PREFIX)) == 0

    backend.run(write)
    backend.run(read)


def test_an_agents_passage_creates_and_attaches_its_own_archive(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    own = archive_id_of(agent.id)
    first = _agent_passage(entropy, agent, "first", created_at=at(5))
    second = _agent_passage(entropy, agent, "second", created_at=at(3))
    third = _agent_passage(entropy, agent, "third", created_at=at(7))

    async def scenario(store: Conformance) -> None:
        await _insert_agent(store, agent)
        assert await store.archive_ids_of_agent(agent.id) == []
        # The batch's first passage names and dates the archive.
        await store.insert_passages([first, second])
        assert await store.archive_ids_of_agent(agent.id) == [own]
        created = Archive(id=own, name=f"archive of {agent.id}", created_at=at(5))
        assert await store.get_archive(own) == created
        # Later passages (and the archive renamed meanwhile) change nothing of it.
        renamed = created.model_copy(update={"name": "ada's notes"})
        await store.update_archive(renamed)
        await store.insert_passages([third])
        assert await store.get_archive(own) == renamed
        assert await store.archive_ids_of_agent(agent.id) == [own]
        assert await _texts(store, [own], None) == ["second", "first", "third"]
        assert await store.count_passages(own) == 3

    backend.run(scenario)


def test_first_passages_of_one_agent_at_once_create_one_archive(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    passages = [_agent_passage(entropy, agent, f"p{index}") for index in range(RACERS)]

    async def scenario(store: Conformance) -> None:
        await _insert_agent(store, agent)
        # On PostgreSQL the writers overlap once the pool has grown: reads in parallel
        # grow it first.
        for _ in range(RACE_WARMUPS):
            await asyncio.gather(*(store.archive_ids_of_agent(agent.id) for _ in range(RACERS)))
        await asyncio.gather(*(store.insert_passages([passage]) for passage in passages))
        assert await store.archive_ids_of_agent(agent.id) == [archive_id_of(agent.id)]
        assert await store.count_passages(archive_id_of(agent.id)) == RACERS
        named = await store.list_archives(ArchiveQuery(agent_id=agent.id), ALL)
        assert [archive.name for archive in named] == [f"archive of {agent.id}"]

    backend.run(scenario)


def test_list_passages_walks_same_time_passages_once_both_ways(
    backend: Backend, entropy: Entropy
) -> None:
    first, second, other = (_archive(entropy, name) for name in ("first", "second", "other"))
    passages = [
        _passage(entropy, (first, second)[index % 2].id, f"same {index}", created_at=at(2))
        for index in range(SAME_TIME_PASSAGES)
    ]
    edges = [
        _passage(entropy, first.id, "oldest", created_at=at(1)),
        _passage(entropy, second.id, "newest", created_at=at(3)),
    ]
    hidden = _passage(entropy, other.id, "same, elsewhere", created_at=at(2))

    async def scenario(store: Conformance) -> None:
        for archive in (first, second, other):
            await store.insert_archive(archive)
        await store.insert_passages([*passages, *edges, hidden])
        scope = [first.id, second.id]
        ordered = [edges[0].id, *sorted(_ids(passages)), edges[1].id]
        forward = await _walk_passages(store, scope, ascending=True)
        assert [passage_id for page in forward for passage_id in page] == ordered
        assert all(len(page) <= PAGE_SIZE for page in forward)
        backward = await _walk_passages(store, scope, ascending=False)
        assert [passage_id for page in backward for passage_id in page] == ordered[::-1]
        # `before` walks back towards the start, each page still in the page's order.
        back = await _walk_passages(store, scope, ascending=True, backwards=True)
        assert [passage_id for page in back for passage_id in page] == ordered
        between = Page(limit=100, ascending=True, after=ordered[1], before=ordered[-2])
        assert _ids(await store.list_passages(scope, between, None)) == ordered[2:-2]
        assert _ids(await store.list_passages([other.id], ALL, None)) == [hidden.id]

    backend.run(scenario)


def test_an_unknown_passage_cursor_is_invalid_input(backend: Backend, entropy: Entropy) -> None:
    archive = _archive(entropy, "notes")
    unknown = entropy.new_id(PASSAGE_PREFIX)

    async def scenario(store: Conformance) -> None:
        await store.insert_archive(archive)
        with pytest.raises(InvalidInput, match=unknown):
            await store.list_passages([archive.id], Page(limit=5, after=unknown), None)
        with pytest.raises(InvalidInput, match=unknown):
            await store.list_passages([archive.id], Page(limit=5, before=unknown), None)

    backend.run(scenario)


def test_list_passages_text_filter(backend: Backend, entropy: Entropy) -> None:
    archive, other = _archive(entropy, "notes"), _archive(entropy, "other")
    texts = ["Kelp forests", "the KELP bed", "sea otters", "50%_off", "50xxoff", "a\\b", "ab"]
    passages = [
        _passage(entropy, archive.id, text, created_at=at(index + 1))
        for index, text in enumerate(texts)
    ]

    async def scenario(store: Conformance) -> None:
        for stored in (archive, other):
            await store.insert_archive(stored)
        await store.insert_passages(
            [*passages, _passage(entropy, other.id, "kelp elsewhere", created_at=at(0))]
        )
        assert await _texts(store, [archive.id], "kelp") == ["Kelp forests", "the KELP bed"]
        assert await _texts(store, [archive.id], "OTTER") == ["sea otters"]
        assert await _texts(store, [archive.id], "whales") == []
        # LIKE wildcards and the escape character are plain characters.
        assert await _texts(store, [archive.id], "%") == ["50%_off"]
        assert await _texts(store, [archive.id], "0_") == []
        assert await _texts(store, [archive.id], "%_") == ["50%_off"]
        assert await _texts(store, [archive.id], "\\") == ["a\\b"]
        # No filter (None or empty) lists every passage; the filter pages like the list.
        assert len(await _texts(store, [archive.id], "")) == len(texts)
        assert await _texts(store, [archive.id], None) == texts
        page = Page(limit=1, ascending=True, after=passages[0].id)
        assert await _texts(store, [archive.id], "kelp", page) == ["the KELP bed"]
        assert await _texts(store, [archive.id, other.id], "kelp", Page(limit=3)) == [
            "the KELP bed",
            "Kelp forests",
            "kelp elsewhere",
        ]

    backend.run(scenario)


def test_delete_passage_only_from_the_archives_given(backend: Backend, entropy: Entropy) -> None:
    mine, theirs = _archive(entropy, "mine"), _archive(entropy, "theirs")
    kept = _passage(entropy, mine.id, "kept", created_at=at(1))
    doomed = _passage(entropy, mine.id, "doomed", created_at=at(2), tags=["t"])

    async def scenario(store: Conformance) -> None:
        for archive in (mine, theirs):
            await store.insert_archive(archive)
        await store.insert_passages([kept, doomed])
        assert await store.delete_passage([theirs.id], doomed.id) is False
        assert await store.delete_passage([], doomed.id) is False
        assert await store.count_passages(mine.id) == 2
        assert await store.delete_passage([theirs.id, mine.id], doomed.id) is True
        assert await store.delete_passage([mine.id], doomed.id) is False
        assert await store.delete_passage([mine.id], entropy.new_id(PASSAGE_PREFIX)) is False
        assert _ids(await store.list_passages([mine.id], ALL, None)) == [kept.id]
        assert await store.count_passages(mine.id) == 1
        # Nothing of the deleted passage is left behind (its search rows included): the
        # same id can be written again.
        await store.insert_passages([doomed])
        assert await store.list_passages([mine.id], ALL, None) == [kept, doomed]

    backend.run(scenario)


def test_a_batch_that_fails_half_way_writes_nothing(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    archive = _archive(entropy, "notes")
    stored = _passage(entropy, archive.id, "stored", created_at=at(1))
    own = _agent_passage(entropy, agent, "own", created_at=at(2))
    fresh = _passage(entropy, archive.id, "fresh", created_at=at(3))
    repeated = _passage(entropy, archive.id, "repeated", created_at=at(4))
    unknown_archive = _passage(entropy, entropy.new_id(ARCHIVE_PREFIX), "nowhere")
    unknown_agent = _agent_passage(entropy, agent_config(entropy, "ghost"), "ghost's")

    async def scenario(store: Conformance) -> None:
        await _insert_agent(store, agent)
        await store.insert_archive(archive)
        await store.insert_passages([stored])
        for batch in (
            [own, fresh, repeated, repeated.model_copy(update={"text": "again"})],
            [own, fresh, stored],
            [own, fresh, unknown_archive],
            [own, fresh, unknown_agent],
        ):
            with pytest.raises(StorageConflict):
                await store.insert_passages(batch)
            assert await store.list_passages([archive.id], ALL, None) == [stored]
            assert await store.count_passages(archive.id) == 1
            assert await store.archive_ids_of_agent(agent.id) == []
            assert await store.get_archive(own.archive_id) is None
            assert await store.get_archive(unknown_agent.archive_id) is None
        # The same batch without its bad passage goes through whole.
        await store.insert_passages([own, fresh, repeated])
        assert _ids(await store.list_passages([archive.id], ALL, None)) == [
            stored.id,
            fresh.id,
            repeated.id,
        ]
        assert await store.archive_ids_of_agent(agent.id) == [own.archive_id]

    backend.run(scenario)


def test_passages_leave_index_and_tag_rows_for_search(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    archive = _archive(entropy, "notes")
    later = _passage(entropy, archive.id, "kelp forests", created_at=at(2), tags=["x", "y", "x"])
    earlier = _passage(entropy, archive.id, "sea otters", created_at=at(1))
    own = _agent_passage(entropy, agent, "ada's own", created_at=at(3))
    own = own.model_copy(update={"tags": ["mine"]})

    def index_row(passage: Passage) -> tuple[Any, ...]:
        return (
            passage.id,
            passage.archive_id,
            us_from_datetime(passage.created_at),
            passage.text,
            True,
            None,
        )

    async def scenario(store: Conformance) -> None:
        await _insert_agent(store, agent)
        await store.insert_archive(archive)
        await store.insert_passages([later, earlier])
        await store.insert_passages([own])
        rows, tags = await _search_rows(store)
        # Keys follow the writes (not created_at): the embedding backlog is taken in order.
        assert rows == [index_row(later), index_row(earlier), index_row(own)]
        assert tags == sorted(
            [
                (later.id, archive.id, "x"),
                (later.id, archive.id, "y"),
                (own.id, own.archive_id, "mine"),
            ]
        )
        assert await store.delete_passage([archive.id], later.id) is True
        assert await _search_rows(store) == (
            [index_row(earlier), index_row(own)],
            [(own.id, own.archive_id, "mine")],
        )
        assert await store.delete_archive(own.archive_id) is True
        assert await _search_rows(store) == ([index_row(earlier)], [])

    backend.run(scenario)


# Archives ---------------------------------------------------------------------------------


def test_archives_round_trip_update_and_delete(backend: Backend, entropy: Entropy) -> None:
    archive = _archive(entropy, "notes", created_at=at(4)).model_copy(
        update={
            "description": "what ada read \u00e9",
            "metadata": {"k": [1, "two", None]},
            "embedding_config": EMBEDDING,
            "updated_at": at(4),
        }
    )
    changed = archive.model_copy(
        update={"name": "renamed", "description": None, "updated_at": at(6)}
    )

    async def write(store: Conformance) -> None:
        await store.insert_archive(archive)
        assert await store.get_archive(archive.id) == archive
        with pytest.raises(StorageConflict):
            await store.insert_archive(archive.model_copy(update={"name": "twin"}))
        assert await store.get_archive(archive.id) == archive
        await store.update_archive(changed)

    async def read(store: Conformance) -> None:
        assert await store.get_archive(archive.id) == changed
        assert await store.get_archive(entropy.new_id(ARCHIVE_PREFIX)) is None
        assert await store.delete_archive(archive.id) is True
        assert await store.get_archive(archive.id) is None
        assert await store.delete_archive(archive.id) is False

    backend.run(write)
    backend.run(read)


def test_list_archives_filters_and_pages(backend: Backend, entropy: Entropy) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    same_time = [_archive(entropy, "shared", created_at=at(2)) for _ in range(5)]
    first = _archive(entropy, "first", created_at=at(1))
    last = _archive(entropy, "shared", created_at=at(3))
    ordered = [first.id, *sorted(_ids(same_time)), last.id]

    async def names(store: Conformance, query: ArchiveQuery) -> list[str]:
        return _ids(await store.list_archives(query, ALL))

    async def scenario(store: Conformance) -> None:
        for agent in (ada, bob):
            await _insert_agent(store, agent)
        for archive in (last, *same_time, first):
            await store.insert_archive(archive)
        assert await names(store, ArchiveQuery()) == ordered
        assert await names(store, ArchiveQuery(name="shared")) == ordered[1:]
        assert await names(store, ArchiveQuery(name="none")) == []
        for archive_id in (last.id, first.id, same_time[0].id):
            await store.attach_archive(ada.id, archive_id)
        await store.attach_archive(bob.id, same_time[1].id)
        # An agent's own archive is one of its archives.
        await store.insert_passages([_agent_passage(entropy, ada, "mine", created_at=at(9))])
        ada_archives = [first.id, same_time[0].id, last.id, archive_id_of(ada.id)]
        assert await names(store, ArchiveQuery(agent_id=ada.id)) == ada_archives
        assert await names(store, ArchiveQuery(agent_id=bob.id)) == [same_time[1].id]
        both = ArchiveQuery(name="shared", agent_id=ada.id)
        assert await names(store, both) == [same_time[0].id, last.id]
        unknown = entropy.new_id(AGENT_PREFIX)
        assert await names(store, ArchiveQuery(agent_id=unknown)) == []
        # Strict cursor paging both ways over same-time archives.
        everything = [*ordered, archive_id_of(ada.id)]
        pages: list[list[str]] = []
        after: str | None = None
        while found := await store.list_archives(
            ArchiveQuery(), Page(limit=PAGE_SIZE, ascending=True, after=after)
        ):
            pages.append(_ids(found))
            after = found[-1].id
        assert [archive_id for page in pages for archive_id in page] == everything
        newest = await store.list_archives(ArchiveQuery(), Page(limit=2))
        assert _ids(newest) == everything[:-3:-1]
        before = Page(limit=2, ascending=True, before=ordered[3])
        assert _ids(await store.list_archives(ArchiveQuery(), before)) == ordered[1:3]
        with pytest.raises(InvalidInput):
            await store.list_archives(ArchiveQuery(), Page(limit=2, after=unknown))

    backend.run(scenario)


def test_attach_and_detach(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    archives = [_archive(entropy, name) for name in ("one", "two", "three")]
    by_id = sorted(_ids(archives))

    async def scenario(store: Conformance) -> None:
        await _insert_agent(store, agent)
        for archive in archives:
            await store.insert_archive(archive)
        for archive in archives[::-1]:
            await store.attach_archive(agent.id, archive.id)
        await store.attach_archive(agent.id, archives[0].id)
        assert await store.archive_ids_of_agent(agent.id) == by_id
        assert await store.detach_archive(agent.id, archives[1].id) is True
        assert await store.detach_archive(agent.id, archives[1].id) is False
        assert await store.archive_ids_of_agent(agent.id) == [
            archive_id for archive_id in by_id if archive_id != archives[1].id
        ]
        # Detaching keeps the archive; unknown ids attach to nothing.
        assert await store.get_archive(archives[1].id) == archives[1]
        unknown_agent = entropy.new_id(AGENT_PREFIX)
        unknown_archive = entropy.new_id(ARCHIVE_PREFIX)
        with pytest.raises(StorageConflict):
            await store.attach_archive(unknown_agent, archives[0].id)
        with pytest.raises(StorageConflict):
            await store.attach_archive(agent.id, unknown_archive)
        assert await store.detach_archive(unknown_agent, archives[0].id) is False
        assert await store.detach_archive(agent.id, unknown_archive) is False
        assert await store.archive_ids_of_agent(unknown_agent) == []
        # Deleting the agent detaches its archives and keeps them.
        assert await store.delete_agent(agent.id) is True
        assert await store.archive_ids_of_agent(agent.id) == []
        assert _ids(await store.list_archives(ArchiveQuery(), ALL)) == by_id

    backend.run(scenario)


def test_deleting_an_archive_deletes_its_passages_and_attachments(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    doomed, kept = _archive(entropy, "doomed"), _archive(entropy, "kept")
    gone = [_passage(entropy, doomed.id, f"gone {index}", tags=["t"]) for index in range(3)]
    stays = _passage(entropy, kept.id, "stays")

    async def scenario(store: Conformance) -> None:
        await _insert_agent(store, agent)
        for archive in (doomed, kept):
            await store.insert_archive(archive)
            await store.attach_archive(agent.id, archive.id)
        await store.insert_passages([*gone, stays])
        assert await store.delete_archive(doomed.id) is True
        assert await store.count_passages(doomed.id) == 0
        assert await store.list_passages([doomed.id, kept.id], ALL, None) == [stays]
        assert await store.delete_passage([doomed.id], gone[0].id) is False
        assert await store.archive_ids_of_agent(agent.id) == [kept.id]
        # Nothing of the passages is left behind: an archive of the same id starts empty
        # and takes the same passages again.
        await store.insert_archive(doomed)
        assert await store.count_passages(doomed.id) == 0
        await store.insert_passages(gone)
        assert await store.count_passages(doomed.id) == len(gone)
        # An agent's own archive goes the same way, and its next passage creates it anew.
        own = _agent_passage(entropy, agent, "own", created_at=at(1))
        await store.insert_passages([own])
        assert await store.delete_archive(own.archive_id) is True
        assert await store.archive_ids_of_agent(agent.id) == [kept.id]
        again = _agent_passage(entropy, agent, "again", created_at=at(2))
        await store.insert_passages([again])
        assert await store.list_passages([own.archive_id], ALL, None) == [again]
        assert await store.archive_ids_of_agent(agent.id) == sorted([kept.id, own.archive_id])

    backend.run(scenario)


# Failures ---------------------------------------------------------------------------------


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    archive = _archive(entropy, "notes")

    async def scenario(store: Conformance) -> None:
        await store.close()
        with pytest.raises(StorageUnavailable):
            await store.list_passages([archive.id], ALL, None)
        with pytest.raises(StorageUnavailable):
            await store.insert_archive(archive)

    backend.run(scenario)
