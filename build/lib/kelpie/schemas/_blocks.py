"""Core-memory blocks (Letta's Block / CreateBlock / BlockUpdate)."""

import datetime as dt
from typing import Any, Final, Self

from pydantic import Field, field_validator, model_validator

from kelpie.schemas._base import Identifier, RequestModel, ResponseModel

BLOCK_LIMIT_CHARS_DEFAULT: Final = 100_000
# Hard ceiling on any block's value and limit, whatever the client asks for.
BLOCK_VALUE_CHARS_MAX: Final = 1_000_000
BLOCK_LABEL_CHARS_MAX: Final = 100

# Letta fills these in when the default labels arrive without a description.
DEFAULT_BLOCK_DESCRIPTIONS: Final = {
    "persona": "The persona block: Stores details about your current persona, guiding how "
    "you behave and respond. This helps you to maintain consistency and personality in your "
    "interactions.",
    "human": "The human block: Stores key details about the person you are conversing with, "
    "allowing for more personalized and friend-like conversation.",
}


def limit_error(limit: int, length: int) -> str:
    """Letta's exact text for a value over its block's limit."""
    return f"Edit failed: Exceeds {limit} character limit (requested {length})"


def _strip_nul(value: str) -> str:
    return value.replace("\x00", "")


class Block(ResponseModel):
    id: str
    value: str
    label: str
    limit: int = BLOCK_LIMIT_CHARS_DEFAULT
    description: str | None = None
    read_only: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    hidden: bool | None = None
    is_template: bool = False
    template_name: str | None = None
    template_id: str | None = None
    base_template_id: str | None = None
    deployment_id: str | None = None
    entity_id: str | None = None
    preserve_on_migration: bool | None = None
    project_id: str | None = None
    created_by_id: str | None = None
    last_updated_by_id: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class BlockFields(RequestModel):
    """Fields shared by block create and update requests."""

    limit: int | None = Field(default=None, ge=1, le=BLOCK_VALUE_CHARS_MAX)
    description: str | None = None
    read_only: bool | None = None
    metadata: dict[str, Any] | None = None
    tags: list[Identifier] | None = None
    hidden: bool | None = None
    is_template: bool | None = None
    template_name: str | None = None
    template_id: str | None = None
    base_template_id: str | None = None
    deployment_id: str | None = None
    entity_id: str | None = None
    preserve_on_migration: bool | None = None
    project_id: str | None = None


class BlockCreate(BlockFields):
    label: Identifier = Field(min_length=1, max_length=BLOCK_LABEL_CHARS_MAX)
    value: str = Field(max_length=BLOCK_VALUE_CHARS_MAX)

    _strip = field_validator("value")(_strip_nul)

    @model_validator(mode="after")
    def _value_within_limit(self) -> Self:
        limit = self.limit if self.limit is not None else BLOCK_LIMIT_CHARS_DEFAULT
        if len(self.value) > limit:
            raise ValueError(limit_error(limit, len(self.value)))
        return self


class BlockUpdate(BlockFields):
    label: Identifier | None = Field(default=None, min_length=1, max_length=BLOCK_LABEL_CHARS_MAX)
    value: str | None = Field(default=None, max_length=BLOCK_VALUE_CHARS_MAX)

    @field_validator("value")
    @classmethod
    def _strip_value(cls, value: str | None) -> str | None:
        return None if value is None else _strip_nul(value)

    @model_validator(mode="after")
    def _value_within_own_limit(self) -> Self:
        if self.value is not None and self.limit is not None and len(self.value) > self.limit:
            raise ValueError(limit_error(self.limit, len(self.value)))
        return self
