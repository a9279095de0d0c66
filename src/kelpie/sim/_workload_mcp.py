"""MCP servers under simulation: workload operations (a mixin of the workload's `Client`),
the checks of the turns that call MCP tools, and the audit.

A client registers up to `MCP_SERVERS_MAX` simulated servers (`mcp_<client>_<n>`, stdio or
streamable HTTP; see `kelpie.sim._mcp`), lists their tools, attaches a server's tools to
agents (at creation through `tool_ids`, or by a refresh with `agent_id`), runs a tool now
through the run route, refreshes, and deletes a server no agent was given and registers it
again under the same name. A turn's message asks for 0-2 MCP calls (`mcp:n`): the model
makes them in its first step, beside memory_insert, ids `mcp-<token>x<i>-<kind>`, taking
the agent's MCP tools in name order round the list.

Invariants: an MCP call's return (in a turn or a direct run) is its tool's deterministic
value, or the tool's own error; an error saying the server crashed, stalled or did not
start only when that fault was injected into the request (so after a crash, the next call
with no fault succeeds: the connection recovers); a turn asked for n calls on an agent
whose MCP tools are known made them all once its memory_insert's step committed; an
unreachable server is a 400 at create and refresh only under an injected slow start, and
leaves nothing stored; a server's tools keep their names and ids; after every crash, every
acknowledged server, its tools and every acknowledged attachment are there.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from kelpie.env import Entropy
from kelpie.sim._checks import FAILURE_FAULTS, LLM_FAULTS, acknowledged, require
from kelpie.sim._faults import MCP_FAULTS
from kelpie.sim._llm import mcp_call_id, parse_mcp_call_id
from kelpie.sim._mcp import (
    CRASH_MARK,
    MCP_FAULT_MARKS,
    MCP_TOOL_SUFFIXES,
    SLOW_START_MARK,
    mcp_call_arguments,
    mcp_result,
    mcp_tool_names,
    sim_mcp_config,
)
from kelpie.sim._model import AgentModel, ClientModel, Known, McpServerModel
from kelpie.sim._server import Outcome
from kelpie.sim._workload_tools import returned_text

MCP_SERVERS_MAX: Final = 2
# Share of servers reached over streamable HTTP (the rest are stdio commands).
REMOTE_SHARE: Final = 0.3
# Share of agents created with one of the client's servers' tools (when it has one).
MCP_TOOLS_SHARE: Final = 0.5
# Share of refreshes that attach the server's tools to an agent.
REFRESH_ATTACH_SHARE: Final = 0.6
# MCP calls per turn of an agent with MCP tools, by weight: none, one, two.
MCP_CALLS_WEIGHTS: Final = (0.15, 0.35, 0.5)
MCP_ERROR_PREFIX: Final = "Error executing MCP tool "
# A tool whose server record could not be read (a storage fault) fails like any tool.
TOOL_ERROR_PREFIX: Final = "Error executing function "
AGENT_TOOLS_PAGE: Final = {"limit": 100}


def mcp_call_count(agent: AgentModel, draw: float) -> int:
    if not any(agent.mcp_tools.candidates()):
        return 0
    for count, weight in enumerate(MCP_CALLS_WEIGHTS):
        draw -= weight
        if draw < 0:
            return count
    return len(MCP_CALLS_WEIGHTS) - 1


def _kind(tool_name: str) -> str:
    return tool_name.rpartition("_")[2]


def check_mcp_return(
    what: str, kind: str, arguments: Mapping[str, Any], ok: bool, text: str, faults: Iterable[str]
) -> None:
    """One MCP call's outcome against its tool's value and the faults of its request."""
    expected = mcp_result(kind, arguments)
    if ok:
        require(
            not expected.is_error and text == expected.text,
            f"{what}: returned {text!r}, expected {expected}",
        )
        return
    if expected.is_error and text == expected.text:
        return  # the tool's own error
    faults = tuple(faults)
    if (
        "storage_read_failure" in faults
        and text.startswith(TOOL_ERROR_PREFIX)
        and "StorageUnavailable: injected storage_read_failure" in text
    ):
        return  # the server's own read failed before the MCP server was reached
    injected = [kind for kind in MCP_FAULTS if kind in faults]
    if injected:
        require(
            text.startswith(MCP_ERROR_PREFIX)
            and any(MCP_FAULT_MARKS[kind] in text for kind in injected),
            f"{what}: failed with {text!r}, which does not say {injected} happened",
        )
        return
    require(
        False,
        f"{what}: MCP call failed with no MCP fault injected (faults {faults}): {text!r}",
    )


def check_mcp_returns(
    what: str,
    agent: AgentModel,
    token: str,
    count: int,
    items: Sequence[Mapping[str, Any]],
    faults: tuple[str, ...],
    *,
    complete: bool,
) -> None:
    """A turn's MCP calls against their tools' values; `complete` when the turn is over."""
    returns = {
        item["tool_call_id"]: item
        for item in items
        if item.get("message_type") == "tool_return_message"
    }
    names = sorted(agent.mcp_tools.value) if agent.mcp_tools.certain else None
    for call_id, item in returns.items():
        parsed = parse_mcp_call_id(call_id)
        if parsed is None or parsed[0] != token:
            continue
        _, index, kind = parsed
        require(index < count, f"{what}: MCP call {call_id} beyond the {count} asked for")
        if names:
            expected_kind = _kind(names[index % len(names)])
            require(
                kind == expected_kind, f"{what}: {call_id} called a {kind}, not {expected_kind}"
            )
        check_mcp_return(
            f"{what}: MCP call {call_id}",
            kind,
            mcp_call_arguments(kind, token, index),
            item["status"] == "success",
            returned_text(item),
            faults,
        )
        agent.custom_returns[call_id] = item["status"]
    answered = f"call-{token}" in returns
    faultless = not FAILURE_FAULTS.union(LLM_FAULTS).intersection(faults)
    if names and complete and (answered or faultless):
        for index in range(count):
            call_id = mcp_call_id(token, index, _kind(names[index % len(names)]))
            require(
                call_id in returns,
                f"{what}: MCP call {call_id} has no tool return (memory_insert called:"
                f" {answered}; faults {faults})",
            )


class McpOperations:
    """Needs the client's model, entropy and request plumbing."""

    name: str
    model: ClientModel
    _entropy: Entropy

    async def send(self, what: str, method: str, url: str, **kwargs: Any) -> Outcome:
        raise NotImplementedError

    def _pick(self, items: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _existing(self, objects: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def mcp_operations(self) -> list[tuple[int, Callable[[], Awaitable[None]]]]:
        return [
            (2, self.create_mcp_server),
            (3, self.run_mcp_tool),
            (2, self.refresh_mcp_server),
            (1, self.delete_mcp_server),
        ]

    # Servers ---------------------------------------------------------------------------

    async def create_mcp_server(self) -> None:
        if self.model.mcp_servers_created >= MCP_SERVERS_MAX:
            return
        self.model.mcp_servers_created += 1
        name = f"mcp_{self.name}_{self.model.mcp_servers_created}"
        await self._create_mcp_server(name)

    async def _create_mcp_server(self, name: str) -> McpServerModel | None:
        remote = self._entropy.random() < REMOTE_SHARE
        body = {"server_name": name, "config": sim_mcp_config(name, remote=remote)}
        outcome = await self.send("create_mcp_server", "POST", "/v1/mcp-servers/", json=body)
        if not acknowledged(outcome, "create_mcp_server", 200, 400):
            return None
        if outcome.status == 400:
            _require_unreachable("create_mcp_server", outcome)
            gone = await self.send(
                "mcp_server_by_name", "GET", f"/v1/tools/mcp/servers/{name}/tools"
            )
            acknowledged(gone, "an MCP server refused at create is not stored", 404)
            return None
        created = outcome.body
        require(created["server_name"] == name, f"create_mcp_server: answered {created}")
        server = McpServerModel(id=created["id"], name=name, exists=Known(True))
        self.model.mcp_servers[server.id] = server
        await self.list_mcp_tools(server)
        return server

    async def list_mcp_tools(self, server: McpServerModel) -> bool:
        """Reads the server's tools: its simulated server's, with the ids seen before."""
        url = f"/v1/mcp-servers/{server.id}/tools"
        outcome = await self.send("list_mcp_tools", "GET", url)
        if not acknowledged(outcome, "list_mcp_tools", 200, 404):
            return False
        require(
            server.exists.allows(outcome.status == 200),
            f"MCP server {server.id}: exists={outcome.status == 200}, model {server.exists}",
        )
        server.exists.settle(outcome.status == 200)
        if outcome.status != 200:
            return False
        check_server_tools(server, outcome.body)
        return True

    async def _mcp_tool_ids(self, server: McpServerModel) -> dict[str, str]:
        if not server.tool_ids:
            await self.list_mcp_tools(server)
        return server.tool_ids

    def _servers(self) -> list[McpServerModel]:
        servers: list[McpServerModel] = self._existing(self.model.mcp_servers)
        return servers

    async def _server(self) -> McpServerModel | None:
        """One of the client's servers; a new one when it has none yet (and may)."""
        if not self._servers():
            await self.create_mcp_server()
        server: McpServerModel | None = self._pick(self._servers())
        return server

    async def mcp_tools_for_new_agent(self) -> tuple[list[str], tuple[str, ...]]:
        """Tool ids (and names) of one of the client's servers, for an agent being created;
        none most of the time."""
        if self._entropy.random() >= MCP_TOOLS_SHARE:
            return [], ()
        server = await self._server()
        if server is None:
            return [], ()
        ids = await self._mcp_tool_ids(server)
        if not ids:
            return [], ()
        server.ever_attached = True  # the create may land unacknowledged
        names = tuple(sorted(ids))
        return [ids[name] for name in names], names

    async def refresh_mcp_server(self) -> None:
        server = await self._server()
        if server is None:
            return
        agents = [a for a in self._existing(self.model.agents) if a.mcp_tools.certain]
        agent: AgentModel | None = None
        if self._entropy.random() < REFRESH_ATTACH_SHARE:
            agent = self._pick(agents)
        names = tuple(mcp_tool_names(server.name))
        params: dict[str, Any] = {}
        attached: tuple[str, ...] = ()
        if agent is not None:
            server.ever_attached = True
            attached = tuple(sorted({*agent.mcp_tools.value, *names}))
            agent.mcp_tools.intend(attached)
            params["agent_id"] = agent.id
        url = f"/v1/mcp-servers/{server.id}/refresh"
        outcome = await self.send("refresh_mcp_server", "PATCH", url, params=params)
        if not acknowledged(outcome, "refresh_mcp_server", 200, 400):
            return
        if outcome.status == 400:
            _require_unreachable("refresh_mcp_server", outcome)
            if agent is not None:
                agent.mcp_tools.acknowledge(agent.mcp_tools.value)
            return
        body = outcome.body
        require(
            sorted(body["tools"]) == sorted(names) and not body["added"] and not body["removed"],
            f"refresh_mcp_server {server.id}: {body}",
        )
        if agent is not None:
            agent.mcp_tools.acknowledge(attached)

    async def delete_mcp_server(self) -> None:
        """Deletes a server no agent was given, then registers it again by the same name."""
        servers = [s for s in self._servers() if not s.ever_attached]
        server: McpServerModel | None = self._pick(servers)
        if server is None:
            return
        tool_ids = dict(server.tool_ids)
        server.exists.intend(False)
        url = f"/v1/mcp-servers/{server.id}"
        outcome = await self.send("delete_mcp_server", "DELETE", url)
        if not acknowledged(outcome, "delete_mcp_server", 204):
            return
        server.exists.acknowledge(False)
        if tool_ids:
            tool_id = tool_ids[self._pick(sorted(tool_ids))]
            gone = await self.send("get_deleted_mcp_tool", "GET", f"/v1/tools/{tool_id}")
            acknowledged(gone, "a deleted MCP server's tool is gone", 404)
        await self._create_mcp_server(server.name)

    # Calls -----------------------------------------------------------------------------

    async def run_mcp_tool(self) -> None:
        server = await self._server()
        if server is None:
            return
        ids = await self._mcp_tool_ids(server)
        if not ids:
            return
        kind = self._pick(MCP_TOOL_SUFFIXES)
        self.model.mcp_runs += 1
        arguments = mcp_call_arguments(
            kind, f"{self.name}r{self.model.mcp_runs}", self._entropy.choice_index(4)
        )
        tool_id = ids[f"{server.name}_{kind}"]
        url = f"/v1/mcp-servers/{server.id}/tools/{tool_id}/run"
        outcome = await self.send("run_mcp_tool", "POST", url, json={"args": arguments})
        if not acknowledged(outcome, "run_mcp_tool", 200):
            return
        body = outcome.body
        text = str(body["func_return"])
        hint = " (a call after a crash: the connection did not recover)" if server.crashed else ""
        check_mcp_return(
            f"run_mcp_tool {server.name}_{kind}{hint}",
            kind,
            arguments,
            body["status"] == "success",
            text,
            outcome.faults,
        )
        if CRASH_MARK in text:
            server.crashed = True
        elif not any(kind in MCP_FAULTS for kind in outcome.faults):
            server.crashed = False


def _require_unreachable(what: str, outcome: Outcome) -> None:
    """A 400 at create or refresh: only an injected slow start explains it."""
    detail = outcome.body.get("detail", "") if isinstance(outcome.body, dict) else ""
    require(
        "mcp_slow_start" in outcome.faults and SLOW_START_MARK in str(detail),
        f"{what}: 400 with no MCP server fault to explain it: {outcome.body!r}",
    )


def check_server_tools(server: McpServerModel, tools: Sequence[Mapping[str, Any]]) -> None:
    """A server's listed tools: its simulated server's, tagged and typed as MCP tools, each
    with the id it had before."""
    what = f"MCP server {server.name}"
    names = sorted(tool["name"] for tool in tools)
    require(names == mcp_tool_names(server.name), f"{what}: tools {names}")
    for tool in tools:
        require(
            tool["tool_type"] == "external_mcp" and f"mcp:{server.name}" in tool["tags"],
            f"{what}: tool {tool}",
        )
        known = server.tool_ids.get(tool["name"])
        require(
            known in (None, tool["id"]), f"{what}: tool {tool['name']} id {tool['id']} != {known}"
        )
    server.tool_ids = {tool["name"]: tool["id"] for tool in tools}


async def audit_mcp(client: McpOperations) -> None:
    """Every acknowledged server is there with its tools (a deleted one is gone), and every
    agent's acknowledged MCP tools are attached."""
    for server in list(client.model.mcp_servers.values()):
        url = f"/v1/mcp-servers/{server.id}"
        outcome = await client.send("audit_mcp_server", "GET", url)
        if not acknowledged(outcome, "audit MCP server", 200, 404):
            continue
        exists = outcome.status == 200
        require(
            server.exists.allows(exists),
            f"MCP server {server.id}: exists={exists}, model {server.exists}",
        )
        if exists:
            require(outcome.body["server_name"] == server.name, f"audit: {outcome.body}")
            await client.list_mcp_tools(server)
    for agent in client.model.agents.values():
        if not (agent.exists.certain and agent.exists.value):
            continue
        if not any(agent.mcp_tools.candidates()):
            continue  # never given MCP tools (kept cheap: most agents)
        url = f"/v1/agents/{agent.id}/tools"
        outcome = await client.send("audit_agent_tools", "GET", url, params=AGENT_TOOLS_PAGE)
        if not acknowledged(outcome, "audit agent tools", 200):
            continue
        names = tuple(sorted(t["name"] for t in outcome.body if t["tool_type"] == "external_mcp"))
        require(
            agent.mcp_tools.allows(names),
            f"agent {agent.id}: MCP tools {names}, model {agent.mcp_tools}",
        )
