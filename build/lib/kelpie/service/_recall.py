"""Recall memory through the API: `POST /v1/messages/search`, hybrid search over what the
agents' users and agents said (letta-api.md §1.8, §3.3)."""

import datetime as dt
from typing import Any, Final

from kelpie.env import Env
from kelpie.errors import NotFound
from kelpie.memory import MemorySearch
from kelpie.schemas import Message, MessageSearchRequest, us_from_datetime
from kelpie.storage import SearchFilter, message_search_text

# The result shapes Letta's message search has: what users and agents said.
_RESULT_TYPES: Final = {"user": "user_message", "assistant": "assistant_message"}
_DEFAULT_CONVERSATIONS: Final = frozenset({"default"})


def _us(value: dt.datetime | None) -> int | None:
    return None if value is None else us_from_datetime(value)


def _result(message: Message) -> dict[str, Any]:
    return {
        "message_type": _RESULT_TYPES[message.role],
        "message_id": message.id,
        "agent_id": message.agent_id,
        "conversation_id": message.conversation_id,
        "content": message_search_text(message) or "",
        "created_at": message.created_at.isoformat(),
    }


class RecallService:
    def __init__(self, env: Env, memory: MemorySearch) -> None:
        self._env = env
        self._memory = memory

    async def search(self, request: MessageSearchRequest) -> list[dict[str, Any]]:
        scopes: tuple[str, ...] = ()
        if request.agent_id is not None:
            if await self._env.store.get_agent(request.agent_id) is None:
                raise NotFound(f"Agent {request.agent_id} not found")
            scopes = (request.agent_id,)
        conversation = request.conversation_id
        if conversation in _DEFAULT_CONVERSATIONS or (conversation or "").startswith("agent-"):
            conversation = None
            wanted_default = True
        else:
            wanted_default = False
        search = SearchFilter(
            kind="message",
            scopes=scopes,
            start_us=_us(request.start_date),
            end_us=_us(request.end_date),
            roles=tuple(_RESULT_TYPES),
        )

        def in_conversation(message: Message) -> bool:
            if conversation is None and not wanted_default:
                return True
            return message.conversation_id == conversation

        found = await self._memory.search_messages(
            search, request.query, request.limit, request.search_mode, accept=in_conversation
        )
        return [_result(message) for message, _ in found]
