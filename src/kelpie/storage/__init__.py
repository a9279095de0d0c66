"""Persistence. Owns the `Store` protocol (intention-revealing operations, one transaction
each) and its implementations; imports only `kelpie.schemas` and `kelpie.errors`.
Driver exceptions never leave this package: they become `StorageUnavailable` or
`StorageConflict`.
"""

from kelpie.storage._commits import (
    AgentsImport,
    BlockChange,
    ChangedBlock,
    ContextIds,
    NewAgent,
    StepCommit,
    ThreadUpdate,
)
from kelpie.storage._errors import StorageConflict, StorageUnavailable, WorkingMemoryFull
from kelpie.storage._health import integrity_problems, pending_migrations
from kelpie.storage._queries import (
    PAGE_LIMIT_MAX,
    AgentQuery,
    ArchiveQuery,
    BlockQuery,
    ConversationQuery,
    MessageQuery,
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
    "AgentsImport",
    "ArchiveQuery",
    "BlockChange",
    "BlockQuery",
    "ChangedBlock",
    "ContextIds",
    "ConversationQuery",
    "MessageQuery",
    "NewAgent",
    "Page",
    "RunQuery",
    "SearchFilter",
    "SearchKind",
    "SqliteStore",
    "StepCommit",
    "StorageConflict",
    "StorageUnavailable",
    "Store",
    "ThreadUpdate",
    "ToolQuery",
    "VectorRows",
    "WorkingMemoryFull",
    "integrity_problems",
    "message_search_text",
    "pending_migrations",
]
