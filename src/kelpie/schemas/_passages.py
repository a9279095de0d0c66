"""Archival memory passages (Letta's Passage)."""

import datetime as dt
from typing import Any

from pydantic import Field

from kelpie.schemas._base import ResponseModel


class Passage(ResponseModel):
    id: str
    text: str
    archive_id: str
    agent_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = None
    created_at: dt.datetime
    updated_at: dt.datetime | None = None
