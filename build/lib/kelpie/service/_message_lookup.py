"""Messages read by id or across every agent (`/v1/messages/…`), rendered as clients read
them: one stored message expands to the LettaMessage items sharing its id."""

from collections.abc import Collection, Sequence

from kelpie.agent import HEARTBEAT_AGENT_TYPES, expand
from kelpie.env import Env
from kelpie.errors import NotFound
from kelpie.schemas import LettaMessage, Message
from kelpie.storage import Page


class MessageLookup:
    def __init__(self, env: Env) -> None:
        self._env = env

    async def _items(
        self, messages: Sequence[Message], include_types: Collection[str] | None
    ) -> list[LettaMessage]:
        """How each message reads depends on its agent's type (whether assistant text is
        the reply or inner thoughts); one read per agent on the page."""
        agent_ids = list(dict.fromkeys(message.agent_id for message in messages))
        text_is_reply = {}
        for agent_id in agent_ids:
            agent = await self._env.store.get_agent(agent_id)
            # A message outlives no agent (deleting one deletes its messages), but the
            # agent may be deleted between the two reads: render it as the default type.
            kind = agent.agent_type if agent is not None else None
            text_is_reply[agent_id] = kind not in HEARTBEAT_AGENT_TYPES
        items = [
            item
            for message in messages
            for item in expand(message, text_is_assistant=text_is_reply[message.agent_id])
        ]
        if include_types is not None:
            items = [item for item in items if item.message_type in include_types]
        return items

    async def retrieve(self, message_id: str) -> list[LettaMessage]:
        """Letta answers with every item the message expands to (none for a hidden one)."""
        found = await self._env.store.get_messages([message_id])
        if not found:
            raise NotFound(f"Message {message_id} not found")
        return await self._items(found, None)

    async def list_messages(
        self, conversation_id: str | None, page: Page, include_types: Collection[str] | None
    ) -> list[LettaMessage]:
        messages = await self._env.store.list_all_messages(conversation_id, page)
        return await self._items(messages, include_types)
