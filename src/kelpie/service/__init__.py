"""Use cases behind the API: resolve and validate references, build records with the
Env's clock and ids, and write each change in one store transaction. Knows nothing of HTTP.
"""

from kelpie.service._agents import AgentService
from kelpie.service._archives import ArchiveService
from kelpie.service._blocks import BlockService
from kelpie.service._messages import MessageService, StartedTurn
from kelpie.service._recall import RecallService
from kelpie.service._startup import prepare
from kelpie.service._tools import ToolService

__all__ = [
    "AgentService",
    "ArchiveService",
    "BlockService",
    "MessageService",
    "RecallService",
    "StartedTurn",
    "ToolService",
    "prepare",
]
