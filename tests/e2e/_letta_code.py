"""The letta-code CLI, installed from npm at a pinned version and run headless.

`scripts/install-letta-code` installs it (with the Node.js 22 it needs) into `.cache/letta-code`
once per machine; later sessions reuse that install. Each `LettaCode` is one user in one
project: its own HOME and working directory, so the CLI's settings (`~/.letta/settings.json`,
`.letta/settings.local.json`, where it remembers the last agent) start empty and carry over
from one run to the next, as they do for a person running `letta` twice in a project.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import pytest

REPO_DIR: Final = Path(__file__).resolve().parents[2]
INSTALLER: Final = REPO_DIR / "scripts" / "install-letta-code"
# A cold install downloads ~180 MB from npm (35 s here); after that it is reused.
INSTALL_TIMEOUT_S: Final = 600.0
# One headless run takes ~1.5 s against a local server and a scripted model.
RUN_TIMEOUT_S: Final = 60.0
OUTPUT_QUOTE_CHARS_MAX: Final = 8_000

# The model the fake LLM serves, as Kelpie lists it. Its provider type (openai) makes
# letta-code offer its codex toolset; `--toolset codex` pins that, whatever the model.
MODEL_HANDLE: Final = "openai/gpt-4o-mini"
SHELL_TOOL: Final = "exec_command"
# The CLI's own traffic stays on this machine: no telemetry, no update check, no keychain.
QUIET_ENV: Final = {
    "DISABLE_AUTOUPDATER": "1",
    "LETTA_CODE_TELEM": "0",
    "DO_NOT_TRACK": "1",
    "LETTA_SKIP_KEYCHAIN_CHECK": "1",
    "TERM": "dumb",
    "NO_COLOR": "1",
}


class ScriptedLlm(Protocol):
    """What the `script` fixture offers (tests/conftest.py `LlmScript`)."""

    def enqueue(self, *entries: Mapping[str, object]) -> None: ...

    def requests(self) -> list[dict[str, object]]: ...


def _quote(text: str) -> str:
    return text if len(text) <= OUTPUT_QUOTE_CHARS_MAX else "…" + text[-OUTPUT_QUOTE_CHARS_MAX:]


@dataclasses.dataclass(frozen=True)
class LettaCodeRun:
    """One finished `letta -p` run."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        """The command, exit code and output, for failure messages."""
        return (
            f"$ {' '.join(self.argv)}\nexit code {self.returncode}\n"
            f"--- stdout ---\n{_quote(self.stdout)}\n--- stderr ---\n{_quote(self.stderr)}"
        )

    def result(self) -> dict[str, Any]:
        """The JSON result `--output-format json` prints: `type`, `subtype`, `is_error`,
        `result` (the final answer), `agent_id`, `conversation_id`, `usage`, ..."""
        try:
            parsed = json.loads(self.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"letta-code printed no JSON result\n{self.describe()}", pytrace=False)
        assert isinstance(parsed, dict), f"the result is not a JSON object\n{self.describe()}"
        return parsed


class LettaCode:
    """The CLI as one user runs it in one project, against one server."""

    def __init__(self, bin_dir: Path, server_url: str, api_key: str, root: Path) -> None:
        self.home = root / "home"
        self.project = root / "project"
        self.home.mkdir(parents=True)
        self.project.mkdir(parents=True)
        self._bin_dir = bin_dir
        # A fresh environment rather than the test runner's: LETTA_* or provider variables
        # there would change which server, agent or backend the CLI picks.
        self._env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "LETTA_BASE_URL": server_url,
            "LETTA_API_KEY": api_key,
            **QUIET_ENV,
        }

    def run(self, prompt: str) -> LettaCodeRun:
        """`letta -p PROMPT` in the project, headless, JSON output, every tool allowed."""
        argv = (
            str(self._bin_dir / "letta"),
            "-p",
            prompt,
            "--output-format",
            "json",
            "--yolo",
            "--model",
            MODEL_HANDLE,
            "--toolset",
            "codex",
        )
        try:
            done = subprocess.run(
                argv,
                cwd=self.project,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
            pytest.fail(
                f"letta-code did not finish within {RUN_TIMEOUT_S} s\n"
                + LettaCodeRun(argv, -1, stdout, stderr).describe(),
                pytrace=False,
            )
        return LettaCodeRun(argv, done.returncode, done.stdout, done.stderr)


def install_letta_code() -> Path:
    """Runs the installer; returns the directory holding `letta` and the `node` it runs on."""
    try:
        done = subprocess.run(
            [str(INSTALLER)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{INSTALLER} did not finish within {INSTALL_TIMEOUT_S} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"{INSTALLER} failed with exit code {done.returncode}\n{_quote(done.stderr)}",
            pytrace=False,
        )
    bin_dir = Path(done.stdout.strip().splitlines()[-1])
    assert (bin_dir / "letta").is_file(), f"the installer left no letta in {bin_dir}"
    assert (bin_dir / "node").is_file(), f"the installer left no node in {bin_dir}"
    return bin_dir
