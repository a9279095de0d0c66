"""Stream items a turn produces besides its messages: token deltas while the model
writes, and the items that end a run (stop reason, then usage or an error)."""

import dataclasses
from collections.abc import Callable
from typing import Any, Final

from kelpie.agent._render import item_otid
from kelpie.agent._turn import Item, TurnEvents
from kelpie.llm import LlmDelta
from kelpie.schemas import StopReason, StopReasonOut, UsageStatistics

ERROR_MESSAGE_TYPE: Final = "error_message"


def stop_item(stop: StopReason) -> Item:
    return StopReasonOut(stop_reason=stop).model_dump(mode="json")


def error_item(run_id: str, error_type: str, message: str, detail: str | None = None) -> Item:
    return {
        "message_type": ERROR_MESSAGE_TYPE,
        "run_id": run_id,
        "error_type": error_type,
        "message": message,
        "detail": message if detail is None else detail,
    }


def closing_items(
    run_id: str, stop: StopReason, usage: UsageStatistics, error: tuple[str, str, str] | None
) -> list[Item]:
    """What ends a run's stream: the stop reason, then the error (type, message, detail)
    or the usage statistics."""
    items = [stop_item(stop)]
    if error is not None:
        items.append(error_item(run_id, *error))
    else:
        items.append(usage.model_dump(mode="json"))
    return items


@dataclasses.dataclass
class DeltaStreamer:
    """Token streaming: each model delta goes out at once as a partial Letta message that
    shares the assistant message's id; item otids follow the order kinds first appear.
    A call that waits for the client streams as an approval request."""

    events: TurnEvents
    message_id: str
    step_id: str
    run_id: str
    now_iso: Callable[[], str]
    text_is_reasoning: bool
    needs_approval: Callable[[str], bool]
    _indexes: dict[str, int] = dataclasses.field(default_factory=dict)
    _call_types: dict[int, str] = dataclasses.field(default_factory=dict)
    _call_ids: dict[int, str] = dataclasses.field(default_factory=dict)

    def _base(self, kind: str, message_type: str) -> dict[str, Any]:
        index = self._indexes.setdefault(kind, len(self._indexes))
        return {
            "id": self.message_id,
            "date": self.now_iso(),
            "message_type": message_type,
            "otid": item_otid(self.message_id, index),
            "run_id": self.run_id,
            "step_id": self.step_id,
        }

    async def on_delta(self, delta: LlmDelta) -> None:
        if delta.reasoning:
            item = {**self._base("reasoning", "reasoning_message"), "reasoning": delta.reasoning}
            await self.events.delta(item)
        if delta.content:
            if self.text_is_reasoning:
                item = {**self._base("text", "reasoning_message"), "reasoning": delta.content}
            else:
                item = {**self._base("text", "assistant_message"), "content": delta.content}
            await self.events.delta(item)
        index = delta.tool_call_index
        if index is not None:
            if index not in self._call_types:
                waits = bool(delta.tool_name) and self.needs_approval(delta.tool_name or "")
                self._call_types[index] = (
                    "approval_request_message" if waits else "tool_call_message"
                )
            call: dict[str, Any] = {"arguments": delta.arguments or ""}
            if delta.tool_name:
                call["name"] = delta.tool_name
            # Providers send a call's id with its first piece only; every piece carries it
            # here, as Letta's do, because letta-code drops pieces that lack it.
            if delta.tool_call_id:
                self._call_ids[index] = delta.tool_call_id
            if index in self._call_ids:
                call["tool_call_id"] = self._call_ids[index]
            item = {**self._base(f"tool/{index}", self._call_types[index]), "tool_call": call}
            await self.events.delta(item)
