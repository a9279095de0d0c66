"""MCP servers plug in (letta-api.md §1.9, §3.8), driven through letta-client against a real
MCP server from PyPI (`mcp-server-time`, over stdio): registering connects and stores the
server's tools as `external_mcp` tools tagged `mcp:<name>`; a model calls one and the
result reaches the history; a run route calls one now; a server that cannot start is a 400
that stores nothing; a killed server is reconnected on the next call; refresh keeps agents
that have a whole server in step; deleting a server takes its tools with it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from letta_client import BadRequestError, ConflictError, Letta, NotFoundError

from ._support import ScriptedLlm, calling, new_agent, reply, tool_call, unique

TIME_SERVER = str(Path(sys.executable).parent / "mcp-server-time")
GIT_SERVER = str(Path(sys.executable).parent / "mcp-server-git")
MARK_VARIABLE = "KELPIE_TEST_MCP_MARK"
RECONNECT_POLLS_MAX = 100


@pytest.fixture(scope="module")
def git_repos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this module's git repositories live: the directory its server lets stdio
    servers be granted (KELPIE_MCP_STDIO_PATHS; they run confined)."""
    return tmp_path_factory.mktemp("git-repos")


@pytest.fixture(scope="module")
def kelpie_server(kelpie_launcher: Any, git_repos: Path) -> str:
    return str(kelpie_launcher.start({"KELPIE_MCP_STDIO_PATHS": str(git_repos)}))


@pytest.fixture
def time_server(client: Letta) -> Iterator[tuple[Any, str]]:
    """mcp-server-time registered under a unique name, and its process's mark; deleted
    after the test (tool names are unique server-wide, so two servers cannot both bring
    `get_current_time`)."""
    mark = unique("mark")
    server: Any = client.mcp_servers.create(
        server_name=unique("time"),
        config={
            "mcp_server_type": "stdio",
            "command": TIME_SERVER,
            "args": ["--local-timezone", "UTC"],
            "env": {MARK_VARIABLE: mark},
        },
    )
    yield server, mark
    with contextlib.suppress(NotFoundError):
        client.mcp_servers.delete(server.id)


def _tools(client: Letta, server_id: str) -> dict[str, Any]:
    return {str(tool.name): tool for tool in client.mcp_servers.tools.list(server_id)}


def _processes_marked(mark: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARK_VARIABLE) == mark:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _returns(response: Any) -> list[Any]:
    return [m for m in response.messages if m.message_type == "tool_return_message"]


def _send(client: Letta, agent_id: str) -> Any:
    return client.agents.messages.create(agent_id, messages=[{"role": "user", "content": "Go"}])


class TestRegistering:
    def test_a_server_is_stored_with_its_tools(
        self, client: Letta, time_server: tuple[Any, str]
    ) -> None:
        server, _ = time_server

        assert server.id.startswith("mcp_server-")
        assert server.mcp_server_type == "stdio"
        assert server.command == TIME_SERVER
        assert server.id in [s.id for s in client.mcp_servers.list()]
        assert client.mcp_servers.retrieve(server.id).server_name == server.server_name
        tools = _tools(client, server.id)
        assert set(tools) == {"get_current_time", "convert_time"}
        get_time = tools["get_current_time"]
        assert get_time.tool_type == "external_mcp"
        assert get_time.tags == [f"mcp:{server.server_name}"]
        assert get_time.json_schema["name"] == "get_current_time"
        assert "timezone" in get_time.json_schema["parameters"]["properties"]
        assert client.mcp_servers.tools.retrieve(get_time.id, mcp_server_id=server.id).id == (
            get_time.id
        )
        assert client.tools.retrieve(get_time.id).name == "get_current_time"

    def test_a_server_that_cannot_start_is_a_400_that_stores_nothing(self, client: Letta) -> None:
        name = unique("broken")
        before = [s.id for s in client.mcp_servers.list()]

        with pytest.raises(BadRequestError) as raised:
            client.mcp_servers.create(
                server_name=name,
                config={"mcp_server_type": "stdio", "command": "/no/such/mcp-server", "args": []},
            )

        assert "/no/such/mcp-server" in str(raised.value)
        assert [s.id for s in client.mcp_servers.list()] == before

    def test_an_unreachable_url_is_a_400(self, client: Letta) -> None:
        with pytest.raises(BadRequestError):
            client.mcp_servers.create(
                server_name=unique("remote"),
                config={
                    "mcp_server_type": "streamable_http",
                    "server_url": "http://127.0.0.1:9/mcp",
                },
            )

    def test_a_taken_name_is_a_409(self, client: Letta, time_server: tuple[Any, str]) -> None:
        server, _ = time_server

        with pytest.raises(ConflictError):
            client.mcp_servers.create(
                server_name=server.server_name,
                config={"mcp_server_type": "stdio", "command": TIME_SERVER, "args": []},
            )

    def test_a_bad_config_is_refused_with_a_detail(self, http: httpx.Client) -> None:
        response = http.post(
            "/v1/mcp-servers/",
            json={"server_name": unique("x"), "config": {"mcp_server_type": "carrier-pigeon"}},
        )

        assert response.status_code in (400, 422)
        assert "mcp_server_type" in response.text


