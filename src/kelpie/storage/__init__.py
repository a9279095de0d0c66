"""Persistence. Owns the `Store` protocol (intention-revealing operations, one transaction
each) and its implementations; imports only `kelpie.schemas` and `kelpie.errors`.
Driver exceptions never leave this package: they become `StorageUnavailable` or
`StorageConflict`.
"""

from kelpie.storage._commits import (
    AgentsImport,
    BlockChange,
    ChangedBlock,
    NewAgent,
    StepCommit,
    ThreadUpdate,
)
from kelpie.storage._errors import StorageConflict, StorageUnavailable, WorkingMemoryFull
from kelpie.storage._queries import (
    PAGE_LIMIT_MAX,
    AgentQuery,
    BlockQuery,
    ConversationQuery,
    MessageQuery,
    Page,
    RunQuery,
    ToolQuery,
)
from kelpie.storage._sqlite import SqliteStore
from kelpie.storage._store import Store

__all__ = [
    "PAGE_LIMIT_MAX",
    "AgentQuery",
    "AgentsImport",
    "BlockChange",
    "BlockQuery",
    "ChangedBlock",
    "ConversationQuery",
    "MessageQuery",
    "NewAgent",
    "Page",
    "RunQuery",
    "SqliteStore",
    "StepCommit",
    "StorageConflict",
    "StorageUnavailable",
    "Store",
    "ThreadUpdate",
    "ToolQuery",
    "WorkingMemoryFull",
]
