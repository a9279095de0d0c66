"""The wheel works outside the checkout: build it from this tree, install it in a fresh
venv and run it there. Quick (~10 s), and offline once pip's cache holds the build backend
(setuptools): the fresh venv gets the wheel alone (`--no-deps`) and finds its dependencies
in the project's .venv through a path file, which puts that site-packages on `sys.path`
without running its .pth files (so the checkout's editable install is not seen). What it
checks is the wheel itself: the package's files (migrations, the sandbox worker), the
`kelpie` entry point, start-up, a message round trip (the tests' fake OpenAI server) and
the simulator. The dependencies' resolution from PyPI is not checked here."""

import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Final

import httpx
import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
STEP_TIMEOUT_S: Final = 120
READY_TIMEOUT_S: Final = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _wait_for_health(process: "subprocess.Popen[bytes]", url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited:\n{log.read_text()}"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no health answer in {READY_TIMEOUT_S} s:\n{log.read_text()}")


def _run(argv: list[str], **kwargs: object) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return str(done.stdout)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel built from this checkout installed."""
    root = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
          "--wheel-dir", str(root / "dist"), str(ROOT)])  # fmt: skip
    [wheel] = (root / "dist").glob("kelpie-*.whl")
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-deps", "--no-index", str(wheel)])  # fmt: skip
    site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    deps = sysconfig.get_path("purelib")  # the project's .venv: the wheel's dependencies
    (Path(site.strip()) / "kelpie-smoke-deps.pth").write_text(deps + "\n")
    return venv


def test_installed_wheel_is_the_one_imported(wheel_venv: Path) -> None:
    code = (
        "import json, kelpie, kelpie.storage._migrations as m;"
        "from kelpie.memory import LocalEmbedder;"
        "print(json.dumps("
        "[kelpie.__file__, len(m.migration_ids()), LocalEmbedder.missing_piece()]))"
    )
    where, migrations, missing = json.loads(_run([str(wheel_venv / "bin" / "python"), "-c", code]))
    assert Path(where).is_relative_to(wheel_venv), f"imported from {where}, not the wheel"
    assert migrations == len(list((ROOT / "src/kelpie/storage/migrations/sqlite").glob("*.sql")))
    assert missing is None, "the local embedder's files are installed"


def test_simulator_runs_from_the_wheel(wheel_venv: Path) -> None:
    output = _run([str(wheel_venv / "bin" / "python"), "-m", "kelpie.sim", "--seed", "1",
                   "--steps", "20"], cwd=wheel_venv)  # fmt: skip
    assert "trace_hash=" in output


def test_serve_from_the_wheel_answers_a_message(
    wheel_venv: Path, llm_server: str, tmp_path: Path
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [str(wheel_venv / "bin" / "kelpie"), "serve", "--port", str(port)]
    argv += ["--data-dir", str(tmp_path / "data")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KELPIE_", "LETTA_"))}
    env |= {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm_server}
    env |= {"KELPIE_CODE_SESSIONS": "0", "KELPIE_SANDBOX_POOL_SIZE": "0"}
    env.pop("PYTHONPATH", None)
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_for_health(server, f"{base}/v1/health", log)
        with httpx.Client(base_url=base, timeout=60.0) as http:
            agent = http.post("/v1/agents/", json={"model": "openai/gpt-4o-mini"})
            assert agent.status_code == 200, f"{agent.text}\n{log.read_text()}"
            reply = http.post(
                f"/v1/agents/{agent.json()['id']}/messages",
                json={"messages": [{"role": "user", "content": "hello"}]},
            )
            assert reply.status_code == 200, f"{reply.text}\n{log.read_text()}"
            kinds = [m["message_type"] for m in reply.json()["messages"]]
            assert "assistant_message" in kinds, kinds
    finally:
        server.terminate()
        # The server ends by the signal it was sent, once it has closed everything.
        assert server.wait(timeout=STEP_TIMEOUT_S) == -signal.SIGTERM, log.read_text()
    assert os.path.isfile(tmp_path / "data" / "kelpie.db")
