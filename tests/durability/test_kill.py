"""The kill test: SIGKILL a real Kelpie server mid-turn, hundreds of times, and check that
what it acknowledged survived and that nothing half-done is left behind.

Set-up: the tests' fake OpenAI server (with TCP_NODELAY, so a model call takes ~1 ms
instead of a delayed-ACK stall), a `python -m kelpie serve` process on one data dir, and
four agents, two `letta_v1_agent` and two `memgpt_agent`, each with a `human` block.

Each cycle a client thread sends message turns one after another, each to a seeded-random
agent, half of them plain replies and half a memory edit that appends a unique token to
the `human` block (`memory_insert` or `core_memory_append`) followed by a reply; the fake
is scripted per turn. The main thread SIGKILLs the server a seeded-random 0-60 ms after
the start of a seeded-random one of the cycle's first sends, then restarts it on the same
data dir and checks, through the official SDK:

(a) every acknowledged turn (its HTTP response was read) is fully there: its user message
    and its reply in `agents.messages.list`, its token in the block, its run completed;
(b) no run is `running` or `created` once the restarted server answers; runs of killed
    turns are `failed` (or `completed`, when the turn finished before the kill);
(c) the block is exactly the fold of the committed edits: its initial value plus, in send
    order, the tokens of the memory tool calls found in the history, each once. A token
    without its tool call, a tool call without its return, a duplicated user message,
    token or reply all fail the test (a step commits in one transaction);
(d) the server starts every time.

Restarts: most are forked from a pre-imported interpreter running exactly what `python -m
kelpie serve` runs (see `_zygote.py`); that skips ~2 s of imports per restart. The first
start and every COLD_EVERY-th restart spawn `python -m kelpie serve` from scratch.

Replay: the seed is printed (run with `-s` or `-rP` to see the report); `KILL_SEED=<seed>`
replays the same random choices (the timing of a kill against the server is never exactly
reproducible). `KILL_COUNT=<n>` changes the number of kills (200 by default; 50 on
PostgreSQL, where the server runs on a fresh database of the tests' PostgreSQL).
"""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import pytest
from letta_client import Letta
from letta_client.pagination import SyncArrayPage
from letta_client.types import AgentType

from kelpie.storage._pgserver import LocalPostgres

HERE: Final = Path(__file__).resolve().parent
FAKE_LLM_SCRIPT: Final = HERE.parent / "fakes" / "llm_server.py"
ZYGOTE_SCRIPT: Final = HERE / "_zygote.py"
HOST: Final = "127.0.0.1"
MODEL: Final = "openai/gpt-4o-mini"
CLIENT_API_KEY: Final = "sk-kelpie-test"

KILLS_DEFAULT: Final = 200
# On PostgreSQL the suite kills fewer times (a cycle there takes ~1.5 s on this machine);
# `KILL_COUNT=200` runs the full count on both backends.
KILLS_DEFAULT_POSTGRES: Final = 50
COLD_EVERY: Final = 20  # every 20th restart is a cold `python -m kelpie serve`
KILL_DELAY_MAX_S: Final = 0.060
# The kill is timed from the start of one of the cycle's first sends (0-based index).
KILL_AFTER_SEND_MAX: Final = 2
MEMORY_TURN_SHARE: Final = 0.5
AGENT_TYPES: Final[tuple[AgentType, ...]] = (
    "letta_v1_agent",
    "memgpt_agent",
    "letta_v1_agent",
    "memgpt_agent",
)
BLOCK_LABEL: Final = "human"

START_TIMEOUT_S: Final = 30.0
HEALTH_POLL_S: Final = 0.005
TURN_TIMEOUT_S: Final = 30.0
EXIT_TIMEOUT_S: Final = 10.0
LOG_TAIL_CHARS: Final = 6_000
PAGE_LIMIT: Final = 1000

# Launches the shared fake with TCP_NODELAY on its connections: it writes a reply's
# headers and body in two send() calls, and on a keep-alive connection Nagle's algorithm
# would hold the body until the client's delayed ACK (~40 ms a model call).
NODELAY_LAUNCHER: Final = """\
import importlib.util, sys
spec = importlib.util.spec_from_file_location("kelpie_fake_llm", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.FakeLLMRequestHandler.disable_nagle_algorithm = True
sys.exit(module.main(sys.argv[2:]))
"""

