"""The `agent_state` a simulated custom tool receives: the production worker's object, as
small stdlib classes built from the job's JSON form (`{"id", "name", "description", "tags",
"metadata", "agent_type", "memory": {"blocks": [...]}}`) and written back to that form
after the call, so the server sees the blocks' new values."""

from collections.abc import Mapping
from typing import Any


class SimBlock:
    def __init__(self, data: Mapping[str, Any]) -> None:
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


class SimMemory:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.blocks = [SimBlock(block) for block in data.get("blocks") or []]

    def get_block(self, label: str) -> SimBlock:
        for block in self.blocks:
            if block.label == label:
                return block
        labels = [block.label for block in self.blocks]
        raise KeyError(f"Block field {label} does not exist (available sections = {labels})")

    def update_block_value(self, label: str, value: str) -> None:
        if not isinstance(value, str):
            raise ValueError(f"Provided value must be a string, got {type(value).__name__}")
        block = self.get_block(label)
        if block.limit is not None and len(value) > block.limit:
            raise ValueError(
                f"Edit failed: Exceeds {block.limit} character limit"
                f" (requested {len(value)}) for block {label}"
            )
        block.value = value

    def to_json(self) -> dict[str, Any]:
        return {"blocks": [block.to_json() for block in self.blocks]}


class SimAgentState:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.id: str | None = data.get("id")
        self.name: str | None = data.get("name")
        self.description: str | None = data.get("description")
        self.tags: list[str] = list(data.get("tags") or [])
        self.metadata: dict[str, Any] = dict(data.get("metadata") or {})
        self.agent_type: str | None = data.get("agent_type")
        self.memory = SimMemory(data.get("memory") or {})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "metadata": dict(self.metadata),
            "agent_type": self.agent_type,
            "memory": self.memory.to_json(),
        }
