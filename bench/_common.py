"""Pieces the HTTP benchmarks share: nearest-rank percentiles, child processes in their
own process groups (the fake LLM, Kelpie servers), RSS of a process tree, a lean
keep-alive HTTP client for timed loops, and the results table.

Imported by bench_api.py and bench_messages.py, which run as scripts (`python
bench/bench_api.py`), so this module is found next to them on sys.path.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_FAKE_LLM = REPO_ROOT / "tests" / "fakes" / "llm_server.py"

HOST = "127.0.0.1"
MODEL = "openai/gpt-4o-mini"
HEALTH_POLL_S = 0.005
MIB = 1024 * 1024

# Runs the shared fake with TCP_NODELAY on its connections. The fake writes a reply's
# headers and body in two send() calls; on a keep-alive connection Nagle's algorithm then
# holds the body back until the client's delayed ACK (~40 ms on Linux), so every model
# call would cost ~40 ms that no real provider charges. The fake itself is not modified.
_NODELAY_LAUNCHER = """\
import importlib.util, sys
spec = importlib.util.spec_from_file_location("kelpie_fake_llm", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.FakeLLMRequestHandler.disable_nagle_algorithm = True
sys.exit(module.main(sys.argv[2:]))
"""


class BenchError(Exception):
    """The benchmark cannot go on (server died, bad response, timeout)."""


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], p: int) -> float:
    """Nearest-rank percentile of already sorted values.

    The p-th percentile (0 < p <= 100) of n values is the value at 1-based rank
    ceil(p * n / 100): the smallest value such that at least p% of the values are
    less than or equal to it. Computed in integers so that 99 * 2000 / 100 is exactly
    rank 1980, not 1981 through float rounding.
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} out of (0, 100]")
    n = len(sorted_values)
    rank = -(-p * n // 100)  # ceil(p * n / 100)
    return sorted_values[max(rank, 1) - 1]


@dataclass
class Latencies:
    """Per-request latencies in seconds."""

    samples: list[float] = field(default_factory=list)

    def summary_ms(self) -> dict[str, float]:
        ordered = sorted(self.samples)
        return {
            "n": len(ordered),
            "p50_ms": percentile(ordered, 50) * 1000,
            "p99_ms": percentile(ordered, 99) * 1000,
            "max_ms": ordered[-1] * 1000,
            "mean_ms": statistics.fmean(ordered) * 1000,
        }


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A child process in its own session, output going to a log file.

    stop() signals the whole process group, so anything the child spawned goes too.
    """

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        try:
            self.popen = subprocess.Popen(
                self.args,
                env=dict(env),
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace_s: float = 5.0) -> None:
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=grace_s)
        # Children that outlived the leader (same process group) go as well.
        self._signal_group(signal.SIGKILL)
        self._log.close()


def process_tree_rss_mib(pid: int) -> float:
    """RSS of the process and all its descendants, in MiB."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += int(proc.memory_info().rss)
    return total / MIB


def http_client(base_url: str, timeout: float = 30.0) -> httpx.Client:
    # trust_env=False: an HTTP(S)_PROXY in the environment must not route 127.0.0.1.
    return httpx.Client(base_url=base_url, timeout=timeout, trust_env=False)


class LeanClient:
    """A keep-alive HTTP/1.1 client on the standard library's http.client, for the timed
    loops. httpx spends ~0.7 ms of CPU per request on this 2-core machine, CPU the server
    then lacks; this client spends ~0.1 ms, so the figures are the server's own."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        assert parts.hostname is not None, base_url
        assert parts.port is not None, base_url
        self._connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def __enter__(self) -> LeanClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._connection.close()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if payload is not None else {}
        try:
            self._connection.request(method, path, payload, headers)
            response = self._connection.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the kept-alive connection while it sat idle (past its
            # keep-alive time, as when a loaded machine makes other servers' blocks long):
            # the request never reached it, so it is sent again on a fresh connection.
            self._connection.close()
            self._connection.request(method, path, payload, headers)
            response = self._connection.getresponse()
        return response.status, response.read()


def lean_json(status: int, raw: bytes, what: str) -> Any:
    if status != 200:
        raise BenchError(f"{what} -> {status}: {raw[:500]!r}")
    return json.loads(raw)


def start_fake_llm(
    workdir: Path, timeout_s: float = 20.0, *, nodelay: bool = False
) -> tuple[Process, str]:
    """Start the fake OpenAI server; returns it and its base URL (ending in /v1).

    With `nodelay`, its connections set TCP_NODELAY (see _NODELAY_LAUNCHER), so a model
    call costs what the fake spends on it (~1 ms) rather than a delayed-ACK stall."""
    script = SHARED_FAKE_LLM
    port = free_port()
    launcher = ["-c", _NODELAY_LAUNCHER] if nodelay else []
    proc = Process(
        [sys.executable, *launcher, str(script), "--port", str(port)],
        os.environ,
        workdir / "fake_llm.log",
    )
    base_url = f"http://{HOST}:{port}/v1"
    deadline = time.perf_counter() + timeout_s
    with http_client(base_url, timeout=2.0) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if client.get("/models").status_code == 200:
                    return proc, base_url
            if proc.exited() is not None:
                raise BenchError(
                    f"fake LLM server {script} exited with {proc.exited()}:\n{proc.log_tail()}"
                )
            if time.perf_counter() > deadline:
                raise BenchError(f"fake LLM server {script} not ready after {timeout_s} s")
            time.sleep(0.02)


@dataclass
class Server:
    process: Process
    base_url: str
    startup_s: float


def start_server(
    data_dir: Path,
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float,
    *,
    launcher: Sequence[str] = ("-m", "kelpie"),
) -> Server:
    """Spawn `python -m kelpie serve` (or `python <launcher> serve`) and time spawn -> first
    200 from GET /v1/health."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    args = [
        sys.executable,
        *launcher,
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
    ]
    # The client exists before the clock starts: building one is not the server's time.
    with http_client(base_url, timeout=2.0) as client:
        started = time.perf_counter()
        proc = Process(args, env, log_path)
        try:
            deadline = started + timeout_s
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/v1/health").status_code == 200:
                        return Server(proc, base_url, time.perf_counter() - started)
                code = proc.exited()
                if code is not None:
                    raise BenchError(
                        f"server exited with {code} before it was healthy:\n"
                        f"$ {' '.join(args)}\n{proc.log_tail()}"
                    )
                if time.perf_counter() > deadline:
                    raise BenchError(f"server not healthy after {timeout_s} s:\n{proc.log_tail()}")
                time.sleep(HEALTH_POLL_S)
        except BaseException:
            proc.stop()
            raise