class TestCalling:
    def test_the_model_calls_an_mcp_tool_and_the_result_reaches_the_history(
        self, client: Letta, time_server: tuple[Any, str], script: ScriptedLlm
    ) -> None:
        server, _ = time_server
        tool = _tools(client, server.id)["get_current_time"]
        agent = new_agent(client, include_base_tools=False, tool_ids=[tool.id])
        script.enqueue(
            calling(tool_call("get_current_time", {"timezone": "Asia/Tokyo"}, call_id="call_t")),
            reply("It is late in Tokyo."),
        )

        response = _send(client, agent.id)

        [returned] = _returns(response)
        assert returned.status == "success"
        assert returned.tool_call_id == "call_t"
        assert json.loads(returned.tool_return)["timezone"] == "Asia/Tokyo"
        assert response.messages[-1].content == "It is late in Tokyo."
        history = list(client.agents.messages.list(agent.id, order="asc"))
        assert [m.tool_return for m in history if m.message_type == "tool_return_message"] == [
            returned.tool_return
        ]

    def test_code_calls_mcp_tools_like_any_other(
        self, client: Letta, time_server: tuple[Any, str], script: ScriptedLlm
    ) -> None:
        server, _ = time_server
        tool = _tools(client, server.id)["get_current_time"]
        agent = new_agent(
            client, include_base_tools=False, tools=["run_code_with_tools"], tool_ids=[tool.id]
        )
        code = (
            "import json\n"
            "zones = [json.loads(get_current_time(timezone=z))['timezone']"
            " for z in ['Asia/Tokyo', 'Europe/Oslo']]\n"
            "zones"
        )
        script.enqueue(calling(tool_call("run_code_with_tools", {"code": code})), reply("ok"))

        [returned] = _returns(_send(client, agent.id))

        assert returned.status == "success", returned.tool_return
        assert json.loads(returned.tool_return)["func_return"] == ["Asia/Tokyo", "Europe/Oslo"]

    def test_a_tool_error_is_an_error_return_and_the_turn_goes_on(
        self, client: Letta, time_server: tuple[Any, str], script: ScriptedLlm
    ) -> None:
        server, _ = time_server
        tool = _tools(client, server.id)["get_current_time"]
        agent = new_agent(client, include_base_tools=False, tool_ids=[tool.id])
        script.enqueue(
            calling(tool_call("get_current_time", {"timezone": "Nowhere/City"})),
            reply("That zone does not exist."),
        )

        response = _send(client, agent.id)

        [returned] = _returns(response)
        assert returned.status == "error"
        assert "Nowhere/City" in returned.tool_return
        assert response.messages[-1].content == "That zone does not exist."

    def test_run_calls_the_tool_now(self, client: Letta, time_server: tuple[Any, str]) -> None:
        server, _ = time_server
        tool = _tools(client, server.id)["convert_time"]

        result = client.mcp_servers.tools.run(
            tool.id,
            mcp_server_id=server.id,
            args={"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"},
        )

        assert result.status == "success"
        assert json.loads(str(result.func_return))["target"]["datetime"].startswith(
            json.loads(str(result.func_return))["source"]["datetime"][:10]
        )

    def test_the_name_keyed_routes_letta_code_calls(
        self, http: httpx.Client, client: Letta, time_server: tuple[Any, str]
    ) -> None:
        server, _ = time_server

        listed = http.get(f"/v1/tools/mcp/servers/{server.server_name}/tools")
        executed = http.post(
            f"/v1/tools/mcp/servers/{server.server_name}/get_current_time/execute",
            json={"args": {"timezone": "UTC"}},
        )

        assert listed.status_code == 200, listed.text
        assert {t["name"] for t in listed.json()} == {"get_current_time", "convert_time"}
        assert executed.status_code == 200, executed.text
        assert json.loads(executed.json()["func_return"])["timezone"] == "UTC"

    def test_the_connection_is_kept_and_a_killed_server_is_started_again(
        self, client: Letta, time_server: tuple[Any, str]
    ) -> None:
        server, mark = time_server
        tool = _tools(client, server.id)["get_current_time"]

        def call() -> Any:
            return client.mcp_servers.tools.run(
                tool.id, mcp_server_id=server.id, args={"timezone": "UTC"}
            )

        assert call().status == "success"
        assert call().status == "success"
        [first] = _processes_marked(mark)  # one process served both calls (and the listing)
        first.kill()
        first.wait(10)

        # The death is noticed on the next use; the call after a dead connection reconnects.
        results = [call() for _ in range(2)]

        assert results[-1].status == "success", results
        [second] = _processes_marked(mark)
        assert second.pid != first.pid

    def test_the_server_does_not_inherit_the_servers_environment(
        self, client: Letta, time_server: tuple[Any, str]
    ) -> None:
        _, mark = time_server

        [process] = _processes_marked(mark)
        environment = process.environ()

        assert not {k for k in environment if k.endswith("_API_KEY")}, environment
        assert not {k for k in os.environ if k.startswith("KELPIE_")} & set(environment) - {
            MARK_VARIABLE
        }


