"""`/metrics` on a served process (issue 14): Prometheus's text format, read with the
official parser, and the counters moving after a turn: requests by route template, the
turn and its steps, model calls with their tokens, a tool call, the step commits and an
activation. `KELPIE_METRICS=0` serves none; password mode guards them like any route."""

from __future__ import annotations

import httpx
import pytest
from letta_client import Letta
from prometheus_client.parser import text_string_to_metric_families

from ._support import KelpieStarter, ScriptedLlm, calling, new_agent, reply, tool_call

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MESSAGES_ROUTE = "/v1/agents/{agent_id}/messages"
PASSWORD = "metrics-password"


def scrape(http: httpx.Client) -> Samples:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= have)


class TestScrape:
    def test_unlabelled_and_watched_metrics_are_exported_from_the_start(
        self, http: httpx.Client
    ) -> None:
        http.get("/v1/health")

        names = {name for name, _ in scrape(http)}

        assert {
            "kelpie_http_requests_total",
            "kelpie_http_request_duration_seconds_bucket",
            "kelpie_steps_total",
            "kelpie_store_step_commit_duration_seconds_count",
            "kelpie_agents_active",
            "kelpie_agent_activations_total",
            "kelpie_agent_deactivations_total",
            "kelpie_sandbox_warm_workers",
            "kelpie_mcp_connections",
            "kelpie_embedding_queue_rows",
        } <= names

    def test_embedding_queue_is_counted_per_kind(self, http: httpx.Client) -> None:
        found = scrape(http)

        kinds = {dict(labels)["kind"] for name, labels in found if name.startswith("kelpie_emb")}
        assert kinds == {"passage", "message"}

    def test_scrapes_are_not_counted(self, http: httpx.Client) -> None:
        scrape(http)

        found = scrape(http)

        assert value(found, "kelpie_http_requests_total", route="/metrics") == 0


def test_a_turn_moves_the_counters(client: Letta, http: httpx.Client, script: ScriptedLlm) -> None:
    before = scrape(http)
    agent = new_agent(client, memory_blocks=[{"label": "human", "value": "Name: Ada"}])
    call = tool_call("memory_insert", {"label": "human", "new_string": "Likes tea"})
    script.enqueue(
        calling(call, usage={"prompt_tokens": 120, "completion_tokens": 7}),
        reply("Noted.", usage={"prompt_tokens": 130, "completion_tokens": 3}),
    )

    client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "Tea!"}])

    after = scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("kelpie_http_requests_total", method="POST", route="/v1/agents") == 1
    assert moved("kelpie_http_requests_total", route=MESSAGES_ROUTE, status="200") == 1
    assert moved("kelpie_http_request_duration_seconds_count", route=MESSAGES_ROUTE) == 1
    assert moved("kelpie_turns_total", stop_reason="end_turn") == 1
    assert moved("kelpie_steps_total") == 2
    model = {"provider": "openai", "model": "gpt-4o-mini"}
    assert moved("kelpie_llm_calls_total", status="ok", **model) == 2
    assert moved("kelpie_llm_call_duration_seconds_count", **model) == 2
    assert moved("kelpie_llm_tokens_total", kind="prompt", **model) == 250
    assert moved("kelpie_llm_tokens_total", kind="completion", **model) == 10
    # memory_insert is one of Letta's sleep-time tools (tools/_base_tools.py).
    tool_type = "letta_sleeptime_core"
    assert moved("kelpie_tool_calls_total", tool_type=tool_type, status="ok") == 1
    assert moved("kelpie_tool_call_duration_seconds_count", tool_type=tool_type) == 1
    assert moved("kelpie_store_step_commit_duration_seconds_count") >= 2
    assert moved("kelpie_agent_activations_total") == 1
    assert value(after, "kelpie_agents_active") >= 1


def test_a_failed_model_call_is_counted_by_error_type(
    client: Letta, http: httpx.Client, script: ScriptedLlm
) -> None:
    agent = new_agent(client)
    before = scrape(http)
    script.enqueue({"error": {"status": 400, "message": "bad request"}})

    client.agents.messages.create(agent.id, messages=[{"role": "user", "content": "Hi"}])

    after = scrape(http)
    labels = {"provider": "openai", "model": "gpt-4o-mini", "status": "llm_error"}
    moved = value(after, "kelpie_llm_calls_total", **labels)
    assert moved - value(before, "kelpie_llm_calls_total", **labels) == 1
    stopped = value(after, "kelpie_turns_total", stop_reason="llm_api_error")
    assert stopped - value(before, "kelpie_turns_total", stop_reason="llm_api_error") == 1


@pytest.mark.parametrize("switch", ["0", "off"])
def test_metrics_off_serves_none(kelpie_launcher: KelpieStarter, switch: str) -> None:
    base_url = kelpie_launcher.start({"KELPIE_METRICS": switch})
    try:
        with httpx.Client(base_url=base_url) as http:
            assert http.get("/metrics").status_code == 404
            assert http.get("/v1/health").status_code == 200
    finally:
        kelpie_launcher.stop(base_url)


def test_password_mode_guards_metrics(kelpie_launcher: KelpieStarter) -> None:
    base_url = kelpie_launcher.start({"KELPIE_SERVER_PASSWORD": PASSWORD})
    try:
        with httpx.Client(base_url=base_url) as http:
            assert http.get("/metrics").status_code == 401
            auth = {"Authorization": f"Bearer {PASSWORD}"}
            with_password = http.get("/metrics", headers=auth)
            assert with_password.status_code == 200
            assert "kelpie_http_requests_total" in with_password.text
    finally:
        kelpie_launcher.stop(base_url)
