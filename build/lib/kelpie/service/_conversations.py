"""Conversations: create, read, change, fork and delete an agent's threads; recompile a
thread's system message. The agent's own thread is addressed as `default` (with the
agent's id beside it) or by the agent's id itself, as letta-code does."""

from collections.abc import Sequence
from typing import Final

from kelpie.env import Env
from kelpie.errors import InvalidInput, NotFound
from kelpie.memory import archive_id_of
from kelpie.schemas import (
    AGENT_PREFIX,
    CONVERSATION_PREFIX,
    DEFAULT_CONVERSATION_ID,
    MESSAGE_PREFIX,
    AgentState,
    Conversation,
    ConversationCreate,
    ConversationUpdate,
    Message,
    datetime_from_us,
    is_valid_id,
)
from kelpie.service._agents import AgentService
from kelpie.storage import ConversationQuery, Page

CONVERSATION_ID_HINT: Final = (
    f"'{CONVERSATION_PREFIX}-<uuid4>', '{DEFAULT_CONVERSATION_ID}' with agent_id,"
    f" or '{AGENT_PREFIX}-<uuid4>'"
)


def thread_of(path_id: str, agent_id: str | None) -> tuple[str | None, str | None]:
    """(agent id, conversation id) a path names: the agent's own thread (conversation id
    None) or a conversation (agent id None: read it from the conversation)."""
    if path_id == DEFAULT_CONVERSATION_ID:
        if not agent_id:
            raise InvalidInput("agent_id is required with conversation_id 'default'")
        if not is_valid_id(AGENT_PREFIX, agent_id):
            raise InvalidInput(f"agent_id must look like '{AGENT_PREFIX}-<uuid4>'")
        return agent_id, None
    if is_valid_id(AGENT_PREFIX, path_id):
        return path_id, None
    if is_valid_id(CONVERSATION_PREFIX, path_id):
        return None, path_id
    raise InvalidInput(f"conversation_id must be {CONVERSATION_ID_HINT}, got '{path_id}'")


