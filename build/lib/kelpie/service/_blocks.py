"""Standalone blocks and their history. An edit to a block is seen by every agent it is
attached to, because agents hold references, not copies; every edit is kept in the block's
history, from which an earlier version can be restored."""

from typing import Final

from kelpie.env import Env
from kelpie.errors import Conflict, NotFound, ValidationFailed
from kelpie.schemas import (
    BLOCK_HISTORY_ENTRIES_MAX,
    BLOCK_LIMIT_CHARS_DEFAULT,
    BLOCK_PREFIX,
    DEFAULT_BLOCK_DESCRIPTIONS,
    AgentState,
    Block,
    BlockCreate,
    BlockHistoryEntry,
    BlockUpdate,
    BlockVersionSide,
    datetime_from_us,
    limit_error,
)
from kelpie.service._agent_states import without_relationships
from kelpie.service._prompts import SystemPrompts
from kelpie.storage import BlockChange, BlockQuery, Page, StorageConflict

_UPDATABLE: Final = set(BlockUpdate.model_fields)


def new_block(env: Env, request: BlockCreate, now_us: int) -> Block:
    now = datetime_from_us(now_us)
    description = request.description
    if description is None:
        description = DEFAULT_BLOCK_DESCRIPTIONS.get(request.label)
    fields = request.model_dump(exclude_none=True, exclude={"description"})
    fields.setdefault("limit", BLOCK_LIMIT_CHARS_DEFAULT)
    return Block(
        **fields,
        id=env.entropy.new_id(BLOCK_PREFIX),
        description=description,
        created_at=now,
        updated_at=now,
    )


def apply_block_update(block: Block, request: BlockUpdate, now_us: int) -> Block:
    """The block after `request`, checked against its (possibly new) character limit."""
    changes = request.model_dump(exclude_unset=True, include=_UPDATABLE)
    changes = {key: value for key, value in changes.items() if value is not None}
    updated = block.model_copy(update={**changes, "updated_at": datetime_from_us(now_us)})
    if len(updated.value) > updated.limit:
        if "value" in changes:
            raise ValidationFailed(limit_error(updated.limit, len(updated.value)))
        raise ValidationFailed(
            f"Limit ({updated.limit}) cannot be less than current value length"
            f" ({len(updated.value)} characters)"
        )
    return updated


class BlockService:
    def __init__(self, env: Env) -> None:
        self._env = env

    async def create(self, request: BlockCreate) -> Block:
        block = new_block(self._env, request, self._env.clock.now_us())
        await self._env.store.insert_block(block)
        return block

    async def retrieve(self, block_id: str) -> Block:
        block = await self._env.store.get_block(block_id)
        if block is None:
            raise NotFound(f"Block {block_id} not found")
        return block

    async def update(self, block_id: str, request: BlockUpdate) -> Block:
        block = apply_block_update(await self.retrieve(block_id), request, self._env.clock.now_us())
        await self._env.store.update_block(block, change=BlockChange(source="api"))
        await SystemPrompts(self._env).recompile_agents_of_block(block.id)
        return block

    async def delete(self, block_id: str) -> None:
        if not await self._env.store.delete_block(block_id):
            raise NotFound(f"Block {block_id} not found")

    async def list_blocks(self, query: BlockQuery, page: Page) -> list[Block]:
        return await self._env.store.list_blocks(query, page)

    async def list_agents(self, block_id: str, page: Page) -> list[AgentState]:
        await self.retrieve(block_id)
        return without_relationships(await self._env.store.list_block_agents(block_id, page))

    # History --------------------------------------------------------------------------

    async def list_history(self, block_id: str, page: Page) -> list[BlockHistoryEntry]:
        await self.retrieve(block_id)
        return await self._env.store.list_block_history(block_id, page)

    async def history_entry(self, block_id: str, seq: int) -> BlockHistoryEntry:
        await self.retrieve(block_id)
        entry = await self._env.store.get_block_history_entry(block_id, seq)
        if entry is None:
            raise NotFound(
                f"Block {block_id} has no history entry {seq} (a block keeps its last"
                f" {BLOCK_HISTORY_ENTRIES_MAX} entries)"
            )
        return entry

    async def restore(self, block_id: str, seq: int, side: BlockVersionSide) -> Block:
        """Sets the block's value, label, description and limit to one side of a history
        entry (`new`: as the change left them; `old`: as they were before it). The restore is
        itself a change, recorded with source `restore`; attached agents' prompts are
        rebuilt as after a PATCH."""
        entry = await self.history_entry(block_id, seq)
        block = await self.retrieve(block_id)
        version = entry.new if side == "new" else entry.old
        restored = block.model_copy(
            update={
                **version.model_dump(),
                "updated_at": datetime_from_us(self._env.clock.now_us()),
            }
        )
        change = BlockChange(source="restore", restored_seq=seq, restored_side=side)
        try:
            await self._env.store.update_block(restored, change=change)
        except StorageConflict as error:
            raise Conflict(
                f"Cannot restore label '{version.label}': an agent this block is attached to"
                " has another block with that label"
            ) from error
        await SystemPrompts(self._env).recompile_agents_of_block(block_id)
        return restored
