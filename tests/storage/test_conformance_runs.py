"""The messages-and-runs role of the Store, the same assertions on every backend (SQLite and
PostgreSQL):

- Messages read back equal, in the order asked for (unknown ids skipped); writing a stored
  message id again rewrites it in place (the system message, recompiled), never a conflict.
- A thread's messages (the agent's own, a conversation's with the history a fork shares,
  or every thread), a run's, and every agent's are listed in the strict (created_at, id)
  order and paged by cursor both ways: each message on exactly one page, however many
  share a timestamp; a cursor that names nothing is InvalidInput.
- count_messages counts one agent's; delete_agent_messages deletes one agent's but the
  kept ones, and says how many. A deleted message is never read back (no cache serves it).
- A run saved again is updated in place; list_runs filters by agents, thread (any, the
  agent's own, one conversation), statuses and background; active_runs are the unfinished
  ones, oldest first. Pruning deletes the stored streams of ended background runs created
  before a time, oldest first and at most so many, marks them pruned, and never touches a
  running run's stream or one it pruned before.
- Steps are listed by run or agent, paged; get_step reads one back.
- A step commit writes everything the step changed in one transaction: the run, the step,
  its messages, block changes (a history entry per tool call), new and detached blocks,
  passages, working memory, the thread's in-context ids (appended or replaced), the
  agent's activity and last-run fields, and the run's stream events. A commit that breaks
  a rule (a step id or an event seq already stored, a label the agent has) is a
  StorageConflict and writes nothing at all. Commits of agents that change the same shared
  blocks, run at once with updates of those agents, all land.
- A closed store is StorageUnavailable.
"""

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import pytest

from kelpie.env import Entropy
from kelpie.errors import InvalidInput
from kelpie.schemas import (
    ARCHIVE_PREFIX,
    CONVERSATION_PREFIX,
    MESSAGE_PREFIX,
    PASSAGE_PREFIX,
    RUN_PREFIX,
    STEP_PREFIX,
    AgentConfig,
    Archive,
    Block,
    Message,
    Passage,
    Run,
    RunEvent,
    Step,
    us_from_datetime,
    working_memory_entry,
)
from kelpie.storage import (
    ChangedBlock,
    MessageQuery,
    Page,
    RunQuery,
    StepCommit,
    StorageConflict,
    StorageUnavailable,
    ThreadUpdate,
)

from ._backends import Backend, Conformance
from ._support import T0, agent_config, at, new_block, new_message, new_run, own_thread

ALL: Final = Page(limit=1000, ascending=True)
PAGE_SIZE: Final = 4
SAME_TIME_ITEMS: Final = 11
RACERS: Final = 4
RACE_WARMUPS: Final = 5
NOW_US: Final = us_from_datetime(T0)


def _ids(items: Sequence[Message | Run | Step]) -> list[str]:
    return [item.id for item in items]


async def _insert(store: Conformance, *agents: AgentConfig) -> None:
    for agent in agents:
        await store.insert_agent(agent, new_blocks=(), block_ids=(), tool_ids=(), tags=())


Lister = Callable[[Page], Awaitable[Sequence[Message | Run | Step]]]


async def _walk(lister: Lister, *, ascending: bool, before: str | None = None) -> list[list[str]]:
    """Every page: following `after` cursors, or `before` ones back from `before`."""
    pages: list[list[str]] = []
    cursor = before
    while True:
        page = (
            Page(limit=PAGE_SIZE, ascending=ascending, before=cursor)
            if before is not None
            else Page(limit=PAGE_SIZE, ascending=ascending, after=cursor)
        )
        found = _ids(await lister(page))
        if not found:
            return pages
        pages.append(found)
        cursor = found[0] if before is not None else found[-1]


async def _check_strict_paging(lister: Lister, expected: list[str]) -> None:
    """`expected`: every item, ascending. Walks both ways with each kind of cursor."""
    for ascending in (True, False):
        order = expected if ascending else expected[::-1]
        pages = await _walk(lister, ascending=ascending)
        assert [len(page) for page in pages] == [4, 4, 3]
        assert [item for page in pages for item in page] == order
        back = await _walk(lister, ascending=ascending, before=order[-1])
        # The first page holds the items just before the cursor, each page in page order.
        assert back[0] == order[-1 - PAGE_SIZE : -1]
        assert [item for page in reversed(back) for item in page] == order[:-1]
        between = Page(limit=100, ascending=ascending, after=order[2], before=order[8])
        assert _ids(await lister(between)) == order[3:8]