class TestAgentsAndServers:
    def test_refresh_with_an_agent_attaches_every_tool(
        self, client: Letta, time_server: tuple[Any, str]
    ) -> None:
        server, _ = time_server
        agent = new_agent(client, include_base_tools=False)

        answer: Any = client.mcp_servers.refresh(server.id, agent_id=agent.id)

        assert sorted(answer["tools"]) == ["convert_time", "get_current_time"]
        attached = {t.name for t in client.agents.tools.list(agent.id)}
        assert attached == {"convert_time", "get_current_time"}
        [listed] = _agent_servers(client, agent.id)
        assert listed["id"] == server.id

    def test_an_agent_with_a_whole_server_follows_its_tool_list(
        self, client: Letta, time_server: tuple[Any, str], git_repos: Path
    ) -> None:
        server, _ = time_server
        whole = new_agent(client, include_base_tools=False)
        client.mcp_servers.refresh(server.id, agent_id=whole.id)
        one = new_agent(
            client,
            include_base_tools=False,
            tool_ids=[_tools(client, server.id)["get_current_time"].id],
        )
        repo = _git_repo(git_repos)

        # The same server now runs another program: its tool list changes entirely. (It
        # runs confined: the repository is granted to it, Kelpie's `sandbox` setting.)
        config: Any = {
            "mcp_server_type": "stdio",
            "command": GIT_SERVER,
            "args": ["--repository", repo],
            "sandbox": {"read_write_paths": [repo]},
        }
        client.mcp_servers.update(server.id, config=config)

        git_tools = set(_tools(client, server.id))
        assert "git_status" in git_tools
        assert {t.name for t in client.agents.tools.list(whole.id, limit=100)} == git_tools
        assert list(client.agents.tools.list(one.id)) == []

    def test_deleting_a_server_deletes_its_tools_and_their_links(
        self, client: Letta, time_server: tuple[Any, str]
    ) -> None:
        server, mark = time_server
        tools = _tools(client, server.id)
        agent = new_agent(client, include_base_tools=False, tool_ids=[t.id for t in tools.values()])

        client.mcp_servers.delete(server.id)

        with pytest.raises(NotFoundError):
            client.mcp_servers.retrieve(server.id)
        for tool in tools.values():
            with pytest.raises(NotFoundError):
                client.tools.retrieve(tool.id)
        assert list(client.agents.tools.list(agent.id)) == []
        for _ in range(RECONNECT_POLLS_MAX):
            if not _processes_marked(mark):
                break
            time.sleep(0.05)
        assert not _processes_marked(mark), "the server's process outlived it"


def _agent_servers(client: Letta, agent_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/agents/{agent_id}/mcp-servers", cast_to=object)
    assert isinstance(response, list)
    return response


def _git_repo(parent: Path) -> str:
    import tempfile

    repo = tempfile.mkdtemp(prefix="kelpie-mcp-git-", dir=parent)
    subprocess.run(["git", "init", "-q", repo], check=True)
    return repo


class TestDeclaredInAFile:
    """KELPIE_MCP_SERVERS_FILE: MCP clients' `mcpServers` JSON, registered at start-up."""

    def test_declared_servers_are_registered_once_and_follow_the_file(
        self, kelpie_launcher: Any, tmp_path: Path
    ) -> None:
        servers_file = tmp_path / "mcp.json"
        name = unique("declared")
        declared = {"command": TIME_SERVER, "args": ["--local-timezone", "UTC"]}
        servers_file.write_text(json.dumps({"mcpServers": {name: declared}}))
        base_url = kelpie_launcher.start({"KELPIE_MCP_SERVERS_FILE": str(servers_file)})

        with httpx.Client(base_url=base_url, timeout=30) as http:
            [server] = _poll_servers(http, name)
            tools = http.get(f"/v1/mcp-servers/{server['id']}/tools").json()

        assert server["command"] == TIME_SERVER
        assert server["args"] == ["--local-timezone", "UTC"]
        assert {t["name"] for t in tools} == {"get_current_time", "convert_time"}

    def test_a_file_that_does_not_parse_stops_start_up_saying_why(self, tmp_path: Path) -> None:
        servers_file = tmp_path / "mcp.json"
        servers_file.write_text(json.dumps({"mcpServers": {"x": {"args": []}}}))
        environment = {**os.environ, "KELPIE_MCP_SERVERS_FILE": str(servers_file)}

        finished = subprocess.run(
            [sys.executable, "-m", "kelpie", "serve", "--data-dir", str(tmp_path / "data")],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert finished.returncode != 0
        assert "KELPIE_MCP_SERVERS_FILE" in finished.stderr
        assert "command" in finished.stderr


def _poll_servers(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    for _ in range(RECONNECT_POLLS_MAX):
        found = [s for s in http.get("/v1/mcp-servers/").json() if s["server_name"] == name]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"the declared server {name} was never registered")
