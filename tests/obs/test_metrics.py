"""`Metrics`: one registry per instance, what each recording method adds, bounded labels,
the readers watched at scrape time, and the switch that turns recording off."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kelpie.obs import LABEL_VALUE_CHARS_MAX, LABEL_VALUES_MAX, OTHER, Metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: Metrics) -> Samples:
    text = metrics.render().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in found.items() if n == name and wanted <= have)


class TestRegistry:
    def test_two_instances_do_not_share_series(self) -> None:
        first, second = Metrics(), Metrics()

        first.record_request("GET", "/v1/health", 200, 0.001)

        assert value(samples(first), "kelpie_http_requests_total") == 1
        assert value(samples(second), "kelpie_http_requests_total") == 0

    def test_no_created_series(self) -> None:
        metrics = Metrics()
        metrics.record_turn("end_turn", 1, 0.1)

        assert not [name for name, _ in samples(metrics) if name.endswith("_created")]


class TestRecording:
    def test_request_counts_by_method_route_and_status_with_latency(self) -> None:
        metrics = Metrics()

        metrics.record_request("POST", "/v1/agents/{agent_id}/messages", 200, 0.02)
        metrics.record_request("POST", "/v1/agents/{agent_id}/messages", 200, 0.03)
        metrics.record_request("POST", "/v1/agents/{agent_id}/messages", 404, 0.001)

        found = samples(metrics)
        route = "/v1/agents/{agent_id}/messages"
        assert value(found, "kelpie_http_requests_total", route=route, status="200") == 2
        assert value(found, "kelpie_http_requests_total", route=route, status="404") == 1
        count = value(found, "kelpie_http_request_duration_seconds_count", route=route)
        total = value(found, "kelpie_http_request_duration_seconds_sum", route=route)
        assert count == 3
        assert abs(total - 0.051) < 1e-9

    def test_unknown_http_methods_count_as_other(self) -> None:
        metrics = Metrics()

        metrics.record_request("BREW", "unrouted", 405, 0.001)

        assert value(samples(metrics), "kelpie_http_requests_total", method=OTHER) == 1

    def test_turn_counts_its_stop_reason_and_steps(self) -> None:
        metrics = Metrics()

        metrics.record_turn("end_turn", 2, 0.5)
        metrics.record_turn("max_steps", 3, 1.0)

        found = samples(metrics)
        assert value(found, "kelpie_turns_total", stop_reason="end_turn") == 1
        assert value(found, "kelpie_turns_total", stop_reason="max_steps") == 1
        assert value(found, "kelpie_steps_total") == 5
        assert value(found, "kelpie_turn_duration_seconds_count") == 2

    def test_llm_call_counts_status_latency_and_tokens(self) -> None:
        metrics = Metrics()

        metrics.record_llm_call(
            "openai", "gpt-4o-mini", "ok", 0.4, prompt_tokens=120, completion_tokens=8
        )
        metrics.record_llm_call("openai", "gpt-4o-mini", "llm_timeout", 60.0)

        found = samples(metrics)
        labels = {"provider": "openai", "model": "gpt-4o-mini"}
        assert value(found, "kelpie_llm_calls_total", status="ok", **labels) == 1
        assert value(found, "kelpie_llm_calls_total", status="llm_timeout", **labels) == 1
        assert value(found, "kelpie_llm_tokens_total", kind="prompt", **labels) == 120
        assert value(found, "kelpie_llm_tokens_total", kind="completion", **labels) == 8
        assert value(found, "kelpie_llm_call_duration_seconds_count", **labels) == 2

    def test_tool_calls_by_type_and_status(self) -> None:
        metrics = Metrics()

        metrics.record_tool_call("letta_memory_core", True, 0.001)
        metrics.record_tool_call("custom", False, 0.2)

        found = samples(metrics)
        assert value(found, "kelpie_tool_calls_total", tool_type="letta_memory_core") == 1
        assert value(found, "kelpie_tool_calls_total", tool_type="custom", status="error") == 1
        assert value(found, "kelpie_tool_call_duration_seconds_count") == 2

    def test_step_commits_and_embedding_queue(self) -> None:
        metrics = Metrics()

        metrics.record_step_commit(0.002)
        metrics.set_embedding_queue("passage", 7)

        found = samples(metrics)
        assert value(found, "kelpie_store_step_commit_duration_seconds_count") == 1
        assert value(found, "kelpie_embedding_queue_rows", kind="passage") == 7


class TestBoundedLabels:
    def test_models_past_the_cap_count_as_other(self) -> None:
        metrics = Metrics()

        for index in range(LABEL_VALUES_MAX + 5):
            metrics.record_llm_call("openai", f"model-{index}", "ok", 0.1)

        found = samples(metrics)
        models = {
            dict(labels)["model"] for name, labels in found if name == "kelpie_llm_calls_total"
        }
        assert len(models) == LABEL_VALUES_MAX + 1
        assert value(found, "kelpie_llm_calls_total", model=OTHER) == 5

    def test_a_long_model_name_counts_as_other(self) -> None:
        metrics = Metrics()

        metrics.record_llm_call("openai", "m" * (LABEL_VALUE_CHARS_MAX + 1), "ok", 0.1)

        assert value(samples(metrics), "kelpie_llm_calls_total", model=OTHER) == 1


class TestWatched:
    def test_readers_are_read_when_scraped(self) -> None:
        metrics = Metrics()
        state = {"active": 1, "activated": 3, "deactivated": 2, "warm": 4, "mcp": 1}
        metrics.watch_activations(
            active=lambda: state["active"],
            activated=lambda: state["activated"],
            deactivated=lambda: state["deactivated"],
        )
        metrics.watch_sandbox_pool(lambda: state["warm"])
        metrics.watch_mcp_connections(lambda: state["mcp"])

        state["warm"] = 2
        found = samples(metrics)

        assert value(found, "kelpie_agents_active") == 1
        assert value(found, "kelpie_agent_activations_total") == 3
        assert value(found, "kelpie_agent_deactivations_total") == 2
        assert value(found, "kelpie_sandbox_warm_workers") == 2
        assert value(found, "kelpie_mcp_connections") == 1

    def test_unwatched_metrics_are_absent(self) -> None:
        names = {name for name, _ in samples(Metrics())}

        assert "kelpie_sandbox_warm_workers" not in names
        assert "kelpie_mcp_connections" not in names

    def test_watching_again_replaces_the_reader(self) -> None:
        metrics = Metrics()
        metrics.watch_sandbox_pool(lambda: 1)
        metrics.watch_sandbox_pool(lambda: 5)

        assert value(samples(metrics), "kelpie_sandbox_warm_workers") == 5


def test_disabled_metrics_record_nothing() -> None:
    metrics = Metrics(enabled=False)

    metrics.record_request("GET", "/v1/health", 200, 0.001)
    metrics.record_turn("end_turn", 1, 0.1)
    metrics.record_llm_call("openai", "gpt", "ok", 0.1, prompt_tokens=1)
    metrics.record_tool_call("custom", True, 0.1)
    metrics.record_step_commit(0.001)

    assert not [v for v in samples(metrics).values() if v]
