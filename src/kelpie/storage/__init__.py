"""Persistence. Owns the `Store` protocol (intention-revealing operations, one transaction
each) and its implementations; imports only `kelpie.schemas` and `kelpie.errors`.
Driver exceptions never leave this package: they become `StorageUnavailable` or
`StorageConflict`.
"""

from kelpie.storage._commits import StepCommit
from kelpie.storage._errors import StorageConflict, StorageUnavailable
from kelpie.storage._queries import (
    PAGE_LIMIT_MAX,
    AgentQuery,
    ArchiveQuery,
    BlockQuery,
    Page,
    RunQuery,
    ToolQuery,
)
from kelpie.storage._search import (
    SEARCH_KINDS,
    SEARCHABLE_ROLES,
    SearchFilter,
    SearchKind,
    VectorRows,
    message_search_text,
)
from kelpie.storage._sqlite import SqliteStore
from kelpie.storage._store import Store

__all__ = [
    "PAGE_LIMIT_MAX",
    "SEARCHABLE_ROLES",
    "SEARCH_KINDS",
    "AgentQuery",
    "ArchiveQuery",
    "BlockQuery",
    "Page",
    "RunQuery",
    "SearchFilter",
    "SearchKind",
    "SqliteStore",
    "StepCommit",
    "StorageConflict",
    "StorageUnavailable",
    "Store",
    "ToolQuery",
    "VectorRows",
    "message_search_text",
]
