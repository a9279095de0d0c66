"""The workload: simulated clients issuing a seeded random mix of API operations, each
followed by its invariant checks, and the audit run after every crash and at the end.

Each client owns the objects it creates, so its model is sequential; clients run
concurrently, so the scheduler interleaves their requests inside the one server.
"""

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from kelpie.env import Entropy
from kelpie.sim._checks import (
    LLM_FAULTS,
    acknowledged,
    check_agent_body,
    check_block_body,
    check_exists,
    check_tool_body,
    require,
    sort_key,
)
from kelpie.sim._clock import SimClock
from kelpie.sim._faults import CLOCK_JUMP_S_MAX, FaultPlan
from kelpie.sim._llm import (
    CALLS_MARK,
    CODE_MARK,
    JOURNAL_LABEL,
    MCP_MARK,
    TOKEN_KEY_PREFIX,
    TOKEN_MARK,
    token_key_call_id,
)
from kelpie.sim._memory_checks import canonical
from kelpie.sim._model import (
    AgentModel,
    BlockModel,
    ClientModel,
    KeyState,
    Known,
    ToolModel,
    checking_only,
)
from kelpie.sim._server import Outcome
from kelpie.sim._streams import audit_streams, send_background
from kelpie.sim._workload_code import (
    CODE_TOOLS,
    CODE_TOOLS_SHARE,
    check_code_return,
    code_token_count,
    expect_code_call,
)
from kelpie.sim._workload_mcp import (
    McpOperations,
    audit_mcp,
    check_mcp_returns,
    mcp_call_count,
)
from kelpie.sim._workload_memory import (
    WORKING_MEMORY_TOOLS,
    MemoryOperations,
    audit_working_memory,
    check_block_and_history,
    check_key_read,
)
from kelpie.sim._workload_tools import (
    TOOL_TIMEOUTS_S,
    check_calls_answered,
    check_custom_returns,
    check_history_returns,
    check_run_ended,
    custom_call_count,
    expect_custom_calls,
    tool_source,
)

Request = Callable[..., Awaitable[Outcome]]

MODEL_HANDLE: Final = "openai/gpt-4o-mini"
THINK_TIME_S_MAX: Final = 0.05
LIST_PAGES_MAX: Final = 200
_LABELS: Final = ("human", "persona", "notes", "todo", "facts", "plan")
_TAGS: Final = ("red", "green", "blue", "gold")
_WORDS: Final = ("kelp", "tide", "reef", "gull", "surf", "foam", "shell", "drift")
_INCLUDE: Final = {"include": ["agent.tags", "agent.blocks"]}
JOURNAL_LIMIT_CHARS: Final = 100_000
# Share of agents created with custom tools (one or two of the client's), and of the
# client's tools that take agent_state.
CUSTOM_TOOLS_SHARE: Final = 0.6
STATE_TOOL_SHARE: Final = 0.35
# Share of turns sent to an agent with custom tools (when the client has one).
CUSTOM_TURN_SHARE: Final = 0.5
SEARCH_TOP_K: Final = 3
# Searches per agent in an audit: the newest acknowledged writes (a crash loses the newest).
AUDIT_SEARCHES_MAX: Final = 6


