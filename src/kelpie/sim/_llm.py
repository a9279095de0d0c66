"""LLM fault injection, ready for the LLM seam: before each model call the injector draws
whether it times out, fails, is rate limited, or answers with malformed or empty output.
The provider wrapper raises the error kinds and mangles the output for the others."""

import dataclasses
import json
from typing import Final, NoReturn, final

from kelpie.env import Entropy
from kelpie.llm import (
    ChatMessage,
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
from kelpie.sim._mcp import mcp_call_arguments
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
# How many calls of the agent's custom tools a workload message asks for ("calls:2").
CALLS_MARK: Final = "calls:"
# The workload's custom tools are named tool_<client>_<n>; no built-in tool is.
CUSTOM_TOOL_PREFIX: Final = "tool_"
# How many calls of the agent's MCP tools a workload message asks for ("mcp:2"); the
# workload's MCP servers are named mcp_<client>_<n>, and so their tools begin.
MCP_MARK: Final = "mcp:"
MCP_TOOL_PREFIX: Final = "mcp_"
MCP_CALL_ID_PREFIX: Final = "mcp-"
# How many tokens a workload message asks the model to append to the journal from code
# ("code:3"): then the turn's first step is one run_code_with_tools call doing just that.
CODE_MARK: Final = "code:"
CODE_TOOL: Final = "run_code_with_tools"
CODE_CALL_ID_PREFIX: Final = "code-"


def token_key_call_id(token: str) -> str:
    """The id of the working_memory_set call that sets the token's key."""
    return f"wm-{token}"


def custom_token(token: str, index: int) -> str:
    """The `city` argument of a turn's index-th custom call: a tool that takes agent_state
    appends it to the journal as its own line (so it is a journal token too)."""
    return f"{token}x{index}"


def custom_call_id(token: str, index: int) -> str:
    """The id of a turn's index-th custom call: `call-<line>`, as a journal edit's call."""
    return f"call-{custom_token(token, index)}"


def custom_return(token: str, index: int) -> str:
    """What the index-th custom call returns when it runs (every workload tool does)."""
    return f"{custom_token(token, index)}:{index}"


def custom_calls(text: str | None) -> int:
    """How many custom calls a workload message asks for."""
    return _count(text, CALLS_MARK)


def code_tokens(token: str, count: int) -> tuple[str, ...]:
    """The journal lines a turn's code appends, in the order it appends them."""
    return tuple(f"{token}k{index}" for index in range(count))


def code_call_id(token: str) -> str:
    """The id of a turn's run_code_with_tools call (each tool call its code makes runs
    under it, so the journal's history names it for each of those lines)."""
    return f"{CODE_CALL_ID_PREFIX}{token}"


# What a code step prints first: how many times code ran in the agent's session ("runs 3").
SESSION_RUNS_PREFIX: Final = "runs "


def code_source(tokens: tuple[str, ...]) -> str:
    """The snippet of a code step: counts its runs in the agent's session, then appends
    each token to the journal, in a loop. It does not look at what the tool returns (the
    simulated sandbox records the calls first)."""
    return (
        'runs = globals().get("runs", 0) + 1\n'
        f'print("{SESSION_RUNS_PREFIX}" + str(runs))\n'
        f"for line in {list(tokens)!r}:\n"
        f'    memory_insert(label="{JOURNAL_LABEL}", new_string=line, insert_line=-1)\n'
    )


def code_calls(text: str | None) -> int:
    """How many tokens a workload message asks to append from code."""
    return _count(text, CODE_MARK)


def mcp_calls(text: str | None) -> int:
    """How many MCP calls a workload message asks for."""
    return _count(text, MCP_MARK)


def _count(text: str | None, mark: str) -> int:
    if not text or mark not in text:
        return 0
    return int(text.split(mark, 1)[1].split()[0])


def mcp_call_id(token: str, index: int, suffix: str) -> str:
    """The id of a turn's index-th MCP call, naming the kind of tool it calls (its
    arguments, and so its result, follow from the token, the index and the kind)."""
    return f"{MCP_CALL_ID_PREFIX}{token}x{index}-{suffix}"


def parse_mcp_call_id(call_id: str) -> tuple[str, int, str] | None:
    """(token, index, tool kind) of an MCP call id; None for any other call."""
    if not call_id.startswith(MCP_CALL_ID_PREFIX):
        return None
    rest, _, suffix = call_id.removeprefix(MCP_CALL_ID_PREFIX).rpartition("-")
    token, _, index = rest.rpartition("x")
    if not token or not index.isdigit() or not suffix:
        return None
    return token, int(index), suffix


def journal_token(text: str | None) -> str | None:
    """The token a workload message asks the model to record, if any."""
    if not text or TOKEN_MARK not in text:
        return None
    return text.split(TOKEN_MARK, 1)[1].split()[0]


@final
class SimModel:
    """The simulated model, deterministic from the request: asked to record a token, it
    calls memory_insert on the journal block and, when it has the working-memory tools,
    working_memory_set of `token.<token>` in the same answer (so one step writes both),
    then as many calls of the agent's custom tools as the message asks for (taking its
    tools in name order, round the list: one tool asked twice is called twice in the step),
    and as many calls of its MCP tools (likewise). Asked for code (`code:k`, an agent with
    run_code_with_tools), it first makes one run_code_with_tools call alone, whose snippet
    appends k tokens to the journal, and answers its return with the calls above; after
    any other tool return it replies. Faults from the plan are injected on top (errors
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
        code = code_calls(last.content) if token is not None else 0
        if token is not None and code and {CODE_TOOL, "memory_insert"} <= tools:
            arguments = json.dumps({"code": code_source(code_tokens(token, code))})
            call = ToolCall(id=code_call_id(token), name=CODE_TOOL, arguments=arguments)
            return LlmResponse(
                content=None, tool_calls=(call,), finish_reason="tool_calls", usage=usage
            )
        if last.role == "tool":
            # The code step's return: the turn goes on with the user's message's calls.
            last, token = _after_code_step(request.messages)
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
            custom = sorted(name for name in tools if name.startswith(CUSTOM_TOOL_PREFIX))
            for index in range(custom_calls(last.content) if custom else 0):
                call_arguments = json.dumps({"city": custom_token(token, index), "days": index})
                calls.append(
                    ToolCall(
                        id=custom_call_id(token, index),
                        name=custom[index % len(custom)],
                        arguments=call_arguments,
                    )
                )
            mcp = sorted(name for name in tools if name.startswith(MCP_TOOL_PREFIX))
            for index in range(mcp_calls(last.content) if mcp else 0):
                name = mcp[index % len(mcp)]
                suffix = name.rpartition("_")[2]
                arguments = json.dumps(mcp_call_arguments(suffix, token, index))
                calls.append(
                    ToolCall(id=mcp_call_id(token, index, suffix), name=name, arguments=arguments)
                )
            return LlmResponse(
                content=None, tool_calls=tuple(calls), finish_reason="tool_calls", usage=usage
            )
        reply = "noted" if last.role == "tool" else "ok"
        return LlmResponse(content=reply, tool_calls=(), finish_reason="stop", usage=usage)


def _after_code_step(messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, str | None]:
    """After a tool return: the user's message of the turn, and its token, when the return
    is that of the turn's code step (else the return itself, and no token)."""
    last = messages[-1]
    if not (last.tool_call_id or "").startswith(CODE_CALL_ID_PREFIX):
        return last, None
    for message in reversed(messages):
        if message.role == "user":
            token = journal_token(message.content)
            if token is not None and last.tool_call_id == code_call_id(token):
                return message, token
            break
    return last, None