USER_TEXT = re.compile(r"turn-(\d+)")
REPLY_TEXT = re.compile(r"reply-(\d+)")
MEMORY_TOOLS: Final = {"letta_v1_agent": "memory_insert", "memgpt_agent": "core_memory_append"}
TurnKind = Literal["plain", "memory"]
TurnState = Literal["sending", "acked", "unacked"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def log_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-LOG_TAIL_CHARS:]


def wait_healthy(
    port: int, alive: Callable[[], bool], log: Path, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Polls GET /v1/health until 200; fails with the log tail if the server exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not alive():
            pytest.fail(f"the server exited during start-up\n{log_tail(log)}", pytrace=False)
        connection = http.client.HTTPConnection(HOST, port, timeout=1.0)
        try:
            connection.request("GET", "/v1/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            pytest.fail(
                f"the server did not start in {timeout_s} s\n{log_tail(log)}", pytrace=False
            )
        time.sleep(HEALTH_POLL_S)


# --------------------------------------------------------------------------- processes


class FakeLlm:
    """The tests' fake OpenAI server; `script` replaces its queue of answers."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self._log = log.open("ab")
        launcher = [sys.executable, "-c", NODELAY_LAUNCHER, str(FAKE_LLM_SCRIPT)]
        self.process = subprocess.Popen(
            [*launcher, "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lock = threading.Lock()
        self._connection = http.client.HTTPConnection(HOST, self.port, timeout=10.0)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self._call("GET", "/v1/models")
                return
            except OSError:
                self._connection.close()
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the fake LLM did not start\n{log_tail(log)}", pytrace=False)
                time.sleep(0.02)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        payload = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if payload is not None else {}
        self._connection.request(method, path, payload, headers)
        response = self._connection.getresponse()
        raw = response.read()
        assert response.status == 200, f"fake LLM {method} {path} -> {response.status}: {raw!r}"
        return json.loads(raw)

    def script(self, entries: list[dict[str, Any]]) -> None:
        """Drops whatever a killed turn left queued, then queues `entries`."""
        with self._lock:
            self._call("DELETE", "/_script")
            self._call("POST", "/_script", entries)

    def stop(self) -> None:
        self._connection.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Zygote:
    """`_zygote.py`: forks `python -m kelpie serve` children from a pre-imported Python."""

    def __init__(self, log: Path) -> None:
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        self._lock = threading.Lock()
        ready = self._read()
        assert ready == {"ready": True}, ready

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the zygote exited\n{log_tail(Path(self._log.name))}", pytrace=False)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            return self._read()

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log: Path) -> int:
        answer = self._call({"op": "spawn", "argv": list(argv), "env": dict(env), "log": str(log)})
        pid: int = answer["pid"]
        return pid

    def wait(self, pid: int, timeout_s: float) -> int | None:
        returncode: int | None = self._call({"op": "wait", "pid": pid, "timeout_s": timeout_s})[
            "returncode"
        ]
        return returncode

    def stop(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()  # EOF: it kills and reaps its children, then exits
        try:
            self.process.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process.stdout.close()
        self._log.close()


class ServerProcess:
    """One incarnation of the server: a cold `python -m kelpie serve` child of this
    process, or a child forked by the zygote."""

    def __init__(
        self, *, zygote: Zygote | None, argv: Sequence[str], env: Mapping[str, str], log: Path
    ) -> None:
        self.cold = zygote is None
        self._zygote = zygote
        self._popen: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None
        if zygote is not None:
            self.pid = zygote.spawn(argv, env, log)
        else:
            with log.open("ab") as out:
                self._popen = subprocess.Popen(
                    [sys.executable, "-m", "kelpie", *argv],
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.pid = self._popen.pid

    def poll(self) -> int | None:
        if self._returncode is None:
            if self._popen is not None:
                self._returncode = self._popen.poll()
            else:
                assert self._zygote is not None
                self._returncode = self._zygote.wait(self.pid, 0.0)
        return self._returncode

    def alive(self) -> bool:
        return self.poll() is None

    def kill(self) -> int:
        """SIGKILL, then wait for the exit; returns the return code (-9 unless it had
        already exited by itself)."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self._popen is not None:
                self._returncode = self._popen.wait(timeout=EXIT_TIMEOUT_S)
            else:
                assert self._zygote is not None
                self._returncode = self._zygote.wait(self.pid, EXIT_TIMEOUT_S)
        assert self._returncode is not None, f"server {self.pid} outlived SIGKILL"
        # Anything it started goes too (it leads its own process group).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self._returncode


# --------------------------------------------------------------------------- the model


@dataclasses.dataclass
class Turn:
    n: int
    agent: AgentModel
    kind: TurnKind
    token: str | None
    state: TurnState = "sending"
    response: dict[str, Any] | None = None

    @property
    def user_text(self) -> str:
        return f"turn-{self.n}"

    @property
    def reply_text(self) -> str:
        return f"reply-{self.n}"

    def script(self) -> list[dict[str, Any]]:
        """The model's answers for this turn: [memory edit,] reply."""
        entries: list[dict[str, Any]] = []
        memgpt = self.agent.agent_type == "memgpt_agent"
        if self.token is not None:
            arguments: dict[str, Any] = (
                {"label": BLOCK_LABEL, "content": self.token, "request_heartbeat": True}
                if memgpt
                else {"label": BLOCK_LABEL, "new_string": self.token}
            )
            entries.append({"tool_calls": [self._call(self.agent.memory_tool, arguments)]})
        if memgpt:
            send = {"message": self.reply_text, "request_heartbeat": False}
            entries.append({"tool_calls": [self._call("send_message", send, suffix="-send")]})
        else:
            entries.append({"content": self.reply_text})
        return entries

    def _call(self, name: str, arguments: dict[str, Any], suffix: str = "") -> dict[str, Any]:
        return {"id": f"call-{self.n}{suffix}", "name": name, "arguments": json.dumps(arguments)}


@dataclasses.dataclass
class AgentModel:
    """What the test knows of one agent, and what it has seen of its stored history."""

    id: str
    agent_type: str
    initial_value: str
    turns: dict[int, Turn] = dataclasses.field(default_factory=dict)
    # From the stored history, read incrementally (order=asc, after=cursor).
    message_cursor: str | None = None
    run_cursor: str | None = None
    users: dict[int, str] = dataclasses.field(default_factory=dict)  # turn -> run id
    replies: set[int] = dataclasses.field(default_factory=set)
    tokens: list[str] = dataclasses.field(default_factory=list)  # committed edits, in order
    open_calls: dict[str, str] = dataclasses.field(default_factory=dict)  # call id -> token
    runs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def memory_tool(self) -> str:
        return MEMORY_TOOLS[self.agent_type]

    def token_turn(self, token: str) -> int:
        return int(token.removeprefix("tok-"))

    def expected_block(self) -> str:
        return self.initial_value + "".join(f"\n{token}" for token in self.tokens)

    def fresh(self) -> AgentModel:
        """The same agent and turns, nothing seen of the history yet (for the final audit)."""
        return AgentModel(self.id, self.agent_type, self.initial_value, self.turns)


def all_items(page: SyncArrayPage[Any]) -> list[dict[str, Any]]:
    """Every item from `page` on, as dicts; asks for a next page only after a full one
    (the SDK's own iteration always ends on an extra, empty page)."""
    items = [item.model_dump() for item in page.items]
    while len(page.items) == PAGE_LIMIT:
        page = page.get_next_page()
        items += [item.model_dump() for item in page.items]
    return items


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def absorb_messages(agent: AgentModel, messages: Sequence[dict[str, Any]], where: str) -> None:
    """Folds newly stored messages into the model, failing on anything impossible."""
    for message in messages:
        kind = message.get("message_type")
        context = f"{where}: agent {agent.id} message {message.get('id')} ({kind})"
        if kind == "user_message":
            match = USER_TEXT.fullmatch(text_of(message.get("content")))
            if match is None:
                continue  # not one of ours (e.g. a hidden heartbeat, should it be listed)
            n = int(match.group(1))
            assert n in agent.turns, f"{context}: user message of a turn never sent to it"
            assert n not in agent.users, f"{context}: user message of turn {n} stored twice"
            agent.users[n] = str(message.get("run_id"))
        elif kind == "assistant_message":
            match = REPLY_TEXT.fullmatch(text_of(message.get("content")))
            assert match is not None, f"{context}: unexpected reply {message.get('content')!r}"
            n = int(match.group(1))
            assert n in agent.users, f"{context}: reply of turn {n} without its user message"
            assert n not in agent.replies, f"{context}: reply of turn {n} stored twice"
            agent.replies.add(n)
        elif kind == "tool_call_message":
            call = message.get("tool_call") or {}
            if call.get("name") != agent.memory_tool:
                continue
            arguments = json.loads(call.get("arguments") or "{}")
            token = arguments.get("new_string") or arguments.get("content")
            assert isinstance(token, str), f"{context}: no token in {arguments}"
            n = agent.token_turn(token)
            assert n in agent.users, f"{context}: edit of turn {n} without its user message"
            assert agent.turns[n].token == token, f"{context}: token {token} never sent"
            assert token not in agent.tokens, f"{context}: token {token} committed twice"
            agent.tokens.append(token)
            agent.open_calls[str(call.get("tool_call_id"))] = token
        elif kind == "tool_return_message":
            call_id = str(message.get("tool_call_id"))
            token = agent.open_calls.pop(call_id, None)
            if token is not None:
                assert message.get("status") == "success", f"{context}: edit failed: {message}"
    assert not agent.open_calls, (
        f"{where}: agent {agent.id}: tool calls stored without their returns (a step was"
        f" committed in part): {agent.open_calls}"
    )


def check_agent(agent: AgentModel, block_value: str, where: str) -> None:
    """(a) and (c) for one agent, after its history has been absorbed."""
    sent = [turn.token for turn in agent.turns.values() if turn.token is not None]
    order = {token: index for index, token in enumerate(sent)}
    positions = [order[token] for token in agent.tokens]
    assert positions == sorted(positions), (
        f"{where}: agent {agent.id}: edits committed out of send order: {agent.tokens}"
    )
    assert block_value == agent.expected_block(), (
        f"{where}: agent {agent.id}: the block is not the fold of the committed edits\n"
        f"  block:    {block_value!r}\n  expected: {agent.expected_block()!r}"
    )
    for turn in agent.turns.values():
        if turn.state != "acked":
            continue
        context = f"{where}: agent {agent.id}: acknowledged turn {turn.n}"
        assert turn.n in agent.users, f"{context}: its user message is gone"
        assert turn.n in agent.replies, f"{context}: its reply is gone"
        if turn.token is not None:
            assert turn.token in agent.tokens, f"{context}: its edit {turn.token} is gone"
        run_id = agent.users[turn.n]
        assert run_id in agent.runs, f"{context}: its run {run_id} is gone"
        status = agent.runs[run_id]["status"]
        assert status == "completed", f"{context}: its run {run_id} is {status}"
    for run_id, run in agent.runs.items():
        status = run["status"]
        assert status in ("completed", "failed"), f"{where}: run {run_id} is left {status}"
        if status == "failed":
            error = (run.get("metadata") or {}).get("error")
            assert run.get("stop_reason") == "error", f"{where}: run {run_id} failed: {run}"
            assert error, f"{where}: run {run_id} failed without a reason: {run}"
    for n, run_id in agent.users.items():
        if n not in agent.replies and run_id in agent.runs:
            status = agent.runs[run_id]["status"]
            assert status == "failed", f"{where}: turn {n} stopped half-way, its run is {status}"


def check_acked_response(turn: Turn) -> None:
    """The acknowledged answer is the scripted one (else the harness mixed scripts up)."""
    assert turn.response is not None
    items = turn.response.get("messages") or []
    replies = [m.get("content") for m in items if m.get("message_type") == "assistant_message"]
    assert replies == [turn.reply_text], f"turn {turn.n}: unexpected answer {turn.response}"
    if turn.token is not None:
        returns = [
            m
            for m in items
            if m.get("message_type") == "tool_return_message"
            and m.get("tool_call_id") == f"call-{turn.n}"
        ]
        assert len(returns) == 1, f"turn {turn.n}: no memory edit in {turn.response}"
        assert returns[0].get("status") == "success", f"turn {turn.n}: the edit failed: {returns}"


# --------------------------------------------------------------------------- the test


@dataclasses.dataclass
class Tally:
    kills: int = 0
    cold_restarts: int = 0
    forked_restarts: int = 0
    restart_s: list[float] = dataclasses.field(default_factory=list)

    def restart_summary(self) -> str:
        ordered = sorted(self.restart_s)
        if not ordered:
            return "-"
        median = ordered[len(ordered) // 2]
        return f"median {median * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"


class KillHarness:
    def __init__(self, tmp_path: Path, seed: int, db_url: str | None = None) -> None:
        self.seed = seed
        self.db_url = db_url  # PostgreSQL's, else SQLite in the data dir
        self.rng = random.Random(seed)  # kill timing and cold/forked choices
        self.turn_rng = random.Random(seed ^ 0x5EED)  # agents and kinds of turns
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir()
        self.log = tmp_path / "kelpie.log"
        self.fake = FakeLlm(tmp_path / "fake_llm.log")
        self.zygote: Zygote | None = None
        self.server: ServerProcess | None = None
        self.port = 0
        self.agents: list[AgentModel] = []
        self.turns: list[Turn] = []
        self.counter = itertools.count(1)
        self.tally = Tally()
        self.env = self._server_env()
        self._sdk = Letta(base_url="http://unused", api_key=CLIENT_API_KEY, max_retries=0)

    def _server_env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("KELPIE_", "LETTA_", "ANTHROPIC_"))
        }
        env.update(
            OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=self.fake.base_url, PYTHONUNBUFFERED="1"
        )
        return env

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, *, cold: bool) -> None:
        self.port = free_port()
        argv = ["serve", "--host", HOST, "--port", str(self.port), "--data-dir", str(self.data_dir)]
        if self.db_url is not None:
            argv += ["--db", self.db_url]
        with self.log.open("a") as log:
            log.write(f"\n=== start ({'cold' if cold else 'forked'}) on port {self.port}\n")
        if not cold and self.zygote is None:
            self.zygote = Zygote(self.log.with_name("zygote.log"))
        started = time.monotonic()
        self.server = ServerProcess(
            zygote=None if cold else self.zygote, argv=argv, env=self.env, log=self.log
        )
        wait_healthy(self.port, self.server.alive, self.log)
        self.tally.restart_s.append(time.monotonic() - started)
        if cold:
            self.tally.cold_restarts += 1
        else:
            self.tally.forked_restarts += 1

    def stop(self) -> None:
        self._sdk.close()
        if self.server is not None:
            self.server.kill()
        if self.zygote is not None:
            self.zygote.stop()
        self.fake.stop()

    def sdk(self) -> Letta:
        """The official SDK, pointed at the running incarnation (one connection pool)."""
        return self._sdk.with_options(base_url=self.base_url, timeout=TURN_TIMEOUT_S)

    def create_agents(self) -> None:
        client = self.sdk()
        for index, agent_type in enumerate(AGENT_TYPES):
            value = f"Human block of kill-test agent {index}."
            agent = client.agents.create(
                name=f"kill-{index}",
                model=MODEL,
                agent_type=agent_type,
                memory_blocks=[
                    {"label": BLOCK_LABEL, "value": value},
                    {"label": "persona", "value": "I answer what I am scripted to."},
                ],
            )
            self.agents.append(AgentModel(agent.id, agent_type, value))

    # Turns ---------------------------------------------------------------------------

    def next_turn(self) -> Turn:
        n = next(self.counter)
        agent = self.turn_rng.choice(self.agents)
        memory = self.turn_rng.random() < MEMORY_TURN_SHARE
        turn = Turn(n, agent, "memory" if memory else "plain", f"tok-{n}" if memory else None)
        agent.turns[n] = turn
        self.turns.append(turn)
        return turn

    def send(self, connection: http.client.HTTPConnection, turn: Turn) -> None:
        """One turn; `acked` only once the whole 200 response has been read."""
        body = json.dumps({"messages": [{"role": "user", "content": turn.user_text}]})
        try:
            connection.request(
                "POST",
                f"/v1/agents/{turn.agent.id}/messages",
                body,
                {"content-type": "application/json"},
            )
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            turn.state = "unacked"
            return
        assert response.status == 200, f"turn {turn.n} -> {response.status}: {raw[:1000]!r}"
        turn.response = json.loads(raw)
        turn.state = "acked"
        check_acked_response(turn)

    def client_loop(
        self, kill_after: int, started: threading.Event, errors: list[BaseException]
    ) -> None:
        """Sends turns until the server dies under one; sets `started` as send
        number `kill_after` begins."""
        connection = http.client.HTTPConnection(HOST, self.port, timeout=TURN_TIMEOUT_S)
        try:
            for index in itertools.count():
                turn = self.next_turn()
                self.fake.script(turn.script())
                if index == kill_after:
                    started.set()
                self.send(connection, turn)
                if turn.state == "unacked":
                    return
        except BaseException as error:
            errors.append(error)
        finally:
            started.set()
            connection.close()

    def cycle(self, number: int, *, cold_next: bool) -> None:
        assert self.server is not None
        # After a cold start the first turn imports the openai SDK (~1 s): let it finish.
        first = 1 if self.server.cold else 0
        kill_after = self.rng.randint(first, KILL_AFTER_SEND_MAX)
        delay = self.rng.uniform(0.0, KILL_DELAY_MAX_S)
        started = threading.Event()
        errors: list[BaseException] = []
        sent_before = len(self.turns)
        client = threading.Thread(
            target=self.client_loop, args=(kill_after, started, errors), daemon=True
        )
        client.start()
        assert started.wait(TURN_TIMEOUT_S * (kill_after + 1)), "the client never got going"
        time.sleep(delay)
        returncode = self.server.kill()
        self.tally.kills += 1
        client.join(TURN_TIMEOUT_S)
        assert not client.is_alive(), "the client thread is stuck after the kill"
        if errors:
            raise errors[0]
        assert returncode == -signal.SIGKILL, (
            f"cycle {number}: the server exited by itself ({returncode}) before the kill\n"
            f"{log_tail(self.log)}"
        )
        touched = {turn.agent.id for turn in self.turns[sent_before:]}
        self.start(cold=cold_next)  # (d)
        where = f"after kill {number} (seed {self.seed})"
        self.check(where, [agent for agent in self.agents if agent.id in touched])

    # Checks --------------------------------------------------------------------------

    def check(self, where: str, agents: Sequence[AgentModel]) -> None:
        """(b) for every agent; (a) and (c) for `agents`, reading what they stored since
        the last check."""
        client = self.sdk()
        for agent in self.agents:
            page = client.runs.list(agent_id=agent.id, statuses=["running", "created"])
            stuck = [run.id for run in page.items]
            assert not stuck, f"{where}: agent {agent.id} has unfinished runs {stuck}"
        for agent in agents:
            messages = all_items(
                client.agents.messages.list(
                    agent.id, order="asc", limit=PAGE_LIMIT, after=agent.message_cursor
                )
            )
            if messages:
                agent.message_cursor = messages[-1]["id"]
            runs = all_items(
                client.runs.list(
                    agent_id=agent.id, order="asc", limit=PAGE_LIMIT, after=agent.run_cursor
                )
            )
            if runs:
                agent.run_cursor = runs[-1]["id"]
            for run in runs:
                assert run["id"] not in agent.runs, f"{where}: run {run['id']} listed twice"
                agent.runs[run["id"]] = run
            absorb_messages(agent, messages, where)
            block = client.agents.blocks.retrieve(BLOCK_LABEL, agent_id=agent.id)
            check_agent(agent, block.value, where)

    def final_audit(self) -> None:
        """Everything again from scratch, then one more turn on every agent."""
        audited = [agent.fresh() for agent in self.agents]
        self.check("final audit", audited)
        for before, after in zip(self.agents, audited, strict=True):
            assert after.tokens == before.tokens, f"agent {before.id}: the audit disagrees"
            assert after.users == before.users, f"agent {before.id}: the audit disagrees"
            assert after.replies == before.replies, f"agent {before.id}: the audit disagrees"
        connection = http.client.HTTPConnection(HOST, self.port, timeout=TURN_TIMEOUT_S)
        try:
            for agent in self.agents:
                n = next(self.counter)
                turn = Turn(n, agent, "memory", f"tok-{n}")
                agent.turns[n] = turn
                self.turns.append(turn)
                self.fake.script(turn.script())
                self.send(connection, turn)
                assert turn.state == "acked", f"agent {agent.id} takes no turn after the kills"
        finally:
            connection.close()
        self.check("after the final turns", self.agents)

    def report(self, elapsed_s: float) -> str:
        acked = [t for t in self.turns if t.state == "acked"]
        unacked = [t for t in self.turns if t.state == "unacked"]
        by_agent = {agent.id: agent for agent in self.agents}

        def outcome(turn: Turn) -> str:
            agent = by_agent[turn.agent.id]
            if turn.n in agent.replies:
                return "complete"
            if turn.n in agent.users:
                return "partial"
            return "absent"

        outcomes = {name: 0 for name in ("complete", "partial", "absent")}
        for turn in unacked:
            outcomes[outcome(turn)] += 1
        runs = [run for agent in self.agents for run in agent.runs.values()]
        failed = [run["id"] for run in runs if run["status"] == "failed"]
        with_messages = {run_id for agent in self.agents for run_id in agent.users.values()}
        failed_empty = sum(1 for run_id in failed if run_id not in with_messages)
        tokens = sum(len(agent.tokens) for agent in self.agents)
        return (
            f"kill test: seed {self.seed} (KILL_SEED={self.seed} replays the choices)\n"
            f"  kills: {self.tally.kills}; restarts: {self.tally.cold_restarts} cold"
            f" (python -m kelpie serve), {self.tally.forked_restarts} forked;"
            f" start-up {self.tally.restart_summary()}\n"
            f"  turns sent: {len(self.turns)}; acknowledged: {len(acked)};"
            f" unacknowledged (in flight at a kill): {len(unacked)}, of which stored"
            f" complete {outcomes['complete']}, partly {outcomes['partial']},"
            f" not at all {outcomes['absent']}\n"
            f"  runs: {len(runs)}, {len(failed)} failed at a restart ({failed_empty} before"
            f" their first step committed); memory edits committed: {tokens} of"
            f" {sum(1 for t in self.turns if t.token is not None)} sent\n"
            f"  wall time: {elapsed_s:.1f} s"
        )


