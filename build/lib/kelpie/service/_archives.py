"""Archival memory through the API: an agent's passages, archives shared between agents,
their passages, and passage search (letta-api.md §1.8). Searching is `kelpie.memory`'s."""

import datetime as dt
from collections.abc import Sequence
from typing import Final

from kelpie.env import Env
from kelpie.errors import InvalidInput, NotFound
from kelpie.memory import MemorySearch, archival_result, archive_id_of
from kelpie.schemas import (
    AGENT_TAG_CHARS_MAX,
    ARCHIVE_PREFIX,
    PASSAGE_PREFIX,
    ArchivalSearchResponse,
    Archive,
    ArchiveCreate,
    ArchiveUpdate,
    Passage,
    PassageCreate,
    PassageSearchHit,
    PassageSearchRequest,
    datetime_from_us,
    us_from_datetime,
)
from kelpie.storage import ArchiveQuery, Page, SearchFilter

ARCHIVAL_TOP_K_DEFAULT: Final = 10


def _us(value: dt.datetime | None) -> int | None:
    return None if value is None else us_from_datetime(value)


def _tags(tags: Sequence[str] | None) -> list[str]:
    for tag in tags or ():
        if not tag or len(tag) > AGENT_TAG_CHARS_MAX:
            raise InvalidInput(f"Tags must be 1 to {AGENT_TAG_CHARS_MAX} characters, got '{tag}'")
    return list(dict.fromkeys(tags or ()))


class ArchiveService:
    def __init__(self, env: Env, memory: MemorySearch) -> None:
        self._env = env
        self._memory = memory

    async def _check_agent(self, agent_id: str) -> None:
        if await self._env.store.get_agent(agent_id) is None:
            raise NotFound(f"Agent {agent_id} not found")

    def _passage(
        self, request: PassageCreate, archive_id: str, agent_id: str | None, now_us: int
    ) -> Passage:
        created = request.created_at or datetime_from_us(now_us)
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        return Passage(
            id=self._env.entropy.new_id(PASSAGE_PREFIX),
            text=request.text,
            archive_id=archive_id,
            agent_id=agent_id,
            tags=_tags(request.tags),
            metadata=request.metadata or {},
            created_at=created,
            updated_at=datetime_from_us(now_us),
        )

    async def _insert(self, passages: list[Passage]) -> list[Passage]:
        await self._env.store.insert_passages(passages)
        self._memory.notify_written()
        return passages

    # An agent's archival memory -------------------------------------------------------

    async def insert_agent_passage(self, agent_id: str, request: PassageCreate) -> list[Passage]:
        await self._check_agent(agent_id)
        now_us = self._env.clock.now_us()
        return await self._insert(
            [self._passage(request, archive_id_of(agent_id), agent_id, now_us)]
        )

    async def list_agent_passages(
        self, agent_id: str, page: Page, text: str | None
    ) -> list[Passage]:
        await self._check_agent(agent_id)
        archives = await self._memory.agent_archives(agent_id)
        return await self._env.store.list_passages(archives, page, text)

    async def search_agent_passages(
        self,
        agent_id: str,
        query: str,
        *,
        tags: Sequence[str],
        match_all_tags: bool,
        top_k: int | None,
        start: dt.datetime | None,
        end: dt.datetime | None,
    ) -> ArchivalSearchResponse:
        await self._check_agent(agent_id)
        search = SearchFilter(
            kind="passage",
            scopes=await self._memory.agent_archives(agent_id),
            start_us=_us(start),
            end_us=_us(end),
            tags=tuple(tags),
            match_all_tags=match_all_tags,
        )
        found = await self._memory.search_passages(search, query, top_k or ARCHIVAL_TOP_K_DEFAULT)
        results = [archival_result(passage) for passage, _ in found]
        return ArchivalSearchResponse(count=len(results), results=results)

    async def delete_agent_passage(self, agent_id: str, passage_id: str) -> None:
        await self._check_agent(agent_id)
        archives = await self._memory.agent_archives(agent_id)
        if not await self._env.store.delete_passage(archives, passage_id):
            raise NotFound(f"Passage {passage_id} not found in the archival memory of {agent_id}")

    # Archives -------------------------------------------------------------------------

    async def create(self, request: ArchiveCreate) -> Archive:
        now = datetime_from_us(self._env.clock.now_us())
        embedding = request.embedding_config
        if embedding is None and request.embedding is not None:
            embedding = self._env.models.resolve_embedding(request.embedding)
        archive = Archive(
            id=self._env.entropy.new_id(ARCHIVE_PREFIX),
            name=request.name,
            description=request.description,
            embedding_config=embedding,
            created_at=now,
            updated_at=now,
        )
        await self._env.store.insert_archive(archive)
        return archive

    async def retrieve(self, archive_id: str) -> Archive:
        archive = await self._env.store.get_archive(archive_id)
        if archive is None:
            raise NotFound(f"Archive {archive_id} not found")
        return archive

    async def update(self, archive_id: str, request: ArchiveUpdate) -> Archive:
        changes = request.model_dump(exclude_none=True)
        changes["updated_at"] = datetime_from_us(self._env.clock.now_us())
        archive = (await self.retrieve(archive_id)).model_copy(update=changes)
        await self._env.store.update_archive(archive)
        return archive

    async def delete(self, archive_id: str) -> None:
        if not await self._env.store.delete_archive(archive_id):
            raise NotFound(f"Archive {archive_id} not found")

    async def list_archives(self, query: ArchiveQuery, page: Page) -> list[Archive]:
        return await self._env.store.list_archives(query, page)

    async def insert_passages(
        self, archive_id: str, requests: Sequence[PassageCreate]
    ) -> list[Passage]:
        await self.retrieve(archive_id)
        now_us = self._env.clock.now_us()
        return await self._insert(
            [self._passage(request, archive_id, None, now_us) for request in requests]
        )

    async def delete_passage(self, archive_id: str, passage_id: str) -> None:
        await self.retrieve(archive_id)
        if not await self._env.store.delete_passage([archive_id], passage_id):
            raise NotFound(f"Passage {passage_id} not found in archive {archive_id}")

    async def attach(self, agent_id: str, archive_id: str) -> None:
        await self._check_agent(agent_id)
        await self.retrieve(archive_id)
        await self._env.store.attach_archive(agent_id, archive_id)

    async def detach(self, agent_id: str, archive_id: str) -> None:
        await self._check_agent(agent_id)
        await self.retrieve(archive_id)
        await self._env.store.detach_archive(agent_id, archive_id)

    async def search(self, request: PassageSearchRequest) -> list[PassageSearchHit]:
        """`/v1/passages/search`: one agent's archives, or one archive."""
        if (request.agent_id is None) == (request.archive_id is None):
            raise InvalidInput("Pass exactly one of agent_id or archive_id")
        if request.agent_id is not None:
            await self._check_agent(request.agent_id)
            scopes = await self._memory.agent_archives(request.agent_id)
        else:
            assert request.archive_id is not None
            scopes = ((await self.retrieve(request.archive_id)).id,)
        search = SearchFilter(
            kind="passage",
            scopes=scopes,
            start_us=_us(request.start_date),
            end_us=_us(request.end_date),
            tags=tuple(request.tags or ()),
            match_all_tags=request.tag_match_mode == "all",
        )
        found = await self._memory.search_passages(search, request.query or "", request.limit)
        return [PassageSearchHit(passage=passage, score=score) for passage, score in found]
