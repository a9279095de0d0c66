"""Rows that the SQLite and PostgreSQL stores share column for column (API keys, working
memory, archives, messages, runs, steps, run events, conversations), and how each becomes
its model: one definition for both backends."""

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

from kelpie.schemas import (
    ApiKey,
    Archive,
    Conversation,
    Message,
    Passage,
    Run,
    RunEvent,
    Step,
    WorkingMemoryEntry,
    datetime_from_us,
    us_from_datetime,
)

API_KEY_COLUMNS: Final = (
    "id, name, secret_hash, admin, rate_limit_per_minute, created_at, expires_at,"
    " last_used_at, revoked_at"
)
ENTRY_COLUMNS: Final = "key, value, expires_at, created_at, updated_at"
ARCHIVE_COLUMNS: Final = "id, name, created_at, data"
# Greater than every character a working-memory key may hold (keys are ASCII from a small
# set), so the keys starting with a prefix p are exactly those in [p, p + PREFIX_END) (under
# COLLATE "C" on PostgreSQL).
PREFIX_END: Final = "\x7f"


def optional_us(value: Any) -> Any:
    return None if value is None else us_from_datetime(value)


def key_from_row(row: Any) -> ApiKey:
    key_id, name, secret_hash, admin, limit, created, expires, used, revoked = row
    return ApiKey(
        id=key_id,
        name=name,
        secret_hash=secret_hash,
        admin=bool(admin),
        rate_limit_per_minute=limit,
        created_at=datetime_from_us(created),
        expires_at=None if expires is None else datetime_from_us(expires),
        last_used_at=None if used is None else datetime_from_us(used),
        revoked_at=None if revoked is None else datetime_from_us(revoked),
    )


def entry_from_row(row: Any) -> WorkingMemoryEntry:
    key, value, expires_at, created_at, updated_at = row
    return WorkingMemoryEntry(
        key=key,
        value=json.loads(value),
        expires_at=None if expires_at is None else datetime_from_us(expires_at),
        created_at=datetime_from_us(created_at),
        updated_at=datetime_from_us(updated_at),
    )


def archive_from_row(row: Any) -> Archive:
    """Archive rows written before the archives API hold `{}` as data: the columns win."""
    archive_id, name, created_at, data = row
    fields = {**json.loads(data), "id": archive_id, "name": name}
    fields["created_at"] = datetime_from_us(created_at)
    return Archive.model_validate(fields)


def own_archive(passage: Passage) -> Archive:
    """The archive an agent's passage creates when it is the agent's first (the archive's id
    is the passage's archive_id, derived from the agent's)."""
    assert passage.agent_id is not None, "only an agent's passage has an own archive"
    return Archive(
        id=passage.archive_id,
        name=f"archive of {passage.agent_id}",
        created_at=passage.created_at,
    )


# Messages, runs and steps ------------------------------------------------------------------

MESSAGE_COLUMNS: Final = "id, agent_id, conversation_id, run_id, step_id, role, created_at, data"
RUN_COLUMNS: Final = (
    "id, agent_id, conversation_id, status, background, created_at, completed_at,"
    " request_token, data"
)
STEP_COLUMNS: Final = "id, run_id, agent_id, created_at, data"


def message_values(message: Message) -> tuple[object, ...]:
    """The message's row, in the order of MESSAGE_COLUMNS."""
    return (
        message.id,
        message.agent_id,
        message.conversation_id,
        message.run_id,
        message.step_id,
        message.role,
        us_from_datetime(message.created_at),
        message.model_dump_json(),
    )


def run_values(run: Run) -> tuple[object, ...]:
    """The run's row, in the order of RUN_COLUMNS (`background` a bool: SQLite stores 1/0)."""
    return (
        run.id,
        run.agent_id,
        run.conversation_id,
        run.status,
        run.background,
        us_from_datetime(run.created_at),
        optional_us(run.completed_at),
        run.request_token,
        run.model_dump_json(),
    )


def step_values(step: Step) -> tuple[object, ...]:
    return (
        step.id,
        step.run_id,
        step.agent_id,
        us_from_datetime(step.created_at),
        step.model_dump_json(),
    )


def run_outcome(run: Run) -> tuple[str | None, dt.datetime | None, int]:
    """What an agent records of a run that ended: (last_stop_reason, last_run_completion,
    last_run_duration_ms)."""
    return run.stop_reason, run.completed_at, (run.total_duration_ns or 0) // 1_000_000


def event_from_row(run_id: str, row: Any) -> RunEvent:
    seq_id, event, data = row
    return RunEvent(run_id=run_id, seq_id=seq_id, event=event, data=data)


# Conversations -----------------------------------------------------------------------------

# Conversation fields a PATCH may change; the in-context list is only moved by turns.
CONVERSATION_EDITABLE_FIELDS: Final = frozenset(
    {
        "summary",
        "description",
        "archived",
        "archived_at",
        "model",
        "model_settings",
        "context_window_limit",
        "last_message_at",
    }
)
# The in-context ids are rows of context_messages, never part of the row's JSON.
_CONVERSATION_JSON_EXCLUDE: Final = frozenset({"in_context_message_ids"})


def conversation_json(conversation: Conversation) -> str:
    return conversation.model_dump_json(exclude=set(_CONVERSATION_JSON_EXCLUDE))


def conversation_last_us(conversation: Conversation) -> int:
    """The row's last_message_at: created_at until a message arrives, so the column is
    never NULL and pages strictly."""
    return us_from_datetime(conversation.last_message_at or conversation.created_at)


def merged_conversation(
    stored: Conversation, changes: Mapping[str, Any], updated_at_us: int
) -> Conversation:
    """The stored conversation with only the fields named in `changes` replaced, its
    updated_at moved forward (never back)."""
    assert set(changes) <= CONVERSATION_EDITABLE_FIELDS, "not an editable field"
    updated = max(datetime_from_us(updated_at_us), stored.updated_at)
    return Conversation.model_validate({**stored.model_dump(), **changes, "updated_at": updated})