# --------------------------------------------------------------------------- requests


def agent_body(i: int) -> dict[str, Any]:
    return {
        "name": f"bench-{i}",
        "model": MODEL,
        "memory_blocks": [
            {"label": "human", "value": f"The human is benchmark user number {i}."},
            {"label": "persona", "value": "I am a helpful assistant used for benchmarking."},
        ],
        "tags": ["bench"],
    }


def expect(response: httpx.Response, *statuses: int) -> None:
    if response.status_code not in statuses:
        request = response.request
        raise BenchError(
            f"{request.method} {request.url} -> {response.status_code}: {response.text[:500]}"
        )


def agent_id_of(response: httpx.Response) -> str:
    expect(response, 200, 201)
    payload = response.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise BenchError(f"agent create returned no id: {response.text[:500]}")
    agent_id: str = payload["id"]
    return agent_id


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str = "-"
    passed: bool | None = None  # None: reported, no target
    letta: str = "-"

    @property
    def status(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "MISS")

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 4),
            "unit": self.unit,
            "target": None if self.target == "-" else self.target,
            "status": self.status,
            "letta_0_16_8": None if self.letta == "-" else self.letta,
        }


def format_value(value: float, unit: str) -> str:
    if unit in ("ms", "s"):
        return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:,.1f} {unit}"


def print_table(rows: Sequence[Row]) -> None:
    header = ("Benchmark", "Result", "Target", "Status", "Letta 0.16.8")
    cells = [header] + [
        (r.name, format_value(r.value, r.unit), r.target, r.status, r.letta) for r in rows
    ]
    widths = [max(len(row[c]) for row in cells) for c in range(len(header))]

    def line(row: Sequence[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        return "  ".join(padded).rstrip()

    print()
    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in cells[1:]:
        print(line(row))
    print()


# --------------------------------------------------------------------------- main


def raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    print(f"- {title} ...", end=" ", flush=True)
    started = time.perf_counter()
    yield
    print(f"done in {time.perf_counter() - started:.1f} s", flush=True)


def write_results(
    path: Path, config: Mapping[str, Any], rows: Sequence[Row], details: Mapping[str, Any]
) -> None:
    """The `--json` file every benchmark writes: its config, the machine, the table rows
    and the raw figures."""
    payload = {
        "config": {**config, "percentile_method": "nearest-rank"},
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rows": [row.as_json() for row in rows],
        "details": details,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"Wrote {path}")