# Messages -------------------------------------------------------------------------------


def test_messages_read_back_equal_in_the_order_asked(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    first = new_message(entropy, agent.id, "héllo ☃ \u0000 end", created_at=at(1))
    second = Message.model_validate(
        {
            **new_message(entropy, agent.id, "", role="assistant", created_at=at(2)).model_dump(),
            "tool_calls": [{"id": "call-1", "name": "send_message", "arguments": "{}"}],
            "hidden": True,
        }
    )
    unknown = entropy.new_id(MESSAGE_PREFIX)

    async def write(store: Conformance) -> None:
        await _insert(store, agent)
        await store.insert_messages([first, second])

    async def read(store: Conformance) -> None:
        found = await store.get_messages([second.id, unknown, first.id])
        assert found == [second, first]
        assert await store.get_messages([first.id, first.id]) == [first, first]
        assert await store.get_messages([]) == []
        assert await store.get_messages([unknown]) == []

    backend.run(write)
    backend.run(read)


def test_a_stored_message_written_again_is_rewritten_in_place(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    system = new_message(entropy, agent.id, "You are Ada.", role="system")
    recompiled = system.model_copy(update={"text": "You are Ada. Memory: ..."})

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        await store.insert_messages([system])
        assert await store.get_messages([system.id]) == [system]
        await store.insert_messages([recompiled])
        assert await store.get_messages([system.id]) == [recompiled]
        assert await store.count_messages(agent.id) == 1

    backend.run(scenario)


def test_list_messages_lists_one_thread_or_every_thread(backend: Backend, entropy: Entropy) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    conversation_id = entropy.new_id(CONVERSATION_PREFIX)
    own = [new_message(entropy, ada.id, f"own {i}", created_at=at(2 * i)) for i in range(3)]
    other = [
        new_message(
            entropy, ada.id, f"conv {i}", created_at=at(2 * i + 1), conversation_id=conversation_id
        )
        for i in range(2)
    ]
    bobs = new_message(entropy, bob.id, "bob's", created_at=at(1))

    async def scenario(store: Conformance) -> None:
        async def listed(query: MessageQuery, page: Page = ALL) -> list[str]:
            return _ids(await store.list_messages(query, page))

        await _insert(store, ada, bob)
        await store.insert_messages([*own, *other, bobs])
        assert await listed(MessageQuery(agent_id=ada.id)) == _ids(own)
        assert await listed(MessageQuery(agent_id=ada.id, conversation_id=conversation_id)) == (
            _ids(other)
        )
        everything = sorted([*own, *other], key=lambda m: m.created_at)
        assert await listed(MessageQuery(agent_id=ada.id, all_threads=True)) == _ids(everything)
        # A fork lists the history it shares with its source as its own.
        shared = MessageQuery(
            agent_id=ada.id, conversation_id=conversation_id, shared_ids=(own[0].id, bobs.id)
        )
        assert await listed(shared) == [own[0].id, other[0].id, other[1].id]
        newest = await listed(MessageQuery(agent_id=ada.id, all_threads=True), Page(limit=2))
        assert newest == _ids(everything[::-1][:2])
        assert await listed(MessageQuery(agent_id=bob.id)) == [bobs.id]

    backend.run(scenario)


@pytest.mark.parametrize("listing", ["thread", "run", "every agent"])
def test_message_lists_page_same_time_messages_strictly_both_ways(
    backend: Backend, entropy: Entropy, listing: str
) -> None:
    agent = agent_config(entropy, "ada")
    run = new_run(entropy, agent.id)
    messages = [
        new_message(entropy, agent.id, f"m{i}", run_id=run.id) for i in range(SAME_TIME_ITEMS)
    ]

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        await store.save_run(run)
        await store.insert_messages(messages)
        listers: dict[str, Lister] = {
            "thread": lambda page: store.list_messages(MessageQuery(agent_id=agent.id), page),
            "run": lambda page: store.list_run_messages(run.id, page),
            "every agent": lambda page: store.list_all_messages(None, page),
        }
        await _check_strict_paging(listers[listing], sorted(_ids(messages)))

    backend.run(scenario)


def test_list_all_messages_pages_across_agents(backend: Backend, entropy: Entropy) -> None:
    ada, grace = agent_config(entropy, "ada"), agent_config(entropy, "grace")
    messages = [
        new_message(entropy, agent.id, f"{agent.name} {i}", created_at=at(2 * i + offset))
        for i in range(3)
        for offset, agent in enumerate((ada, grace))
    ]

    async def scenario(store: Conformance) -> None:
        await _insert(store, ada, grace)
        await store.insert_messages(messages)
        newest = await store.list_all_messages(None, Page(limit=4, ascending=False))
        assert _ids(newest) == _ids(messages[::-1][:4])
        after = await store.list_all_messages(
            None, Page(limit=10, ascending=True, after=messages[1].id)
        )
        assert _ids(after) == _ids(messages[2:])

    backend.run(scenario)


def test_list_all_messages_of_one_conversation(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    conversation_id = entropy.new_id(CONVERSATION_PREFIX)
    plain = new_message(entropy, agent.id, "default thread", created_at=at(1))
    threaded = new_message(
        entropy, agent.id, "in conv", created_at=at(2), conversation_id=conversation_id
    )

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        await store.insert_messages([plain, threaded])
        found = await store.list_all_messages(conversation_id, ALL)
        assert _ids(found) == [threaded.id]
        assert _ids(await store.list_all_messages(None, ALL)) == [plain.id, threaded.id]

    backend.run(scenario)


def test_an_unknown_cursor_is_invalid_input(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    message_id, run_id = entropy.new_id(MESSAGE_PREFIX), entropy.new_id(RUN_PREFIX)
    step_id = entropy.new_id(STEP_PREFIX)

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        with pytest.raises(InvalidInput, match=message_id):
            await store.list_messages(
                MessageQuery(agent_id=agent.id), Page(limit=1, after=message_id)
            )
        with pytest.raises(InvalidInput, match=message_id):
            await store.list_all_messages(None, Page(limit=1, before=message_id))
        with pytest.raises(InvalidInput, match=run_id):
            await store.list_runs(RunQuery(), Page(limit=1, after=run_id))
        with pytest.raises(InvalidInput, match=step_id):
            await store.list_steps(None, agent.id, Page(limit=1, before=step_id))

    backend.run(scenario)


def test_count_and_delete_agent_messages(backend: Backend, entropy: Entropy) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    adas = [new_message(entropy, ada.id, f"a{i}", created_at=at(i)) for i in range(4)]
    bobs = [new_message(entropy, bob.id, "b")]

    async def scenario(store: Conformance) -> None:
        await _insert(store, ada, bob)
        await store.insert_messages([*adas, *bobs])
        assert (await store.count_messages(ada.id), await store.count_messages(bob.id)) == (4, 1)
        assert await store.get_messages(_ids(adas)) == adas
        kept = [adas[0].id, adas[2].id]
        assert await store.delete_agent_messages(ada.id, kept) == 2
        assert _ids(await store.get_messages(_ids(adas))) == kept
        assert await store.count_messages(ada.id) == 2
        assert await store.delete_agent_messages(ada.id, kept) == 0
        # No ids kept: every message of the agent goes; other agents keep theirs.
        assert await store.delete_agent_messages(ada.id, []) == 2
        assert await store.count_messages(ada.id) == 0
        assert await store.get_messages(_ids(bobs)) == bobs

    backend.run(scenario)


# Runs -----------------------------------------------------------------------------------


def test_a_run_saved_again_is_updated_in_place(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")
    run = new_run(entropy, agent.id, status="running", background=True).model_copy(
        update={"metadata": {"k": [1, None]}}
    )
    ended = run.model_copy(
        update={"status": "completed", "stop_reason": "end_turn", "completed_at": at(9)}
    )

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        await store.save_run(run)
        assert await store.get_run(run.id) == run
        await store.save_run(ended)
        assert await store.get_run(run.id) == ended
        assert await store.list_runs(RunQuery(), ALL) == [ended]
        assert await store.get_run(entropy.new_id(RUN_PREFIX)) is None

    backend.run(scenario)


def test_list_runs_filters_by_agent_thread_status_and_background(
    backend: Backend, entropy: Entropy
) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    conversation_id = entropy.new_id(CONVERSATION_PREFIX)
    own_done = new_run(entropy, ada.id, created_at=at(1))
    conv_running = new_run(
        entropy,
        ada.id,
        created_at=at(2),
        status="running",
        background=True,
        conversation_id=conversation_id,
    )
    own_failed = new_run(entropy, ada.id, created_at=at(3), status="failed", background=True)
    bobs_created = new_run(entropy, bob.id, created_at=at(4), status="created")

    async def listed(store: Conformance, **fields: Any) -> list[str]:
        return _ids(await store.list_runs(RunQuery(**fields), ALL))

    async def scenario(store: Conformance) -> None:
        await _insert(store, ada, bob)
        for run in (own_done, conv_running, own_failed, bobs_created):
            await store.save_run(run)
        every = _ids([own_done, conv_running, own_failed, bobs_created])
        assert await listed(store) == every
        assert _ids(await store.list_runs(RunQuery(), Page(limit=2))) == every[::-1][:2]
        assert await listed(store, agent_ids=(ada.id,)) == every[:3]
        assert await listed(store, agent_ids=(ada.id, bob.id)) == every
        # "" is the agent's own thread; a conversation id, that conversation's.
        assert await listed(store, conversation_id="") == _ids([own_done, own_failed, bobs_created])
        assert await listed(store, conversation_id=conversation_id) == [conv_running.id]
        assert await listed(store, statuses=("created", "running")) == _ids(
            [conv_running, bobs_created]
        )
        assert await listed(store, background=True) == _ids([conv_running, own_failed])
        assert await listed(store, background=False) == _ids([own_done, bobs_created])
        assert await listed(
            store, agent_ids=(ada.id,), conversation_id="", statuses=("failed",), background=True
        ) == [own_failed.id]
        assert await listed(store, agent_ids=(bob.id,), background=True) == []

    backend.run(scenario)


def test_list_runs_pages_same_time_runs_strictly_both_ways(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    runs = [new_run(entropy, agent.id) for _ in range(SAME_TIME_ITEMS)]

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        for run in runs:
            await store.save_run(run)
        query = RunQuery(agent_ids=(agent.id,))
        await _check_strict_paging(lambda page: store.list_runs(query, page), sorted(_ids(runs)))

    backend.run(scenario)


def test_active_runs_are_the_unfinished_ones_oldest_first(
    backend: Backend, entropy: Entropy
) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    later = new_run(entropy, ada.id, created_at=at(5), status="running")
    earlier = new_run(entropy, bob.id, created_at=at(1), status="created")
    ended = [
        new_run(entropy, ada.id, created_at=at(0), status=status)
        for status in ("completed", "failed", "cancelled")
    ]

    async def scenario(store: Conformance) -> None:
        await _insert(store, ada, bob)
        for run in (later, *ended, earlier):
            await store.save_run(run)
        assert await store.active_runs() == [earlier, later]
        await store.save_run(later.model_copy(update={"status": "cancelled"}))
        assert await store.active_runs() == [earlier]

    backend.run(scenario)


def _events(run: Run, count: int) -> list[RunEvent]:
    return [
        RunEvent(run_id=run.id, seq_id=seq, data=f'{{"seq": {seq}}}') for seq in range(1, count + 1)
    ]


def test_pruning_deletes_ended_background_streams_before_a_time_oldest_first(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    old_done = new_run(entropy, agent.id, created_at=at(1), background=True)
    old_failed = new_run(entropy, agent.id, created_at=at(2), background=True, status="failed")
    old_cancelled = new_run(
        entropy, agent.id, created_at=at(3), background=True, status="cancelled"
    )
    old_running = new_run(entropy, agent.id, created_at=at(0), background=True, status="running")
    old_foreground = new_run(entropy, agent.id, created_at=at(0))
    recent = new_run(entropy, agent.id, created_at=at(20), background=True)
    runs = [old_done, old_failed, old_cancelled, old_running, old_foreground, recent]
    cutoff = us_from_datetime(at(10))

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        for run in runs:
            await store.save_run(run, _events(run, 2))
        # At most two a pass, the oldest first.
        assert await store.prune_run_streams(cutoff, 2) == 2
        pruned = {run.id for run in runs if await store.run_stream_pruned(run.id)}
        assert pruned == {old_done.id, old_failed.id}
        assert await store.list_run_events(old_done.id, 0, 10) == []
        assert await store.list_run_events(old_cancelled.id, 0, 10) == _events(old_cancelled, 2)
        assert await store.prune_run_streams(cutoff, 10) == 1
        assert await store.run_stream_pruned(old_cancelled.id) is True
        assert await store.prune_run_streams(cutoff, 10) == 0, "nothing twice"
        for kept in (old_running, old_foreground, recent):
            assert await store.run_stream_pruned(kept.id) is False
            assert await store.list_run_events(kept.id, 0, 10) == _events(kept, 2)
        # The runs themselves stay.
        assert {run.id for run in await store.list_runs(RunQuery(), ALL)} == set(_ids(runs))
        assert await store.run_stream_pruned(entropy.new_id(RUN_PREFIX)) is False

    backend.run(scenario)


# Steps ----------------------------------------------------------------------------------


def _step(
    entropy: Entropy, agent: AgentConfig, run: Run | None, *, created_at: dt.datetime = T0
) -> Step:
    return Step(
        id=entropy.new_id(STEP_PREFIX),
        run_id=None if run is None else run.id,
        agent_id=agent.id,
        model="gpt-4o-mini",
        total_tokens=7,
        created_at=created_at,
    )


def test_steps_are_listed_by_run_and_agent(backend: Backend, entropy: Entropy) -> None:
    ada, bob = agent_config(entropy, "ada"), agent_config(entropy, "bob")
    first, second = new_run(entropy, ada.id), new_run(entropy, ada.id)
    steps = [
        _step(entropy, ada, first, created_at=at(1)),
        _step(entropy, ada, second, created_at=at(2)),
        _step(entropy, ada, first, created_at=at(3)),
    ]
    bobs = _step(entropy, bob, None, created_at=at(4))

    async def scenario(store: Conformance) -> None:
        await _insert(store, ada, bob)
        for run in (first, second):
            await store.save_run(run)
        for step in (*steps, bobs):
            await store.commit_step(
                StepCommit(
                    thread=ThreadUpdate(
                        agent_id=step.agent_id, conversation_id=None, updated_at=T0
                    ),
                    step=step,
                )
            )
        assert await store.list_steps(first.id, None, ALL) == [steps[0], steps[2]]
        assert await store.list_steps(None, ada.id, ALL) == steps
        assert await store.list_steps(second.id, ada.id, ALL) == [steps[1]]
        assert await store.list_steps(second.id, bob.id, ALL) == []
        assert await store.list_steps(None, None, Page(limit=2)) == [bobs, steps[2]]
        assert await store.get_step(steps[1].id) == steps[1]
        assert await store.get_step(entropy.new_id(STEP_PREFIX)) is None

    backend.run(scenario)


def test_list_steps_pages_same_time_steps_strictly_both_ways(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    steps = [_step(entropy, agent, None) for _ in range(SAME_TIME_ITEMS)]

    async def scenario(store: Conformance) -> None:
        await _insert(store, agent)
        for step in steps:
            await store.commit_step(StepCommit(thread=own_thread(agent), step=step))
        await _check_strict_paging(
            lambda page: store.list_steps(None, agent.id, page), sorted(_ids(steps))
        )

    backend.run(scenario)


# The step commit ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scene:
    """An agent with three blocks, two working-memory keys and an archive, and a step
    commit that changes each of them (see `_commit`)."""

    agent: AgentConfig
    human: Block
    persona: Block
    old: Block
    archive: Archive


def _scene(entropy: Entropy) -> Scene:
    return Scene(
        agent=agent_config(entropy, "ada"),
        human=new_block(entropy, "human", "Ada"),
        persona=new_block(entropy, "persona", "kind"),
        old=new_block(entropy, "old", "stale"),
        archive=Archive(id=entropy.new_id(ARCHIVE_PREFIX), name="notes", created_at=T0),
    )


async def _set_up(store: Conformance, scene: Scene) -> None:
    blocks = (scene.human, scene.persona, scene.old)
    await store.insert_agent(
        scene.agent,
        new_blocks=blocks,
        block_ids=[block.id for block in blocks],
        tool_ids=(),
        tags=(),
    )
    await store.insert_archive(scene.archive)
    for key in ("gone", "kept"):
        await store.set_working_memory(
            scene.agent.id, working_memory_entry(key, 1, ttl_s=None, now_us=NOW_US)
        )


def _commit(
    entropy: Entropy,
    scene: Scene,
    *,
    step: Step | None = None,
    created_label: str = "notes",
    event_seqs: Sequence[int] = (1, 2),
) -> StepCommit:
    """A step of a new background run that changes the human block twice (two tool
    calls), creates a block, detaches `old`, writes a passage and working memory, appends
    its messages to the agent's thread and streams events."""
    agent = scene.agent
    run = new_run(entropy, agent.id, created_at=at(1), status="running", background=True)
    messages = (
        new_message(entropy, agent.id, "hi", created_at=at(2), run_id=run.id),
        new_message(entropy, agent.id, "hello", role="assistant", created_at=at(3), run_id=run.id),
    )
    renamed = scene.human.model_copy(update={"value": "Ada L.", "updated_at": at(3)})
    return StepCommit(
        thread=ThreadUpdate(
            agent_id=agent.id,
            conversation_id=None,
            updated_at=at(4),
            appended=tuple(_ids(messages)),
        ),
        messages=messages,
        blocks_changed=(
            ChangedBlock(renamed, "call-1"),
            ChangedBlock(renamed.model_copy(update={"label": "person"}), "call-2"),
        ),
        blocks_created=(new_block(entropy, created_label, "new", created_at=at(3)),),
        blocks_detached=(scene.old.id,),
        passages=(
            Passage(
                id=entropy.new_id(PASSAGE_PREFIX),
                text="remember this",
                archive_id=scene.archive.id,
                created_at=at(3),
            ),
        ),
        working_memory_set=(
            working_memory_entry("new", [1], ttl_s=None, now_us=NOW_US + 1),
            working_memory_entry("kept", 2, ttl_s=None, now_us=NOW_US + 1),
        ),
        working_memory_deleted=("gone",),
        run=run,
        step=step or _step(entropy, agent, run, created_at=at(2)),
        events=tuple(
            RunEvent(run_id=run.id, seq_id=seq, data=f'{{"seq": {seq}}}') for seq in event_seqs
        ),
    )


async def _state(store: Conformance, scene: Scene, commit: StepCommit) -> tuple[object, ...]:
    """Everything a commit may write, as the store has it."""
    agent_id = scene.agent.id
    assert commit.run is not None
    assert commit.step is not None
    return (
        await store.get_run(commit.run.id),
        await store.get_step(commit.step.id),
        await store.get_messages(_ids(commit.messages)),
        await store.blocks_of_agents([agent_id]),
        await store.get_blocks([block.id for block in commit.blocks_created]),
        await store.list_block_history(scene.human.id, ALL),
        await store.list_passages([scene.archive.id], ALL, None),
        await store.list_working_memory(agent_id, "", ALL, NOW_US + 1),
        await store.context_since(agent_id, None, None),
        await store.list_run_events(commit.run.id, 0, 100),
        await store.get_agent(agent_id),
    )


def test_a_step_commit_writes_every_part(backend: Backend, entropy: Entropy) -> None:
    scene = _scene(entropy)
    commit = _commit(entropy, scene)
    agent_id = scene.agent.id

    async def write(store: Conformance) -> None:
        await _set_up(store, scene)
        await store.commit_step(commit)

    async def read(store: Conformance) -> None:
        assert commit.run is not None
        assert commit.step is not None
        assert await store.get_run(commit.run.id) == commit.run
        assert await store.get_step(commit.step.id) == commit.step
        assert await store.get_messages(_ids(commit.messages)) == list(commit.messages)
        assert await store.list_run_messages(commit.run.id, ALL) == list(commit.messages)
        # Each tool call's change is one history entry naming the call and the step.
        entries = await store.list_block_history(scene.human.id, ALL)
        assert [(e.seq, e.source, e.tool_call_id) for e in entries] == [
            (1, "tool", "call-1"),
            (2, "tool", "call-2"),
        ]
        assert {(e.agent_id, e.step_id) for e in entries} == {(agent_id, commit.step.id)}
        assert (entries[0].old.value, entries[0].new.value) == ("Ada", "Ada L.")
        assert (entries[1].old.label, entries[1].new.label) == ("human", "person")
        assert entries[1].new.value == "Ada L."
        blocks = (await store.blocks_of_agents([agent_id]))[agent_id]
        assert sorted(block.label for block in blocks) == ["notes", "person", "persona"]
        assert await store.get_agent_block(agent_id, "notes") == commit.blocks_created[0]
        # Detached, not deleted.
        assert await store.get_block(scene.old.id) == scene.old
        assert await store.list_passages([scene.archive.id], ALL, None) == list(commit.passages)
        entries_wm = await store.list_working_memory(agent_id, "", ALL, NOW_US + 1)
        assert [(e.key, e.value) for e in entries_wm] == [("kept", 2), ("new", [1])]
        # A replaced key keeps its created_at.
        assert entries_wm[0].created_at == T0
        context = await store.context_since(agent_id, None, None)
        assert context is not None
        assert context.ids == tuple(_ids(commit.messages))
        assert await store.list_run_events(commit.run.id, 0, 100) == list(commit.events)
        agent = await store.get_agent(agent_id)
        assert agent is not None
        assert agent.updated_at == at(4)
        assert agent.message_ids == _ids(commit.messages)

    backend.run(write)
    backend.run(read)


@pytest.mark.parametrize("rule", ["step id", "event seq", "block label"])
def test_a_step_commit_that_breaks_a_rule_writes_nothing(
    backend: Backend, entropy: Entropy, rule: str
) -> None:
    scene = _scene(entropy)
    first = _step(entropy, scene.agent, None, created_at=at(1))

    async def scenario(store: Conformance) -> None:
        await _set_up(store, scene)
        await store.commit_step(StepCommit(thread=own_thread(scene.agent), step=first))
        broken = {
            "step id": _commit(entropy, scene, step=first),
            "event seq": _commit(entropy, scene, event_seqs=(1, 1)),
            # `persona` is attached and untouched by the step.
            "block label": _commit(entropy, scene, created_label="persona"),
        }[rule]
        before = await _state(store, scene, broken)
        with pytest.raises(StorageConflict):
            await store.commit_step(broken)
        assert await _state(store, scene, broken) == before
        assert broken.run is not None
        assert await store.get_run(broken.run.id) is None
        assert await store.get_messages(_ids(broken.messages)) == []
        assert await store.list_block_history(scene.human.id, ALL) == []
        assert await store.get_step(first.id) == first

    backend.run(scenario)


def test_a_step_commit_can_replace_the_thread_and_records_a_finished_run(
    backend: Backend, entropy: Entropy
) -> None:
    agent = agent_config(entropy, "ada")
    system = new_message(entropy, agent.id, "You are Ada.", role="system")
    older = [new_message(entropy, agent.id, f"m{i}", created_at=at(i + 1)) for i in range(3)]
    summary = new_message(entropy, agent.id, "summary", role="summary", created_at=at(5))
    run = new_run(entropy, agent.id, created_at=at(4)).model_copy(
        update={
            "stop_reason": "end_turn",
            "completed_at": at(6),
            "total_duration_ns": 2_500_000_000,
        }
    )

    async def scenario(store: Conformance) -> None:
        await store.insert_agent(
            agent.model_copy(update={"message_ids": [system.id]}),
            new_blocks=(),
            block_ids=(),
            tool_ids=(),
            tags=(),
            messages=[system],
        )
        appended = ThreadUpdate(
            agent_id=agent.id, conversation_id=None, updated_at=at(3), appended=tuple(_ids(older))
        )
        await store.commit_step(StepCommit(thread=appended, messages=tuple(older)))
        start = await store.context_since(agent.id, None, None)
        assert start is not None
        assert start.ids == (system.id, *_ids(older))
        # Compaction: the list is replaced, and the run's outcome lands on the agent.
        compacted = ThreadUpdate(
            agent_id=agent.id,
            conversation_id=None,
            updated_at=at(6),
            message_ids=(system.id, summary.id, older[-1].id),
            finished_run=run,
        )
        await store.commit_step(StepCommit(thread=compacted, messages=(summary,), run=run))
        now = await store.context_since(agent.id, None, start.head)
        assert now is not None
        assert (now.head, now.ids) == (compacted.next_head(start.head), compacted.message_ids)
        assert await store.context_since(agent.id, None, now.head) is None
        stored = await store.get_agent(agent.id)
        assert stored is not None
        assert stored.message_ids == list(now.ids)
        assert (stored.last_stop_reason, stored.last_run_completion) == ("end_turn", at(6))
        assert (stored.last_run_duration_ms, stored.updated_at) == (2500, at(6))
        # The replaced messages stay stored (recall memory).
        assert await store.count_messages(agent.id) == 5

    backend.run(scenario)


def test_concurrent_step_commits_and_agent_updates_all_land(
    backend: Backend, entropy: Entropy
) -> None:
    """Agents sharing two blocks commit steps at once, each changing both blocks (half of
    them in the other order, and detaching one), while each agent is also updated, its
    block links rewritten: none waits forever or fails. (On PostgreSQL, where these
    overlap, a commit locks its agent's row first and then the blocks in id order.)"""
    agents = [agent_config(entropy, f"a{index}") for index in range(RACERS)]
    first, second = new_block(entropy, "human", "h"), new_block(entropy, "persona", "p")
    links = (first.id, second.id)

    def commit(index: int, agent: AgentConfig) -> StepCommit:
        at_index = at(index + 1)
        changed = [
            ChangedBlock(
                block.model_copy(update={"value": f"v{index}", "updated_at": at_index}),
                f"call-{index}",
            )
            for block in (first, second)
        ]
        reply = new_message(entropy, agent.id, f"m{index}")
        return StepCommit(
            thread=ThreadUpdate(
                agent_id=agent.id, conversation_id=None, updated_at=at_index, appended=(reply.id,)
            ),
            messages=(reply,),
            blocks_changed=tuple(changed if index % 2 else changed[::-1]),
            blocks_detached=(second.id,) if index % 2 else (),
            step=_step(entropy, agent, None, created_at=at_index),
        )

    async def scenario(store: Conformance) -> None:
        for block in (first, second):
            await store.insert_block(block)
        for agent in agents:
            await store.insert_agent(agent, new_blocks=(), block_ids=links, tool_ids=(), tags=())
        # Reads in parallel grow the pool first, so the writes overlap (on PostgreSQL).
        for _ in range(RACE_WARMUPS):
            await asyncio.gather(*(store.get_agent(agent.id) for agent in agents))
        commits = [commit(index, agent) for index, agent in enumerate(agents)]
        updates = [
            agent.model_copy(update={"description": "updated", "updated_at": at(RACERS + 1)})
            for agent in agents
        ]
        await asyncio.gather(
            *(store.commit_step(c) for c in commits),
            *(store.update_agent(agent, block_ids=links) for agent in updates),
        )
        for block in (first, second):
            entries = await store.list_block_history(block.id, ALL)
            assert [entry.seq for entry in entries] == list(range(1, RACERS + 1))
        for agent, c in zip(agents, commits, strict=True):
            stored = await store.get_agent(agent.id)
            assert stored is not None
            assert stored.description == "updated"
            assert await store.get_messages(_ids(c.messages)) == list(c.messages)
            # Detached or linked again, whichever committed last.
            blocks = (await store.blocks_of_agents([agent.id]))[agent.id]
            assert first.id in {block.id for block in blocks}

    backend.run(scenario)


# Storage errors -------------------------------------------------------------------------


def test_a_closed_store_is_storage_unavailable(backend: Backend, entropy: Entropy) -> None:
    agent = agent_config(entropy, "ada")

    async def scenario(store: Conformance) -> None:
        await store.close()
        with pytest.raises(StorageUnavailable):
            await store.get_messages([entropy.new_id(MESSAGE_PREFIX)])
        with pytest.raises(StorageUnavailable):
            await store.list_runs(RunQuery(), ALL)
        with pytest.raises(StorageUnavailable):
            await store.commit_step(StepCommit(thread=own_thread(agent)))
        with pytest.raises(StorageUnavailable):
            await store.save_run(new_run(entropy, agent.id))

    backend.run(scenario)
