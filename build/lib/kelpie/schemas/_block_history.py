"""Block history (a Kelpie extension): every change to a block's value, label, description
or limit, kept with its time and source, so an edit can be audited and undone."""

import datetime as dt
from typing import Final, Literal

from pydantic import Field

from kelpie.schemas._base import ResponseModel
from kelpie.schemas._blocks import Block

# Entries kept per block; when a change would keep more, the oldest is dropped.
BLOCK_HISTORY_ENTRIES_MAX: Final = 100
# Sequence numbers are SQLite integers: a path or cursor beyond them is refused (a 4xx).
BLOCK_HISTORY_SEQ_MAX: Final = 2**63 - 1

BlockChangeSource = Literal["api", "tool", "restore"]
# Which side of an entry a restore brings back.
BlockVersionSide = Literal["new", "old"]


class BlockVersion(ResponseModel):
    """The fields a history entry tracks, as they were on one side of a change."""

    value: str
    label: str
    description: str | None = None
    limit: int


def block_version(block: Block) -> BlockVersion:
    return BlockVersion(
        value=block.value, label=block.label, description=block.description, limit=block.limit
    )


class BlockHistoryEntry(ResponseModel):
    """One change to a block. `old` and `new` hold the tracked fields before and after it."""

    block_id: str
    seq: int = Field(description="1 for the block's first change, then one more per change.")
    created_at: dt.datetime = Field(description="When the change was made (the server clock).")
    source: BlockChangeSource = Field(
        description="`tool`: an agent's memory tool; `api`: a block PATCH; `restore`: a"
        " restore of an earlier entry."
    )
    agent_id: str | None = Field(
        default=None,
        description="The agent whose tool call made the change, or whose core-memory route"
        " the PATCH went through.",
    )
    tool_call_id: str | None = Field(default=None, description="The tool call (source tool).")
    step_id: str | None = Field(default=None, description="The agent step (source tool).")
    restored_seq: int | None = Field(
        default=None, description="The entry a restore brought back (source restore)."
    )
    restored_side: BlockVersionSide | None = Field(
        default=None, description="Which side of that entry it brought back (source restore)."
    )
    old: BlockVersion
    new: BlockVersion
