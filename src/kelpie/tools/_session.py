"""What the tools of one turn share: the agent they act for, and the effects of its calls
that wait for the step's commit (block edits with the call that made each, new and
detached blocks, archival passages, working-memory writes). Nothing a tool does reaches
the store before the step commits, in one transaction with the step's messages."""

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kelpie.env import Env
from kelpie.memory import MemorySearch
from kelpie.schemas import (
    BLOCK_PREFIX,
    AgentState,
    Block,
    CodeCallAnswer,
    CodePause,
    Passage,
    Tool,
    datetime_from_us,
)
from kelpie.storage import ChangedBlock
from kelpie.tools._memory_edit import MemoryBlock, MemoryEdit
from kelpie.tools._working_memory_scratch import WorkingMemoryScratch


@dataclasses.dataclass
class ToolOutcome:
    returned: str | None
    ok: bool
    arguments: dict[str, Any]
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    # Ran by the client (an approval reply): its return is passed on unpackaged.
    from_client: bool = False
    # See ToolReturn.value.
    value: Any = None
    # See ToolReturn.paused.
    paused: CodePause | None = None


@dataclasses.dataclass(frozen=True)
class CodeResume:
    """How code paused at a call that waited for approval runs again: the calls it made
    before are answered from `answers` (their effects are committed already), and the
    waiting call (`waiting`: name, arguments) by the reply: approved (`reply` None: it runs
    now), or denied or run by the client (`reply`: ok, value)."""

    answers: Sequence[CodeCallAnswer]
    waiting: tuple[str, dict[str, Any]]
    reply: tuple[bool, Any] | None


class ToolSession:
    def __init__(
        self,
        env: Env,
        search: MemorySearch,
        *,
        agent: AgentState,
        run_id: str | None,
        blocks: list[Block],
        environment: Mapping[str, str],
        tools: Mapping[str, Tool] | None = None,
        terminal: Collection[str] = (),
        needs_approval: Collection[str] = (),
        max_count: Mapping[str, int] | None = None,
        called: list[str] | None = None,
    ) -> None:
        self.env = env
        self.search = search
        self.agent = agent
        self.run_id = run_id
        # The agent's secrets: the environment of its sandboxed tools, never logged.
        self.environment = dict(environment)
        # The agent's tools by name and what its rules say of them: code calls tools only
        # through the session, under the rules a direct call has.
        self.tools: dict[str, Tool] = dict(tools or {})
        self.terminal = frozenset(terminal)
        self.needs_approval = frozenset(needs_approval)
        # Tool name → most calls per turn (max_count_per_step), and the turn's calls so far
        # (the loop's own list: a call from code counts as a direct call does).
        self.max_count = dict(max_count or {})
        self.called = [] if called is None else called
        self.blocks: dict[str, Block] = {block.label: block for block in blocks}
        # What the step commit writes: existing blocks as each tool call left them (each
        # change gets its history entry, naming the call), and new blocks by id.
        self.changed: list[ChangedBlock] = []
        self.created: dict[str, Block] = {}
        self.detached: list[str] = []
        self.passages: list[Passage] = []
        self.working_memory = WorkingMemoryScratch(env, agent.id)
        # Set when a tool changed any block; the loop recompiles the prompt and clears it.
        self.memory_changed = False
        # By the call id of code that runs again after an approval: how (see CodeResume).
        self.code_resumes: dict[str, CodeResume] = {}

    def memory_views(self) -> dict[str, MemoryBlock]:
        return {
            label: MemoryBlock(
                label=label,
                value=block.value,
                limit=block.limit,
                read_only=block.read_only,
                description=block.description,
            )
            for label, block in self.blocks.items()
        }

    def apply(self, edit: MemoryEdit, call_id: str) -> None:
        """Applies an edit in the order MemoryEdit defines: deletions, renames (all at once:
        a patch may swap labels), value and description changes (keyed by the original
        label), creations. Each existing block the call changed is recorded once, as the
        call left it. A deleted block is only detached: the step's edits to it are dropped."""
        assert edit.error is None, "a failed edit has no changes to apply"
        now = datetime_from_us(self.env.clock.now_us())
        for label in edit.deleted:
            block = self.blocks.pop(label)
            self.changed = [c for c in self.changed if c.block.id != block.id]
            if self.created.pop(block.id, None) is None:
                self.detached.append(block.id)
        touched: dict[str, Block] = {}  # by id, in the order the call first touched them
        moved = {old: self.blocks.pop(old) for old in edit.renamed}
        for old, new in edit.renamed.items():
            self._put(moved[old], touched, label=new, updated_at=now)
        for label, value in edit.changed.items():
            self._put(
                self.blocks[edit.renamed.get(label, label)], touched, value=value, updated_at=now
            )
        for label, description in edit.described.items():
            block = self.blocks[edit.renamed.get(label, label)]
            self._put(block, touched, description=description, updated_at=now)
        self.changed.extend(
            ChangedBlock(block, call_id)
            for block in touched.values()
            if block.id not in self.created
        )
        for label, (value, new_description) in edit.created.items():
            block = Block(
                id=self.env.entropy.new_id(BLOCK_PREFIX),
                label=label,
                value=value,
                description=new_description,
                created_at=now,
                updated_at=now,
            )
            self.blocks[label] = self.created[block.id] = block
        self.memory_changed = True

    def _put(self, block: Block, touched: dict[str, Block], **changes: Any) -> None:
        updated = block.model_copy(update=changes)
        self.blocks[updated.label] = touched[updated.id] = updated
        if updated.id in self.created:
            self.created[updated.id] = updated

    def committed(self) -> None:
        """The step's commit wrote everything pending: start the next step empty."""
        self.changed.clear()
        self.created.clear()
        self.detached.clear()
        self.passages.clear()
        self.working_memory.pending.clear()
