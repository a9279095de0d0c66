"""Archives as the memory layer sees them: each agent's own archive, and the result shape
archival search answers with (the tool and the API share it)."""

from kelpie.schemas import ARCHIVE_PREFIX, ArchivalSearchResult, Passage


def archive_id_of(agent_id: str) -> str:
    """Each agent's own archive shares its uuid, so finding it needs no lookup."""
    return f"{ARCHIVE_PREFIX}-{agent_id.split('-', 1)[1]}"


def archival_result(passage: Passage) -> ArchivalSearchResult:
    return ArchivalSearchResult(
        id=passage.id,
        content=passage.text,
        timestamp=passage.created_at.isoformat(),
        tags=passage.tags,
    )
