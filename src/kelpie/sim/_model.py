"""The reference model the invariants are checked against: what each client knows it
wrote. A write the server acknowledged is certain; one that failed or was cut off by a
crash may or may not have landed, so its value is kept as a possibility until a read
settles it. (Each object belongs to one client, whose requests are sequential.)"""

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, final

from kelpie.sim._sessions import SessionWorld

T = TypeVar("T")

# While an audit runs, reads check the model but do not narrow it: a client's write may be
# recorded as intended and still wait to be sent (the server is closed during the audit),
# and settling on what the audit reads would forget it.
_checking_only: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "checking_only", default=False
)


@contextlib.contextmanager
def checking_only() -> Iterator[None]:
    token = _checking_only.set(True)
    try:
        yield
    finally:
        _checking_only.reset(token)


def settling() -> bool:
    """False during an audit: reads may check the model but not narrow it."""
    return not _checking_only.get()


@final
class Known(Generic[T]):
    """A value the server must hold: `value`, or one of the unacknowledged `maybe`s."""

    def __init__(self, value: T) -> None:
        self.value = value
        self.maybe: list[T] = []

    @property
    def certain(self) -> bool:
        return not self.maybe

    def allows(self, observed: T) -> bool:
        return observed == self.value or observed in self.maybe

    def settle(self, observed: T) -> None:
        assert self.allows(observed), "settled on a value the model does not allow"
        if settling():
            self.value = observed
            self.maybe.clear()

    def intend(self, value: T) -> None:
        """Before a write is sent: from now on the server may hold `value`."""
        self.maybe.append(value)

    def acknowledge(self, value: T) -> None:
        """The server acknowledged the write of `value`: now it must hold it."""
        self.value = value
        self.maybe.clear()

    def candidates(self) -> list[T]:
        return [self.value, *self.maybe]

    def narrow(self, keep: Callable[[T], bool]) -> bool:
        """Keeps the candidates a read left possible (the first becomes `value`); False,
        changing nothing, when the read fits none of them."""
        kept = [candidate for candidate in self.candidates() if keep(candidate)]
        if not kept:
            return False
        self.value, self.maybe = kept[0], kept[1:]
        return True

    def revise(self, old: T, new: T) -> None:
        """Replaces a candidate with a more precise one (a write's outcome came back)."""
        self.value = new if self.value == old else self.value
        self.maybe = [new if candidate == old else candidate for candidate in self.maybe]

    def __repr__(self) -> str:
        return f"Known({self.value!r}, maybe={self.maybe!r})"


@final
@dataclasses.dataclass(frozen=True)
class KeyState:
    """A working-memory key as one write set it. A key with a TTL expires at a wall time
    the client can only bound: the server read its clock somewhere in the write's window."""

    value: str  # canonical JSON (sorted keys), to compare with what a read returns
    ttl_s: int | None = None
    sent_s: float = 0.0  # monotonic time the write was sent
    done_s: float | None = None  # monotonic time its outcome came back; None in flight


@final
@dataclasses.dataclass(frozen=True)
class HistoryExpectation:
    """A write to a block that may have left a history entry: `certain` when it was
    acknowledged and changed the value for sure (a write of the value the block already
    held records nothing)."""

    source: str
    value: str
    certain: bool


@dataclasses.dataclass
class AgentModel:
    id: str
    exists: Known[bool]
    name: Known[str]
    tags: Known[tuple[str, ...]]
    block_ids: Known[tuple[str, ...]]
    journal_id: str | None = None
    # Ids of messages in acknowledged turn replies: they must survive any crash.
    acked_messages: list[str] = dataclasses.field(default_factory=list)
    # A background run whose stream was cut short may still hold the agent's thread: a
    # send may meet a 409 until a turn is seen to finish.
    run_maybe_running: bool = False
    # Whether the agent has the working-memory tools (its turns then set a key per token).
    working_memory_tools: bool = False
    # Working-memory keys ever written (by the client or by the agent's turns): None is
    # "no such key".
    working_memory: dict[str, Known[KeyState | None]] = dataclasses.field(default_factory=dict)
    # Tokens of acknowledged archival inserts, and of user messages in acknowledged turns:
    # search must find each after any crash.
    acked_passages: list[str] = dataclasses.field(default_factory=list)
    acked_said: list[str] = dataclasses.field(default_factory=list)
    # The custom tools attached at creation, in name order (as the model takes them), each
    # with whether it takes agent_state (then it appends its call's token to the journal).
    custom_tools: tuple[tuple[str, bool], ...] = ()
    # The status of every custom call's return in an acknowledged turn, by call id: each
    # must be in the agent's history after any crash.
    custom_returns: dict[str, str] = dataclasses.field(default_factory=dict)
    # The names of the MCP tools attached (at creation, or by a refresh with agent_id).
    mcp_tools: Known[tuple[str, ...]] = dataclasses.field(default_factory=lambda: Known(()))
    # Whether run_code_with_tools is attached (its turns may append tokens from code).
    code_tools: bool = False
    # What its code session last reported (runs so far), and the session's losses when
    # that run's turn was sent.
    session_runs: int = 0
    session_losses: int = 0