class Trace:
    """Every observable outcome, in order; its hash identifies the run."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def record(self, actor: str, what: str, outcome: Outcome) -> None:
        body = json.dumps(outcome.body, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(body.encode()).hexdigest()[:16]
        status = "crash" if outcome.crashed else str(outcome.status)
        self.lines.append(f"{len(self.lines)} {actor} {what} {status} {digest}")

    def hash(self) -> str:
        return hashlib.sha256("\n".join(self.lines).encode()).hexdigest()


class Client(MemoryOperations, McpOperations):
    def __init__(
        self,
        index: int,
        request: Request,
        ready: Callable[[], Awaitable[None]],
        entropy: Entropy,
        clock: SimClock,
        plan: FaultPlan,
        trace: Trace,
    ) -> None:
        self.name = f"c{index}"
        self.model = ClientModel(tag=f"client-{index}")
        self._request = request
        self._ready = ready
        self._entropy = entropy
        self._clock = clock
        self._plan = plan
        self._trace = trace
        self._operations: Sequence[tuple[int, Callable[[], Awaitable[None]]]] = (
            (12, self.create_agent),
            (14, self.get_agent),
            (9, self.update_agent),
            (3, self.delete_agent),
            (6, self.list_agents),
            (9, self.update_core_block),
            (5, self.create_block),
            (6, self.update_block),
            (6, self.get_block),
            (2, self.delete_block),
            (5, self.attach_block),
            (4, self.detach_block),
            (4, self.create_tool),
            (4, self.get_tool),
            (3, self.update_tool),
            (2, self.delete_tool),
            (8, self.bad_input),
            (12, self.send_message),
            (6, self.send_background),
            *self.memory_operations(),
            *self.mcp_operations(),
            (6, self.insert_passage),
            (4, self.search_memory),
        )
        self._weight_total = sum(weight for weight, _ in self._operations)

    # Plumbing --------------------------------------------------------------------------

    @property
    def entropy(self) -> Entropy:
        return self._entropy

    async def send(self, what: str, method: str, url: str, **kwargs: Any) -> Outcome:
        outcome = await self._request(method, url, **kwargs)
        self._trace.record(self.name, what, outcome)
        return outcome

    def _pick(self, items: Sequence[Any]) -> Any:
        return items[self._entropy.choice_index(len(items))] if items else None

    def _text(self, words: int) -> str:
        return " ".join(self._pick(_WORDS) for _ in range(words))

    def _existing(self, objects: dict[str, Any]) -> list[Any]:
        return [o for o in objects.values() if o.exists.certain and o.exists.value]

    async def run(self, steps: int) -> None:
        for _ in range(steps):
            if self._plan.clock_jump and self._entropy.random() < self._plan.clock_jump:
                self._clock.jump((self._entropy.random() * 2 - 1) * CLOCK_JUMP_S_MAX)
            # An operation records what it is about to write in the model before it sends;
            # waiting out a restart first keeps the audit that follows a crash from reading
            # (and settling) an object the client is about to write.
            await self._ready()
            await self._choose()()
            await self._clock.sleep(self._entropy.random() * THINK_TIME_S_MAX)

    def _choose(self) -> Callable[[], Awaitable[None]]:
        point = self._entropy.random() * self._weight_total
        for weight, operation in self._operations:
            point -= weight
            if point < 0:
                return operation
        return self._operations[-1][1]

    # Agents ----------------------------------------------------------------------------

    async def create_agent(self) -> None:
        labels = [label for label in _LABELS[:3] if self._entropy.random() < 0.5]
        blocks = [{"label": label, "value": self._text(3), "limit": 200} for label in labels]
        blocks.append({"label": JOURNAL_LABEL, "value": "", "limit": JOURNAL_LIMIT_CHARS})
        tags = sorted({self.model.tag, self._pick(_TAGS)})
        name = f"{self.name}-{self._text(1)}"
        body = {"name": name, "model": MODEL_HANDLE, "tags": tags, "memory_blocks": blocks}
        tools = self._entropy.random() < 0.5
        if tools:
            body["tools"] = list(WORKING_MEMORY_TOOLS)
        code = self._entropy.random() < CODE_TOOLS_SHARE
        if code:
            body["tools"] = [*body.get("tools", []), *CODE_TOOLS]
        custom: list[ToolModel] = []
        if self._entropy.random() < CUSTOM_TOOLS_SHARE:
            if not self._existing(self.model.tools):
                await self.create_tool()
            existing_tools = self._existing(self.model.tools)
        else:
            existing_tools = []
        if existing_tools:
            custom = [self._pick(existing_tools) for _ in range(1 + self._entropy.choice_index(2))]
            custom = sorted({tool.id: tool for tool in custom}.values(), key=lambda t: t.name)
            for tool in custom:
                tool.ever_attached = True  # the create may land unacknowledged
            body["tool_ids"] = [tool.id for tool in custom]
        mcp_ids, mcp_names = await self.mcp_tools_for_new_agent()
        if mcp_ids:
            body["tool_ids"] = [*body.get("tool_ids", []), *mcp_ids]
        self.model.unknown_agents += 1
        outcome = await self.send("create_agent", "POST", "/v1/agents/", json=body)
        if not acknowledged(outcome, "create_agent", 200):
            return
        self.model.unknown_agents -= 1
        created = outcome.body
        for block in created["blocks"]:
            self.model.blocks[block["id"]] = BlockModel(
                id=block["id"],
                label=block["label"],
                limit=block["limit"],
                exists=Known(True),
                value=Known(block["value"]),
                ever_attached=True,
                journal=block["label"] == JOURNAL_LABEL,
                initial_value=block["value"],
            )
        agent = AgentModel(
            id=created["id"],
            exists=Known(True),
            name=Known(name),
            tags=Known(tuple(tags)),
            block_ids=Known(tuple(sorted(b["id"] for b in created["blocks"]))),
            journal_id=next(b["id"] for b in created["blocks"] if b["label"] == JOURNAL_LABEL),
            working_memory_tools=tools,
            custom_tools=tuple((tool.name, tool.takes_state) for tool in custom),
            mcp_tools=Known(mcp_names),
            code_tools=code,
        )
        self.model.agents[agent.id] = agent
        check_agent_body(agent, created, self.model.blocks)

    async def get_agent(self) -> None:
        agent: AgentModel | None = self._pick(list(self.model.agents.values()))
        if agent is not None:
            await check_agent(self, agent)

    async def update_agent(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        if agent is None:
            return
        name = f"{self.name}-{self._text(2)}"
        tags = tuple(sorted({self.model.tag, self._pick(_TAGS), self._pick(_TAGS)}))
        agent.name.intend(name)
        agent.tags.intend(tags)
        url = f"/v1/agents/{agent.id}"
        outcome = await self.send("update_agent", "PATCH", url, json={"name": name, "tags": tags})
        if acknowledged(outcome, "update_agent", 200):
            agent.name.acknowledge(name)
            agent.tags.acknowledge(tags)
            check_agent_body(agent, outcome.body, self.model.blocks)

    async def delete_agent(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        if agent is None:
            return
        agent.exists.intend(False)
        outcome = await self.send("delete_agent", "DELETE", f"/v1/agents/{agent.id}")
        if acknowledged(outcome, "delete_agent", 200):
            agent.exists.acknowledge(False)

    async def list_agents(self) -> None:
        limit = 1 + self._entropy.choice_index(7)
        order = self._pick(("asc", "desc"))
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"tags": [self.model.tag], "limit": limit, "order": order}
        for _ in range(LIST_PAGES_MAX):
            outcome = await self.send("list_agents", "GET", "/v1/agents/", params=params)
            if not acknowledged(outcome, "list_agents", 200):
                return
            page = outcome.body
            require(len(page) <= limit, f"list_agents: page of {len(page)} over limit {limit}")
            if not page:
                break
            seen.extend(page)
            params["after"] = page[-1]["id"]
        else:
            require(False, "list_agents: pagination did not terminate")
        check_agent_listing(self.model, seen, descending=order == "desc")

    # Blocks ----------------------------------------------------------------------------

    def _attached_blocks(self) -> list[tuple[AgentModel, BlockModel]]:
        pairs: list[tuple[AgentModel, BlockModel]] = []
        for agent in self._existing(self.model.agents):
            if agent.block_ids.certain:
                blocks = [self.model.blocks[b] for b in agent.block_ids.value]
                # Journals change only through turns (the reference model counts on it).
                pairs.extend((agent, block) for block in blocks if not block.journal)
        return pairs

    async def update_core_block(self) -> None:
        pair = self._pick(self._attached_blocks())
        if pair is None:
            return
        agent, block = pair
        over_limit = self._entropy.random() < 0.2
        value = "x" * (block.limit + 1) if over_limit else self._text(4)
        url = f"/v1/agents/{agent.id}/core-memory/blocks/{block.label}"
        if over_limit:
            outcome = await self.send("update_core_block_over", "PATCH", url, json={"value": value})
            if acknowledged(outcome, "update_core_block over limit", 422):
                await check_block(self, block)
            return
        await self.write_block(block, "api", value, "update_core_block", url, json={"value": value})

    async def create_block(self) -> None:
        label = self._pick(_LABELS)
        limit = 20 + self._entropy.choice_index(200)
        body = {"label": label, "value": self._text(2)[:limit], "limit": limit}
        outcome = await self.send("create_block", "POST", "/v1/blocks/", json=body)
        if acknowledged(outcome, "create_block", 200):
            created = outcome.body
            block = BlockModel(
                id=created["id"],
                label=label,
                limit=limit,
                exists=Known(True),
                value=Known(body["value"]),
                initial_value=body["value"],
            )
            self.model.blocks[block.id] = block
            check_block_body(block, created)

    async def update_block(self) -> None:
        candidates = [b for b in self._existing(self.model.blocks) if not b.journal]
        block: BlockModel | None = self._pick(candidates)
        if block is None:
            return
        value = self._text(3)[: block.limit]
        url = f"/v1/blocks/{block.id}"
        await self.write_block(block, "api", value, "update_block", url, json={"value": value})

    async def get_block(self) -> None:
        block: BlockModel | None = self._pick(list(self.model.blocks.values()))
        if block is not None:
            await check_block(self, block)

    async def delete_block(self) -> None:
        candidates = [b for b in self._existing(self.model.blocks) if not b.ever_attached]
        block: BlockModel | None = self._pick(candidates)
        if block is None:
            return
        block.exists.intend(False)
        outcome = await self.send("delete_block", "DELETE", f"/v1/blocks/{block.id}")
        if acknowledged(outcome, "delete_block", 200):
            block.exists.acknowledge(False)

    async def attach_block(self) -> None:
        agents = [a for a in self._existing(self.model.agents) if a.block_ids.certain]
        agent: AgentModel | None = self._pick(agents)
        if agent is None:
            return
        labels = {self.model.blocks[b].label for b in agent.block_ids.value}
        free = [
            b
            for b in self._existing(self.model.blocks)
            if b.label not in labels and b.id not in agent.block_ids.value
        ]
        block: BlockModel | None = self._pick(free)
        if block is None:
            return
        block.ever_attached = True
        attached = tuple(sorted((*agent.block_ids.value, block.id)))
        agent.block_ids.intend(attached)
        url = f"/v1/agents/{agent.id}/core-memory/blocks/attach/{block.id}"
        outcome = await self.send("attach_block", "PATCH", url)
        if acknowledged(outcome, "attach_block", 200):
            agent.block_ids.acknowledge(attached)
            check_agent_body(agent, outcome.body, self.model.blocks)

    async def detach_block(self) -> None:
        pair = self._pick(self._attached_blocks())
        if pair is None:
            return
        agent, block = pair
        remaining = tuple(b for b in agent.block_ids.value if b != block.id)
        agent.block_ids.intend(remaining)
        url = f"/v1/agents/{agent.id}/core-memory/blocks/detach/{block.id}"
        outcome = await self.send("detach_block", "PATCH", url)
        if acknowledged(outcome, "detach_block", 200):
            agent.block_ids.acknowledge(remaining)
            check_agent_body(agent, outcome.body, self.model.blocks)

    # Tools -----------------------------------------------------------------------------

    async def create_tool(self) -> None:
        self.model.tools_created += 1
        name = f"tool_{self.name}_{self.model.tools_created}"
        takes_state = self._entropy.random() < STATE_TOOL_SHARE
        timeout_s: float | None = self._pick(TOOL_TIMEOUTS_S)
        body: dict[str, Any] = {"source_code": tool_source(name, takes_state=takes_state)}
        if timeout_s is not None:
            body["metadata_"] = {"sandbox": {"timeout_s": timeout_s}}
        outcome = await self.send("create_tool", "POST", "/v1/tools/", json=body)
        if acknowledged(outcome, "create_tool", 200):
            created = outcome.body
            require(created["name"] == name, f"create_tool: derived name {created['name']!r}")
            tool = ToolModel(
                id=created["id"],
                name=name,
                exists=Known(True),
                description=Known(created["description"]),
                takes_state=takes_state,
                timeout_s=timeout_s,
            )
            self.model.tools[tool.id] = tool

    async def get_tool(self) -> None:
        tool: ToolModel | None = self._pick(list(self.model.tools.values()))
        if tool is not None:
            await check_tool(self, tool)

    async def update_tool(self) -> None:
        tool: ToolModel | None = self._pick(self._existing(self.model.tools))
        if tool is None:
            return
        description = self._text(3)
        tool.description.intend(description)
        url = f"/v1/tools/{tool.id}"
        outcome = await self.send("update_tool", "PATCH", url, json={"description": description})
        if acknowledged(outcome, "update_tool", 200):
            tool.description.acknowledge(description)
            check_tool_body(tool, outcome.body)

    async def delete_tool(self) -> None:
        candidates = [t for t in self._existing(self.model.tools) if not t.ever_attached]
        tool: ToolModel | None = self._pick(candidates)
        if tool is None:
            return
        tool.exists.intend(False)
        outcome = await self.send("delete_tool", "DELETE", f"/v1/tools/{tool.id}")
        if acknowledged(outcome, "delete_tool", 200):
            tool.exists.acknowledge(False)

    # Agent turns ----------------------------------------------------------------------

    def _turn_agents(self) -> list[AgentModel]:
        """Agents a turn may go to; half the time, those with custom tools (if any)."""
        agents = [a for a in self._existing(self.model.agents) if a.journal_id is not None]
        custom = [
            a for a in agents if a.custom_tools or a.code_tools or any(a.mcp_tools.candidates())
        ]
        return custom if custom and self._entropy.random() < CUSTOM_TURN_SHARE else agents

    async def send_message(self) -> None:
        agent: AgentModel | None = self._pick(self._turn_agents())
        if agent is None or agent.journal_id is None:
            return
        journal = self.model.blocks[agent.journal_id]
        self.model.turns_sent += 1
        token = f"{self.name}t{self.model.turns_sent}"
        journal.tokens_maybe.add(token)
        key = f"{TOKEN_KEY_PREFIX}{token}"
        token_state = KeyState(canonical(token))
        if agent.working_memory_tools:
            agent.working_memory.setdefault(key, Known(None)).intend(token_state)
        calls = custom_call_count(agent, self._entropy.random())
        expect_custom_calls(journal, agent, token, calls)
        mcp = mcp_call_count(agent, self._entropy.random())
        code = code_token_count(agent, self._entropy)
        expect_code_call(journal, token, code, self.model.sessions, agent.id)
        text = (
            f"please record {TOKEN_MARK}{token} {CALLS_MARK}{calls} {MCP_MARK}{mcp}"
            f" {CODE_MARK}{code}"
        )
        body = {"messages": [{"role": "user", "content": text}]}
        url = f"/v1/agents/{agent.id}/messages"
        outcome = await self.send("send_message", "POST", url, json=body)
        busy = (409,) if agent.run_maybe_running else ()
        if not acknowledged(outcome, "send_message", 200, 404, *busy) or outcome.status == 409:
            return
        agent.run_maybe_running = False
        if not check_exists(agent, outcome.status or 0, "send_message"):
            return
        check_turn(journal, agent, token, outcome)
        check_custom_returns(
            "send_message",
            journal,
            agent,
            token,
            calls,
            outcome.body["messages"],
            outcome.faults,
            complete=True,
        )
        check_mcp_returns(
            "send_message",
            agent,
            token,
            mcp,
            outcome.body["messages"],
            outcome.faults,
            complete=True,
        )
        check_code_return(
            "send_message",
            journal,
            agent,
            token,
            code,
            outcome.body["messages"],
            outcome.faults,
            complete=True,
            sessions=self.model.sessions,
        )
        if calls or mcp or code:
            await check_run_ended(self, "send_message", outcome.body)
        if agent.working_memory_tools:
            # The turn's working_memory_set committed with its step, or failed (a faulty
            # store read inside the tool) and wrote nothing.
            stored = any(
                m["message_type"] == "tool_return_message"
                and m["tool_call_id"] == token_key_call_id(token)
                and m["status"] == "success"
                for m in outcome.body["messages"]
            )
            agent.working_memory[key].acknowledge(token_state if stored else None)
            await check_key_read(self, agent, key)

    async def send_background(self) -> None:
        agent: AgentModel | None = self._pick(self._turn_agents())
        if agent is not None:
            await send_background(self, agent)

    # Archival and recall memory ------------------------------------------------------

    async def insert_passage(self) -> None:
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        if agent is None:
            return
        self.model.passages_sent += 1
        token = f"{self.name}p{self.model.passages_sent}"
        body = {"text": f"{self._text(3)} {token} {self._text(2)}", "tags": [self._pick(_TAGS)]}
        url = f"/v1/agents/{agent.id}/archival-memory"
        outcome = await self.send("insert_passage", "POST", url, json=body)
        if acknowledged(outcome, "insert_passage", 200, 404) and check_exists(
            agent, outcome.status or 0, "insert_passage"
        ):
            require(outcome.body[0]["text"] == body["text"], f"insert_passage: {outcome.body}")
            agent.acked_passages.append(token)

    async def search_memory(self) -> None:
        agents = [a for a in self._existing(self.model.agents) if a.acked_passages or a.acked_said]
        agent: AgentModel | None = self._pick(agents)
        if agent is not None:
            await check_searchable(
                self, agent, self._pick([*agent.acked_passages, *agent.acked_said])
            )

    # Bad input: a clear 4xx, and nothing changes -------------------------------------

    async def bad_input(self) -> None:
        unknown_block = self._entropy.new_id("block")
        agent: AgentModel | None = self._pick(self._existing(self.model.agents))
        cases: list[tuple[str, str, str, dict[str, Any], int]] = [
            ("malformed_id", "GET", "/v1/agents/not-an-id", {}, 422),
            ("wrong_type", "POST", "/v1/agents/", {"json": {"name": 5}}, 422),
            ("not_json", "POST", "/v1/agents/", {"content": b"{nope"}, 422),
            (
                "over_limit",
                "POST",
                "/v1/blocks/",
                {"json": {"label": "x", "value": "testing testing", "limit": 5}},
                422,
            ),
            ("unknown_agent", "GET", f"/v1/agents/{self._entropy.new_id('agent')}", {}, 404),
            (
                "unknown_block_ref",
                "POST",
                "/v1/agents/",
                {"json": {"model": MODEL_HANDLE, "block_ids": [unknown_block]}},
                404,
            ),
            (
                "no_docstring",
                "POST",
                "/v1/tools/",
                {"json": {"source_code": "def f(x): pass"}},
                400,
            ),
        ]
        if agent is not None:
            url = f"/v1/agents/{agent.id}/core-memory/blocks/attach/{unknown_block}"
            cases.append(("attach_unknown", "PATCH", url, {}, 404))
        what, method, url, kwargs, status = self._pick(cases)
        outcome = await self.send(f"bad_{what}", method, url, **kwargs)
        if acknowledged(outcome, f"bad input {what}", status) and agent is not None:
            await check_agent(self, agent)


async def check_agent(client: Client, agent: AgentModel) -> None:
    outcome = await client.send("get_agent", "GET", f"/v1/agents/{agent.id}", params=_INCLUDE)
    if acknowledged(outcome, "get_agent", 200, 404) and check_exists(
        agent, outcome.status or 0, "get_agent"
    ):
        check_agent_body(agent, outcome.body, client.model.blocks)


async def check_block(client: Client, block: BlockModel) -> None:
    outcome = await client.send("get_block", "GET", f"/v1/blocks/{block.id}")
    if acknowledged(outcome, "get_block", 200, 404) and check_exists(
        block, outcome.status or 0, "get_block"
    ):
        check_block_body(block, outcome.body)


async def check_tool(client: Client, tool: ToolModel) -> None:
    outcome = await client.send("get_tool", "GET", f"/v1/tools/{tool.id}")
    if acknowledged(outcome, "get_tool", 200, 404) and check_exists(
        tool, outcome.status or 0, "get_tool"
    ):
        check_tool_body(tool, outcome.body)


def check_agent_listing(
    model: ClientModel, seen: list[dict[str, Any]], *, descending: bool
) -> None:
    ids = [item["id"] for item in seen]
    require(len(ids) == len(set(ids)), "list_agents: an agent appeared on two pages")
    keys = [sort_key(item) for item in seen]
    require(keys == sorted(keys, reverse=descending), "list_agents: pages out of order")
    listed = set(ids)
    for agent in model.agents.values():
        present = agent.id in listed
        require(
            agent.exists.allows(present),
            f"list_agents: {agent.id} listed={present}, model {agent.exists}",
        )
        agent.exists.settle(present)
    strangers = listed - set(model.agents)
    require(
        len(strangers) <= model.unknown_agents,
        f"list_agents: {len(strangers)} agents nobody created: {sorted(strangers)[:3]}",
    )


def check_turn(journal: BlockModel, agent: AgentModel, token: str, outcome: Outcome) -> None:
    """An acknowledged turn: its replies are kept, and its token is in the journal exactly
    when its memory_insert succeeded."""
    body = outcome.body
    stop = body["stop_reason"]["stop_reason"]
    messages = body["messages"]
    recorded = any(
        m["message_type"] == "tool_return_message"
        and m["tool_call_id"] == f"call-{token}"
        and m.get("status") == "success"
        for m in messages
    )
    check_calls_answered("send_message", messages)
    if not LLM_FAULTS.intersection(outcome.faults):
        require(stop == "end_turn", f"send_message: stop {stop} with no fault: {body}")
        require(recorded, f"send_message: token {token} not recorded with no fault: {messages}")
    if messages:
        # The turn's first step committed, the user's message with it: recall finds it.
        agent.acked_said.append(token)
    if recorded:
        journal.tokens_certain.add(token)
    journal.tokens_maybe.discard(token)
    agent.acked_messages.extend(dict.fromkeys(m["id"] for m in messages))


async def check_turn_records(client: Client, agent: AgentModel) -> dict[str, str] | None:
    """No run is left running while no turn is in flight; acknowledged replies survive.
    Returns the status of every committed tool return by tool call id (None: unread)."""
    params: dict[str, Any] = {"agent_id": agent.id, "statuses": ["running", "created"]}
    outcome = await client.send("audit_runs", "GET", "/v1/runs/", params=params)
    if acknowledged(outcome, "audit runs", 200):
        require(outcome.body == [], f"agent {agent.id}: runs left running: {outcome.body}")
    seen: set[str] = set()
    returns: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    params = {"limit": 1000, "order": "asc"}
    for _ in range(LIST_PAGES_MAX):
        url = f"/v1/agents/{agent.id}/messages"
        outcome = await client.send("audit_messages", "GET", url, params=params)
        if not acknowledged(outcome, "audit messages", 200):
            return None
        if not outcome.body:
            break
        seen.update(item["id"] for item in outcome.body)
        items.extend(outcome.body)
        for item in outcome.body:
            if item["message_type"] == "tool_return_message":
                returns[item["tool_call_id"]] = item["status"]
        params = {**params, "after": outcome.body[-1]["id"]}
    lost = [i for i in agent.acked_messages if i not in seen]
    require(not lost, f"agent {agent.id}: acknowledged messages lost: {lost[:3]}")
    check_history_returns(agent, items)
    return returns


async def check_searchable(client: Client, agent: AgentModel, token: str) -> None:
    """An acknowledged passage (or message) whose token is searched for is among the top
    results, whether or not its vector was written before a crash."""
    if token in agent.acked_passages:
        url = f"/v1/agents/{agent.id}/archival-memory/search"
        outcome = await client.send(
            "search_passages", "GET", url, params={"query": token, "top_k": SEARCH_TOP_K}
        )
        if acknowledged(outcome, "search_passages", 200, 404) and check_exists(
            agent, outcome.status or 0, "search_passages"
        ):
            texts = [result["content"] for result in outcome.body["results"]]
            require(any(token in text for text in texts), f"passage {token} not found: {texts}")
        return
    body = {"query": token, "agent_id": agent.id, "limit": SEARCH_TOP_K}
    outcome = await client.send("search_messages", "POST", "/v1/messages/search", json=body)
    if acknowledged(outcome, "search_messages", 200, 404) and check_exists(
        agent, outcome.status or 0, "search_messages"
    ):
        texts = [result["content"] for result in outcome.body]
        require(any(token in text for text in texts), f"message {token} not found: {texts}")


async def audit(clients: Sequence[Client]) -> None:
    """Reads back every object every client knows of: acknowledged writes must be there."""
    with checking_only():
        for client in clients:
            await _audit_client(client)


async def _audit_client(client: Client) -> None:
    for agent in list(client.model.agents.values()):
        await check_agent(client, agent)
        if agent.exists.certain and agent.exists.value:
            returns = await check_turn_records(client, agent)
            await audit_working_memory(client, agent, returns)
            for token in [*agent.acked_passages, *agent.acked_said][-AUDIT_SEARCHES_MAX:]:
                await check_searchable(client, agent, token)
    for block in list(client.model.blocks.values()):
        await check_block_and_history(client, block)
    for tool in list(client.model.tools.values()):
        await check_tool(client, tool)
    await audit_streams(client)
    await audit_mcp(client)
