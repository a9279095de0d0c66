"""Archival memory: passages, the archives that hold them (shareable between agents), and
the search requests and results of the archival and recall APIs (letta-api.md §1.8)."""

import datetime as dt
from typing import Any, Final, Literal

from pydantic import Field

from kelpie.schemas._base import Identifier, RequestModel, ResponseModel
from kelpie.schemas._models import EmbeddingConfig

PASSAGE_TEXT_CHARS_MAX: Final = 1_000_000
PASSAGE_TAGS_MAX: Final = 100
PASSAGES_PER_BATCH_MAX: Final = 1_000
ARCHIVE_NAME_CHARS_MAX: Final = 1_000
SEARCH_QUERY_CHARS_MAX: Final = 10_000
SEARCH_RESULTS_MAX: Final = 100

TagMatchMode = Literal["any", "all"]
SearchMode = Literal["vector", "fts", "hybrid"]


class Passage(ResponseModel):
    id: str
    text: str
    archive_id: str
    agent_id: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding: list[float] | None = None
    embedding_config: EmbeddingConfig | None = None
    created_at: dt.datetime
    updated_at: dt.datetime | None = None


class Archive(ResponseModel):
    id: str
    name: str
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    embedding_config: EmbeddingConfig | None = None
    vector_db_provider: str = "native"
    created_at: dt.datetime
    updated_at: dt.datetime | None = None


class ArchiveCreate(RequestModel):
    name: Identifier = Field(min_length=1, max_length=ARCHIVE_NAME_CHARS_MAX)
    description: str | None = None
    embedding: str | None = None
    embedding_config: EmbeddingConfig | None = None


class ArchiveUpdate(RequestModel):
    name: Identifier | None = Field(default=None, min_length=1, max_length=ARCHIVE_NAME_CHARS_MAX)
    description: str | None = None


class PassageCreate(RequestModel):
    text: str = Field(min_length=1, max_length=PASSAGE_TEXT_CHARS_MAX)
    tags: list[Identifier] | None = Field(default=None, max_length=PASSAGE_TAGS_MAX)
    metadata: dict[str, Any] | None = None
    created_at: dt.datetime | None = None


class PassageBatchCreate(RequestModel):
    passages: list[PassageCreate] = Field(min_length=1, max_length=PASSAGES_PER_BATCH_MAX)


class PassageSearchRequest(RequestModel):
    """`POST /v1/passages/search`: one of agent_id or archive_id."""

    query: str | None = Field(default=None, max_length=SEARCH_QUERY_CHARS_MAX)
    agent_id: str | None = None
    archive_id: str | None = None
    tags: list[str] | None = None
    tag_match_mode: TagMatchMode = "any"
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    limit: int = Field(default=50, ge=1, le=SEARCH_RESULTS_MAX)


class PassageSearchHit(ResponseModel):
    passage: Passage
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArchivalSearchResult(ResponseModel):
    """One result of `GET /v1/agents/{id}/archival-memory/search` (and of the tool)."""

    id: str
    content: str
    timestamp: str
    tags: list[str] = Field(default_factory=list)


class ArchivalSearchResponse(ResponseModel):
    count: int
    results: list[ArchivalSearchResult]


class MessageSearchRequest(RequestModel):
    """`POST /v1/messages/search`."""

    query: str = Field(max_length=SEARCH_QUERY_CHARS_MAX)
    agent_id: str | None = None
    conversation_id: str | None = None
    search_mode: SearchMode = "hybrid"
    start_date: dt.datetime | None = None
    end_date: dt.datetime | None = None
    limit: int = Field(default=50, ge=1, le=SEARCH_RESULTS_MAX)