@dataclasses.dataclass
class CodeCallModel:
    """A turn's run_code_with_tools call, whose code appends `tokens` to the journal in
    order, one memory_insert each: whatever happens, the journal holds a prefix of them
    (the calls the code got to make, committed with the step), all of them once the call
    returned success in an acknowledged turn. `status` is its return's, once known."""

    tokens: tuple[str, ...]
    status: str | None = None
    # How many times its agent's code session was lost when the turn was sent.
    losses_at_send: int = 0


@dataclasses.dataclass
class BlockModel:
    id: str
    label: str
    limit: int
    exists: Known[bool]
    value: Known[str]
    # Ever attached to an agent (possibly): such blocks are never deleted by the workload.
    ever_attached: bool = False
    # A journal block is edited only by agent turns (memory_insert of one token per turn):
    # its value must be the fold of the committed turns' tokens.
    journal: bool = False
    tokens_certain: set[str] = dataclasses.field(default_factory=set)
    tokens_maybe: set[str] = dataclasses.field(default_factory=set)
    # Tokens of background runs whose stream was cut short: the run may still be going and
    # commit its token after any read, so no read settles them.
    tokens_pending: set[str] = dataclasses.field(default_factory=set)
    # The code calls of its turns, by call id (their tokens are journal tokens too).
    code_calls: dict[str, CodeCallModel] = dataclasses.field(default_factory=dict)
    # Non-journal blocks: the value at creation, and the writes since the last time the
    # history was read (then settled to what it showed; `history_seqs` keeps its seqs
    # with their old and new values, for restores).
    initial_value: str = ""
    history: list[HistoryExpectation] = dataclasses.field(default_factory=list)
    history_seqs: dict[int, tuple[str, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ToolModel:
    id: str
    name: str
    exists: Known[bool]
    description: Known[str | None]
    # Takes agent_state (appends to the journal through it); its sandbox timeout, if set.
    takes_state: bool = False
    timeout_s: float | None = None
    # Ever attached to an agent (possibly): such tools are never deleted by the workload.
    ever_attached: bool = False


@dataclasses.dataclass
class McpServerModel:
    id: str
    name: str  # the server's name, and its tools' prefix (`<name>_add`, ...)
    exists: Known[bool]
    # Its tools' ids by name, once listed (a refresh keeps a listed name's id).
    tool_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    # Its tools ever attached to an agent (possibly): such servers are never deleted.
    ever_attached: bool = False
    # A call failed as the server crashed: the next call with no fault must succeed.
    crashed: bool = False


@dataclasses.dataclass
class ClientModel:
    tag: str
    agents: dict[str, AgentModel] = dataclasses.field(default_factory=dict)
    blocks: dict[str, BlockModel] = dataclasses.field(default_factory=dict)
    tools: dict[str, ToolModel] = dataclasses.field(default_factory=dict)
    # Creates whose answer was lost: an object we cannot name may exist.
    unknown_agents: int = 0
    tools_created: int = 0
    turns_sent: int = 0
    # Background runs whose whole stream the client was sent: run id -> (agent id, the
    # (event, data) of each event).
    streams: dict[str, tuple[str, list[tuple[str | None, str]]]] = dataclasses.field(
        default_factory=dict
    )
    passages_sent: int = 0
    mcp_servers: dict[str, McpServerModel] = dataclasses.field(default_factory=dict)
    mcp_servers_created: int = 0
    mcp_runs: int = 0
    # The simulated world's code sessions (set by the harness): their losses are the
    # ground truth for what a session may have forgotten.
    sessions: SessionWorld | None = None