def kill_seed() -> int:
    configured = os.environ.get("KILL_SEED", "").strip()
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


@pytest.fixture(params=["sqlite", "postgres"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KillHarness]:
    """A harness on each backend: SQLite in the data dir, or a fresh PostgreSQL database
    (the server it runs on is not killed, only Kelpie)."""
    db_url = None
    if request.param == "postgres":
        postgres: LocalPostgres = request.getfixturevalue("postgres")
        postgres.drop_database("kelpie_kill")
        db_url = postgres.create_database("kelpie_kill")
    harness = KillHarness(tmp_path, kill_seed(), db_url)
    try:
        yield harness
    finally:
        harness.stop()


@pytest.mark.timeout(900)
def test_acknowledged_turns_survive_sigkill(harness: KillHarness) -> None:
    default = KILLS_DEFAULT if harness.db_url is None else KILLS_DEFAULT_POSTGRES
    kills = int(os.environ.get("KILL_COUNT", "") or default)
    print(f"kill test seed {harness.seed}")  # noqa: T201  (first, in case of a hang)
    started = time.monotonic()
    harness.start(cold=True)
    harness.create_agents()
    harness.check("after set-up", harness.agents)
    for number in range(1, kills + 1):
        harness.cycle(number, cold_next=number % COLD_EVERY == 0)
    harness.final_audit()
    print(harness.report(time.monotonic() - started))  # noqa: T201
    assert harness.tally.kills >= kills
