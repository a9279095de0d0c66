"""The production wiring of stdio MCP servers (`open_env`): confined by the sandbox unless
the operator opts out (KELPIE_MCP_STDIO_UNCONFINED), a host that cannot confine refusing
them (a 400 when one is registered, an error result when a registered one is called), and
granted paths bounded by KELPIE_MCP_STDIO_PATHS. Real servers (`mcp-server-time`, PyPI),
real processes, the real app over an ASGI transport."""

import asyncio
import dataclasses
import os
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import httpx
import psutil
import pytest

from kelpie.api import create_app
from kelpie.cli._env import open_env, open_mcp
from kelpie.env import Config, Env
from kelpie.mcp import McpServerSpec
from kelpie.memory import HASHING_MODEL
from kelpie.sandbox import ProcessSandbox
from kelpie.service import prepare

TIME_SERVER: Final = str(Path(sys.executable).parent / "mcp-server-time")
MARK_VARIABLE: Final = "KELPIE_TEST_MCP_MARK"


def config_for(data_dir: Path, **fields: Any) -> Config:
    return Config(data_dir=data_dir, embedding_model=HASHING_MODEL, sandbox_pool_size=0, **fields)


def run_env(env: Env, scenario: Callable[[Env], Awaitable[None]]) -> None:
    async def main() -> None:
        await prepare(env)
        try:
            await scenario(env)
        finally:
            await env.mcp.close()
            await env.sandbox.close()
            await env.store.close()

    asyncio.run(main())


def time_spec(mark: str) -> McpServerSpec:
    return McpServerSpec(
        key=mark,
        name="time",
        transport="stdio",
        command=TIME_SERVER,
        args=("--local-timezone", "UTC"),
        env={MARK_VARIABLE: mark},
    )


def marked(mark: str) -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.environ().get(MARK_VARIABLE) == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def letta_stdio_body(name: str, **config: Any) -> dict[str, Any]:
    return {
        "server_name": name,
        "config": {"mcp_server_type": "stdio", "command": TIME_SERVER, "args": [], **config},
    }


class TestWiring:
    def test_by_default_stdio_servers_run_confined(self, tmp_path: Path) -> None:
        mark = f"time-{secrets.token_hex(4)}"

        async def scenario(env: Env) -> None:
            tools = await env.mcp.list_tools(time_spec(mark))
            [server] = marked(mark)

            assert "get_current_time" in {tool.name for tool in tools}
            assert server.uids().real != 0
            assert os.readlink(f"/proc/{server.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")

        run_env(open_env(config_for(tmp_path / "data")), scenario)

    def test_opting_out_runs_them_unconfined(self, tmp_path: Path) -> None:
        mark = f"time-{secrets.token_hex(4)}"

        async def scenario(env: Env) -> None:
            await env.mcp.list_tools(time_spec(mark))
            [server] = marked(mark)

            assert server.uids().real == os.getuid()
            assert os.readlink(f"/proc/{server.pid}/ns/pid") == os.readlink("/proc/self/ns/pid")

        config = config_for(tmp_path / "data", mcp_stdio_unconfined=True)
        run_env(open_env(config), scenario)

    def test_the_settings_come_from_the_environment(self) -> None:
        config = Config.from_environ(
            {"KELPIE_MCP_STDIO_UNCONFINED": "yes", "KELPIE_MCP_STDIO_PATHS": "/srv/a:/srv/b"}
        )
        default = Config.from_environ({})

        assert config.mcp_stdio_unconfined
        assert config.mcp_stdio_paths == (Path("/srv/a"), Path("/srv/b"))
        assert not default.mcp_stdio_unconfined
        assert default.mcp_stdio_paths == ()
        with pytest.raises(ValueError, match="KELPIE_MCP_STDIO_UNCONFINED"):
            Config.from_environ({"KELPIE_MCP_STDIO_UNCONFINED": "maybe"})


def _unconfinable(config: Config, tmp_path: Path) -> Env:
    """The production Env, but on a host whose sandbox cannot start (no bubblewrap)."""
    sandbox = ProcessSandbox(
        root_dir=config.data_dir / "sandbox", pool_size=0, bwrap_path=tmp_path / "no-bwrap"
    )
    return dataclasses.replace(open_env(config), sandbox=sandbox, mcp=open_mcp(config, sandbox))


async def _post(env: Env, path: str, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=create_app(env))
    async with httpx.AsyncClient(transport=transport, base_url="http://kelpie") as http:
        return await http.post(path, json=body)


class TestRefusals:
    def test_registering_a_stdio_server_on_a_host_that_cannot_confine_is_a_400(
        self, tmp_path: Path
    ) -> None:
        config = config_for(tmp_path / "data")

        async def scenario(env: Env) -> None:
            response = await _post(env, "/v1/mcp-servers/", letta_stdio_body("time"))

            assert response.status_code == 400, response.text
            assert "it cannot run confined" in response.text
            assert "bubblewrap" in response.text
            assert "KELPIE_MCP_STDIO_UNCONFINED=1" in response.text
            assert await env.store.list_mcp_servers() == []

        run_env(_unconfinable(config, tmp_path), scenario)

    def test_calling_a_registered_server_on_a_host_that_cannot_confine_is_an_error(
        self, tmp_path: Path
    ) -> None:
        data_dir = tmp_path / "data"
        registered: list[str] = []

        async def register(env: Env) -> None:
            response = await _post(env, "/v1/mcp-servers/", letta_stdio_body("time"))
            assert response.status_code == 200, response.text
            registered.append(response.json()["id"])

        async def call(env: Env) -> None:
            [tool] = [
                t
                for t in await env.store.mcp_server_tools(registered[0])
                if t.name == "get_current_time"
            ]
            path = f"/v1/mcp-servers/{registered[0]}/tools/{tool.id}/run"
            response = await _post(env, path, {"args": {"timezone": "UTC"}})

            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["status"] == "error"
            assert "it cannot run confined" in answer["func_return"]
            assert "bubblewrap" in answer["func_return"]

        run_env(open_env(config_for(data_dir)), register)
        run_env(_unconfinable(config_for(data_dir), tmp_path), call)

    def test_a_granted_path_must_lie_in_an_allowed_directory(self, tmp_path: Path) -> None:
        allowed = tmp_path / "allowed"
        (allowed / "inside").mkdir(parents=True)
        outside = tmp_path / "outside"
        outside.mkdir()
        config = config_for(tmp_path / "data", mcp_stdio_paths=(allowed,))

        async def scenario(env: Env) -> None:
            refused = await _post(
                env,
                "/v1/mcp-servers/",
                letta_stdio_body("refused", sandbox={"read_only_paths": [str(outside)]}),
            )
            granted = await _post(
                env,
                "/v1/mcp-servers/",
                letta_stdio_body(
                    "granted",
                    sandbox={"read_write_paths": [str(allowed / "inside")], "network": True},
                ),
            )

            assert refused.status_code == 400, refused.text
            assert "KELPIE_MCP_STDIO_PATHS" in refused.text
            assert str(outside) in refused.text
            assert granted.status_code == 200, granted.text
            assert granted.json()["sandbox"] == {
                "network": True,
                "read_only_paths": [],
                "read_write_paths": [str(allowed / "inside")],
            }

        run_env(open_env(config), scenario)
