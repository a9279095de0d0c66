"""Fuzzes every operation of /openapi.json with schemathesis (issue 14), against a served
process (the fake LLM behind it): no 5xx, and every answer's status, content type and body
as the schema documents them, since generators and tools read the schema.

Deterministic: one worker and schemathesis's deterministic generation, so a failure
reproduces with the same command. Short for CI (~1 min); `make fuzz` runs the long version:
more cases per operation (`KELPIE_FUZZ_EXAMPLES`), random but seeded (`KELPIE_FUZZ_SEED`).
Path parameters take the ids of real objects (`seed_objects`) part of the time, so cases
reach the handlers rather than stopping at a 404.

Checks left out, and why:
- `response_headers_conformance`: no operation documents headers (Retry-After and
  x-should-retry are hints the SDK reads, not part of any response's shape).
- `negative_data_rejection` / `positive_data_acceptance`: ids in paths are checked by the
  handlers (Letta's `agent-{uuid4}` 422 wording), not by a schema pattern, so the schema
  accepts ids the server refuses; that is Letta's contract, not a mismatch to fix.
- `unsupported_method`, `use_after_free`, `ensure_resource_availability`, the auth checks:
  not about the schema's truth (and there is no auth to test without password mode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from kelpie.memory import HASHING_MODEL

from ._support import MODEL, KelpieStarter

CHECKS: Final = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
# Cases per operation in the fuzzing and stateful phases (the coverage phase walks each
# schema's boundaries whatever this says).
EXAMPLES: Final = int(os.environ.get("KELPIE_FUZZ_EXAMPLES", "3"))
# Unset: deterministic generation (schemathesis then ignores any seed).
SEED: Final = os.environ.get("KELPIE_FUZZ_SEED")
OUTPUT_TAIL_CHARS: Final = 20_000
# How often a path parameter takes the id of an object `seed_objects` made rather than a
# generated one: with generated ids alone nearly every case stops at a 404 or a 422.
REAL_ID_PROBABILITY: Final = 0.6
TOOL_SOURCE: Final = '''def roll(sides: int) -> int:
    """Rolls a die.

    Args:
        sides: How many sides it has.
    """
    return sides
'''

Values = dict[str, list[str | int]]


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def seed_objects(http: httpx.Client) -> Values:
    """Makes one of each object the paths name; answers values for each path parameter."""
    blocks = [{"label": "human", "value": "Ada"}]
    agent = _ok(
        http.post("/v1/agents", json={"name": "fuzz", "model": MODEL, "memory_blocks": blocks})
    )
    agent_id = agent["id"]
    block = _ok(http.post("/v1/blocks", json={"label": "notes", "value": "v0"}))
    _ok(http.patch(f"/v1/blocks/{block['id']}", json={"value": "v1"}))
    tool = _ok(http.post("/v1/tools", json={"source_code": TOOL_SOURCE}))
    _ok(http.patch(f"/v1/agents/{agent_id}/tools/attach/{tool['id']}"))
    conversation = _ok(http.post("/v1/conversations", params={"agent_id": agent_id}))
    archive = _ok(http.post("/v1/archives", json={"name": "fuzz"}))
    (passage,) = _ok(http.post(f"/v1/agents/{agent_id}/archival-memory", json={"text": "t"}))
    reply = _ok(
        http.post(
            f"/v1/agents/{agent_id}/messages",
            json={"messages": [{"role": "user", "content": "hi"}]},
        )
    )
    message = reply["messages"][0]
    steps = _ok(http.get(f"/v1/runs/{message['run_id']}/steps"))
    _ok(http.put(f"/v1/agents/{agent_id}/working-memory/plan", json={"value": "x"}))
    _ok(http.put(f"/v1/agents/{agent_id}/workspace/files/notes.txt", content=b"x"))
    return {
        "agent_id": [agent_id],
        "block_id": [block["id"]],
        "block_label": ["human"],
        "seq": [1],
        "tool_id": [tool["id"]],
        "tool_name": ["roll"],
        "conversation_id": [conversation["id"]],
        "archive_id": [archive["id"]],
        "memory_id": [passage["id"]],
        "passage_id": [passage["id"]],
        "run_id": [message["run_id"]],
        "message_id": [message["id"]],
        "step_id": [step["id"] for step in steps][:1],
        "key": ["plan"],
        "path": ["notes.txt"],
    }


def write_config(path: Path, values: Values) -> None:
    """A schemathesis.toml that draws each path parameter from `values`, at times."""
    lines: list[str] = []
    bindings = ["[parameters]"]
    for name, entries in values.items():
        if not entries:
            continue
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(entries)}", ""]
        binding = f'{{ dictionary = "{name}", probability = {REAL_ID_PROBABILITY} }}'
        bindings.append(f'"path.{name}" = {binding}')
    path.write_text("\n".join([*lines, *bindings]) + "\n")


def schemathesis_run(base_url: str, config: Path, report: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run"]
    argv += [f"{base_url}/openapi.json", "--checks", ",".join(CHECKS)]
    argv += ["--max-examples", str(EXAMPLES), "--workers", "1", "--no-color"]
    argv += ["--generation-deterministic"] if SEED is None else ["--seed", SEED]
    argv += ["--phases", "coverage,fuzzing,stateful"]
    argv += ["--report", "json", "--report-json-path", str(report), "--request-timeout", "30"]
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=report.parent)


# ~1 min alone on 2 cores; the ceiling leaves room for a machine busy with other tests.
@pytest.mark.timeout(300)
def test_every_operation_answers_as_the_schema_says(
    kelpie_launcher: KelpieStarter, tmp_path: Path
) -> None:
    # The hashing embedder: the fuzz is about the HTTP surface, and the local model would
    # spend most of the run embedding generated search queries.
    base_url = kelpie_launcher.start({"KELPIE_EMBEDDING_MODEL": HASHING_MODEL})
    config = tmp_path / "schemathesis.toml"
    with httpx.Client(base_url=base_url, timeout=60) as http:
        write_config(config, seed_objects(http))
    report_path = tmp_path / "schemathesis.json"

    run = schemathesis_run(base_url, config, report_path)

    output = (run.stdout + run.stderr)[-OUTPUT_TAIL_CHARS:]
    assert report_path.exists(), output
    report: dict[str, Any] = json.loads(report_path.read_text())
    operations = report["operations"]
    assert operations["tested"] == operations["total"] >= 100, (operations, output)
    assert report["failures"] == [], output
    assert report["errors"] == [], output
    assert run.returncode == 0, output
