"""The reference model the invariants are checked against: what each client knows it
wrote. A write the server acknowledged is certain; one that failed or was cut off by a
crash may or may not have landed, so its value is kept as a possibility until a read
settles it. (Each object belongs to one client, whose requests are sequential.)"""

import dataclasses
from typing import Generic, TypeVar, final

T = TypeVar("T")


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
        self.value = observed
        self.maybe.clear()

    def intend(self, value: T) -> None:
        """Before a write is sent: from now on the server may hold `value`."""
        self.maybe.append(value)

    def acknowledge(self, value: T) -> None:
        """The server acknowledged the write of `value`: now it must hold it."""
        self.value = value
        self.maybe.clear()

    def __repr__(self) -> str:
        return f"Known({self.value!r}, maybe={self.maybe!r})"


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
    # Tokens of acknowledged archival inserts, and of user messages in acknowledged turns:
    # search must find each after any crash.
    acked_passages: list[str] = dataclasses.field(default_factory=list)
    acked_said: list[str] = dataclasses.field(default_factory=list)


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


@dataclasses.dataclass
class ToolModel:
    id: str
    name: str
    exists: Known[bool]
    description: Known[str | None]


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
    passages_sent: int = 0