class ConversationService:
    def __init__(self, env: Env, agents: AgentService) -> None:
        self._env = env
        self._agents = agents

    async def get(self, conversation_id: str) -> Conversation:
        found = await self._env.store.get_conversation(conversation_id)
        if found is None:
            raise NotFound(f"Conversation {conversation_id} not found")
        return found

    async def resolve(self, path_id: str, agent_id: str | None) -> tuple[str, str | None]:
        """The agent and conversation a path names; 404 when either does not exist."""
        agent, conversation = thread_of(path_id, agent_id)
        if conversation is not None:
            found = await self.get(conversation)
            if agent_id and agent_id != found.agent_id:
                raise NotFound(f"Conversation {conversation} not found on agent {agent_id}")
            return found.agent_id, conversation
        assert agent is not None, "a thread names its agent or its conversation"
        await self._agents.retrieve(agent, ())
        return agent, None

    async def create(self, agent_id: str, request: ConversationCreate) -> Conversation:
        agent = await self._agents.retrieve(agent_id, ("agent.blocks",))
        if request.model is not None:
            self._env.models.resolve_llm(request.model)  # an unknown model is a 4xx now
        now = datetime_from_us(self._env.clock.now_us())
        conversation_id = self._env.entropy.new_id(CONVERSATION_PREFIX)
        system = await self._system_message(agent, conversation_id, 0)
        conversation = Conversation(
            **request.model_dump(exclude_none=True),
            id=conversation_id,
            agent_id=agent_id,
            in_context_message_ids=[system.id],
            created_at=now,
            updated_at=now,
        )
        await self._env.store.insert_conversation(conversation, [system])
        return conversation

    async def _system_message(
        self, agent: AgentState, conversation_id: str, message_count: int
    ) -> Message:
        now = datetime_from_us(self._env.clock.now_us())
        text = self._agents.prompts.compile(
            agent,
            agent.blocks,
            now,
            conversation_id=conversation_id,
            previous_message_count=message_count,
            archival_count=await self._env.store.count_passages(archive_id_of(agent.id)),
        )
        return Message(
            id=self._env.entropy.new_id(MESSAGE_PREFIX),
            agent_id=agent.id,
            conversation_id=conversation_id,
            role="system",
            text=text,
            created_at=now,
        )

    async def update(self, conversation_id: str, request: ConversationUpdate) -> Conversation:
        await self.get(conversation_id)
        changes = request.model_dump(include=request.model_fields_set)
        if changes.get("model") is not None:
            self._env.models.resolve_llm(changes["model"])
        if "archived" in changes:
            archived = bool(changes["archived"])
            changes["archived"] = archived
            changes["archived_at"] = (
                datetime_from_us(self._env.clock.now_us()) if archived else None
            )
        updated = await self._env.store.update_conversation(
            conversation_id, changes, self._env.clock.now_us()
        )
        if updated is None:
            raise NotFound(f"Conversation {conversation_id} not found")
        return updated

    async def touch(self, conversation_id: str) -> None:
        """A message request arrived: Letta stamps last_message_at when it does."""
        now = datetime_from_us(self._env.clock.now_us())
        await self._env.store.update_conversation(
            conversation_id, {"last_message_at": now}, self._env.clock.now_us()
        )

    async def delete(self, conversation_id: str) -> None:
        if not await self._env.store.delete_conversation(conversation_id):
            raise NotFound(f"Conversation {conversation_id} not found")

    async def list(self, query: ConversationQuery, page: Page) -> list[Conversation]:
        if query.agent_id is not None:
            await self._agents.retrieve(query.agent_id, ())
        return await self._env.store.list_conversations(query, page)

    async def fork(
        self, path_id: str, agent_id: str | None, *, hidden: bool, message_id: str | None
    ) -> Conversation:
        """A new conversation sharing the source's in-context messages (up to
        `message_id`), with its own system message compiled from current memory."""
        agent_id, source_id = await self.resolve(path_id, agent_id)
        agent = await self._agents.retrieve(agent_id, ("agent.blocks",))
        source = None if source_id is None else await self.get(source_id)
        context = list(agent.message_ids if source is None else source.in_context_message_ids)
        shared = _through(context[1:], message_id)
        conversation_id = self._env.entropy.new_id(CONVERSATION_PREFIX)
        system = await self._system_message(agent, conversation_id, len(shared))
        now = datetime_from_us(self._env.clock.now_us())
        conversation = Conversation(
            id=conversation_id,
            agent_id=agent_id,
            hidden=hidden,
            summary=None if source is None else source.summary,
            model=None if source is None else source.model,
            model_settings=None if source is None else source.model_settings,
            context_window_limit=None if source is None else source.context_window_limit,
            in_context_message_ids=[system.id, *shared],
            forked_message_ids=shared,
            created_at=now,
            updated_at=now,
        )
        await self._env.store.insert_conversation(conversation, [system])
        return conversation

    async def recompile(self, path_id: str, agent_id: str | None, *, dry_run: bool) -> str:
        """Rebuilds the thread's system message from current memory; returns its text."""
        agent_id, conversation_id = await self.resolve(path_id, agent_id)
        if conversation_id is None:
            return await self._agents.prompts.recompile(agent_id, dry_run=dry_run)
        conversation = await self.get(conversation_id)
        agent = await self._agents.retrieve(agent_id, ("agent.blocks",))
        context = conversation.in_context_message_ids
        fresh = await self._system_message(agent, conversation_id, max(0, len(context) - 1))
        found = await self._env.store.get_messages(context[:1])
        if not found or found[0].role != "system":
            raise InvalidInput("Conversation does not have a system message in the first position.")
        if not dry_run and found[0].text != fresh.text:
            await self._env.store.insert_messages(
                [found[0].model_copy(update={"text": fresh.text})]
            )
        return fresh.text or ""


def _through(ids: Sequence[str], message_id: str | None) -> list[str]:
    if message_id is None:
        return list(ids)
    if message_id not in ids:
        raise InvalidInput(
            f"Message {message_id} is not among the conversation's in-context messages"
        )
    return list(ids[: ids.index(message_id) + 1])
