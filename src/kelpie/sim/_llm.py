"""LLM fault injection, ready for the LLM seam: before each model call the injector draws
whether it times out, fails, is rate limited, or answers with malformed or empty output.
The provider wrapper raises the error kinds and mangles the output for the others."""

import dataclasses
import json
from typing import Final, NoReturn, final

from kelpie.env import Entropy
from kelpie.llm import (
    LlmProviderFailed,
    LlmRateLimited,
    LlmRequest,
    LlmResponse,
    LlmTimeout,
    OnDelta,
    ToolCall,
    Usage,
    scripted_deltas,
)
from kelpie.schemas import LlmConfig
from kelpie.sim._faults import FaultPlan
from kelpie.sim._store import current_request

LLM_ERROR_FAULTS: Final = ("llm_timeout", "llm_error", "llm_rate_limit")
LLM_OUTPUT_FAULTS: Final = ("llm_malformed", "llm_empty")
MALFORMED_TOOL_ARGUMENTS: Final = '{"unterminated": '


@final
class LlmFaultInjector:
    def __init__(self, plan: FaultPlan, entropy: Entropy) -> None:
        self.plan = plan
        self._entropy = entropy
        self.injected: list[str] = []

    def draw(self) -> str | None:
        """The fault for the next call, or None. At most one fault per call."""
        for kind in (*LLM_ERROR_FAULTS, *LLM_OUTPUT_FAULTS):
            probability = getattr(self.plan, kind)
            if probability and self._entropy.random() < probability:
                self.injected.append(kind)
                faults = current_request.get()
                if faults is not None:
                    faults.kinds.append(kind)
                return kind
        return None

    def raise_error(self, kind: str) -> NoReturn:
        """Raises the provider error a real SDK failure of `kind` is translated to."""
        if kind == "llm_timeout":
            raise LlmTimeout("injected: the model did not answer in time")
        if kind == "llm_rate_limit":
            raise LlmRateLimited("injected: rate limited by the provider (429)")
        if kind == "llm_error":
            raise LlmProviderFailed("injected: the provider answered 500")
        raise AssertionError(f"{kind} is not an error fault")


JOURNAL_LABEL: Final = "journal"
TOKEN_MARK: Final = "token:"
# The working-memory key a turn sets for its token.
TOKEN_KEY_PREFIX: Final = "token."


def token_key_call_id(token: str) -> str:
    """The id of the working_memory_set call that sets the token's key."""
    return f"wm-{token}"


def journal_token(text: str | None) -> str | None:
    """The token a workload message asks the model to record, if any."""
    if not text or TOKEN_MARK not in text:
        return None
    return text.split(TOKEN_MARK, 1)[1].split()[0]


@final
class SimModel:
    """The simulated model, deterministic from the request: asked to record a token, it
    calls memory_insert on the journal block and, when it has the working-memory tools,
    working_memory_set of `token.<token>` in the same answer (so one step writes both);
    after a tool return it replies. Faults from the plan are injected on top (errors
    raised, output malformed or emptied)."""

    def __init__(self, faults: LlmFaultInjector) -> None:
        self._faults = faults

    def client_for(self, llm: LlmConfig) -> "SimModel":
        return self

    async def complete(self, request: LlmRequest, on_delta: OnDelta | None = None) -> LlmResponse:
        fault = self._faults.draw()
        if fault in LLM_ERROR_FAULTS:
            self._faults.raise_error(fault)
        response = self._answer(request)
        if fault == "llm_malformed":
            call = ToolCall(
                id="call-malformed", name="memory_insert", arguments=MALFORMED_TOOL_ARGUMENTS
            )
            response = dataclasses.replace(response, content=None, tool_calls=(call,))
        elif fault == "llm_empty":
            response = dataclasses.replace(response, content=None, tool_calls=())
        if on_delta is not None:
            for delta in scripted_deltas(response):
                await on_delta(delta)
        return response

    @staticmethod
    def _answer(request: LlmRequest) -> LlmResponse:
        usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
        last = request.messages[-1]
        token = journal_token(last.content) if last.role == "user" else None
        tools = {tool.name for tool in request.tools}
        if token is not None and "memory_insert" in tools:
            arguments = json.dumps({"label": JOURNAL_LABEL, "new_string": token, "insert_line": -1})
            calls = [ToolCall(id=f"call-{token}", name="memory_insert", arguments=arguments)]
            if "working_memory_set" in tools:
                key_arguments = json.dumps({"key": f"{TOKEN_KEY_PREFIX}{token}", "value": token})
                calls.append(
                    ToolCall(
                        id=token_key_call_id(token),
                        name="working_memory_set",
                        arguments=key_arguments,
                    )
                )
            return LlmResponse(
                content=None, tool_calls=tuple(calls), finish_reason="tool_calls", usage=usage
            )
        reply = "noted" if last.role == "tool" else "ok"
        return LlmResponse(content=reply, tool_calls=(), finish_reason="stop", usage=usage)
