"""Use cases behind the API: resolve and validate references, build records with the
Env's clock and ids, and write each change in one store transaction. Knows nothing of HTTP.
"""

from kelpie.service._agent_export import AgentExporter
from kelpie.service._agent_import import AgentImporter, ImportOptions
from kelpie.service._agents import AgentService
from kelpie.service._api_key_cache import KEYS_RELOAD_S, ApiKeyCache, KeyCheck
from kelpie.service._api_keys import ApiKeyService
from kelpie.service._archives import ArchiveService
from kelpie.service._blocks import BlockService
from kelpie.service._context import ContextService
from kelpie.service._conversations import ConversationService, thread_of
from kelpie.service._housekeeping import (
    HOUSEKEEPING_INTERVAL_S,
    RUN_STREAM_RETENTION_S,
    Housekeeping,
    stream_expired,
)
from kelpie.service._mcp_servers import McpServerService
from kelpie.service._message_lookup import MessageLookup
from kelpie.service._messages import MessageService, Reattached, StartedTurn
from kelpie.service._recall import RecallService
from kelpie.service._startup import prepare
from kelpie.service._streams import LiveStream, StoredStream
from kelpie.service._threads import AwaitingApproval
from kelpie.service._tool_runs import ToolRunService
from kelpie.service._tools import ToolService
from kelpie.service._working_memory import WorkingMemoryService
from kelpie.service._workspaces import WORKSPACE_UPLOAD_BYTES_MAX, WorkspaceService

__all__ = [
    "HOUSEKEEPING_INTERVAL_S",
    "KEYS_RELOAD_S",
    "RUN_STREAM_RETENTION_S",
    "WORKSPACE_UPLOAD_BYTES_MAX",
    "AgentExporter",
    "AgentImporter",
    "AgentService",
    "ApiKeyCache",
    "ApiKeyService",
    "ArchiveService",
    "AwaitingApproval",
    "BlockService",
    "ContextService",
    "ConversationService",
    "Housekeeping",
    "ImportOptions",
    "KeyCheck",
    "LiveStream",
    "McpServerService",
    "MessageLookup",
    "MessageService",
    "Reattached",
    "RecallService",
    "StartedTurn",
    "StoredStream",
    "ToolRunService",
    "ToolService",
    "WorkingMemoryService",
    "WorkspaceService",
    "prepare",
    "stream_expired",
    "thread_of",
]
