"""The `agent_state` object a tool receives, in Letta's shape, as small stdlib classes (this
module runs inside the sandbox): built from the job's JSON form, written back to the same
form after the call so the host sees the blocks' new values."""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported inside the sandbox: start-up time
if TYPE_CHECKING:
    from typing import Any


class Block:
    def __init__(self, data: dict[str, Any]) -> None:
        self.id: str | None = data.get("id")
        self.label: str = data["label"]
        self.value: str = data.get("value", "")
        self.limit: int | None = data.get("limit")
        self.description: str | None = data.get("description")
        self.read_only: bool = bool(data.get("read_only", False))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "value": self.value,
            "limit": self.limit,
            "description": self.description,
            "read_only": self.read_only,
        }


class Memory:
    def __init__(self, data: dict[str, Any]) -> None:
        self.blocks: list[Block] = [Block(block) for block in data.get("blocks", [])]

    def get_block(self, label: str) -> Block:
        for block in self.blocks:
            if block.label == label:
                return block
        labels = [block.label for block in self.blocks]
        raise KeyError(f"Block field {label} does not exist (available sections = {labels})")

    def get_blocks(self) -> list[Block]:
        return list(self.blocks)

    def list_block_labels(self) -> list[str]:
        return [block.label for block in self.blocks]

    def update_block_value(self, label: str, value: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"Provided value must be a string, got {type(value).__name__}")
        block = self.get_block(label)
        if block.limit is not None and len(value) > block.limit:
            raise ValueError(
                f"Edit failed: Exceeds {block.limit} character limit "
                f"(requested {len(value)}) for block {label}"
            )
        block.value = value

    def to_json(self) -> dict[str, Any]:
        return {"blocks": [block.to_json() for block in self.blocks]}


class AgentState:
    def __init__(self, data: dict[str, Any]) -> None:
        self._extra = {key: value for key, value in data.items() if key not in _FIELDS}
        self.id: str | None = data.get("id")
        self.name: str | None = data.get("name")
        self.description: str | None = data.get("description")
        self.tags: list[str] = list(data.get("tags") or [])
        self.metadata: dict[str, Any] = dict(data.get("metadata") or {})
        self.agent_type: str | None = data.get("agent_type")
        self.memory = Memory(data.get("memory") or {})

    def to_json(self) -> dict[str, Any]:
        return {
            **self._extra,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tags": self.tags,
            "metadata": self.metadata,
            "agent_type": self.agent_type,
            "memory": self.memory.to_json(),
        }


_FIELDS = frozenset(("id", "name", "description", "tags", "metadata", "agent_type", "memory"))
