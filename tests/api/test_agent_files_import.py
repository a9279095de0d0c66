"""Importing agent files: the options `letta-client` sends (names, messages, tools, model,
embedding, project, secrets), and the clear 4xx a bad file gets, with nothing written
(letta-api.md §1.2; Letta's `POST /v1/agents/import`)."""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
import pytest
from letta_client import BadRequestError, Letta, UnprocessableEntityError
from letta_client.types.agents import SystemMessage, UserMessage

from ._support import MODEL, error_detail, import_agent_file, unique

LEGACY_DETAIL: Final = (
    "Legacy AgentSchema format is deprecated. Please use the new AgentFileSchema format"
    " with 'agents' field."
)
LOCAL_EMBEDDING: Final = "kelpie/all-minilm-l6-v2"


def tool_source(name: str, word: str = "loud") -> str:
    return (
        f"def {name}(text: str) -> str:\n"
        f'    """Make the text {word}.\n\n'
        "    Args:\n"
        "        text: The text.\n"
        '    """\n'
        "    return text.upper()\n"
    )


def file_tool(name: str, *, tool_id: str = "tool-0", word: str = "loud") -> dict[str, Any]:
    source = tool_source(name, word)
    return {"id": tool_id, "tool_type": "custom", "name": name, "source_code": source}


def file_agent(name: str | None = None, **fields: Any) -> dict[str, Any]:
    """A minimal agent entry of a Letta file, on the test model."""
    return {
        "id": "agent-0",
        "name": name or unique("imported"),
        "model": MODEL,
        "include_base_tools": False,
        **fields,
    }


def agent_file(*agents: dict[str, Any], **parts: Any) -> str:
    return json.dumps({"agents": list(agents), "blocks": [], "tools": [], **parts})


def conversation() -> dict[str, Any]:
    """Two messages of a Letta history, both in context."""
    messages = [
        {"id": "message-0", "role": "system", "content": [{"type": "text", "text": "Old"}]},
        {"id": "message-1", "role": "user", "content": [{"type": "text", "text": "Hi there"}]},
    ]
    return {"messages": messages, "in_context_message_ids": ["message-0", "message-1"]}


def rejected(client: Letta, data: str | bytes, error: type[Exception], **options: Any) -> str:
    with pytest.raises(error) as caught:
        import_agent_file(client, data, **options)
    assert isinstance(caught.value, BadRequestError | UnprocessableEntityError)
    detail = error_detail(caught.value)
    assert isinstance(detail, str)
    return detail


class TestNames:
    def test_copy_suffix_by_default(self, client: Letta) -> None:
        name = unique("named")
        [agent_id] = import_agent_file(client, agent_file(file_agent(name)))
        assert client.agents.retrieve(agent_id).name == f"{name}_copy"

    def test_append_copy_suffix_false_keeps_the_name(self, client: Letta) -> None:
        name = unique("named")
        [agent_id] = import_agent_file(
            client, agent_file(file_agent(name)), append_copy_suffix=False
        )
        assert client.agents.retrieve(agent_id).name == name

    @pytest.mark.parametrize("field", ["name", "override_name"])
    def test_a_given_name_wins(self, client: Letta, field: str) -> None:
        wanted = unique("renamed")
        [agent_id] = import_agent_file(client, agent_file(file_agent()), **{field: wanted})
        assert client.agents.retrieve(agent_id).name == wanted


class TestMessages:
    def test_history_is_imported(self, client: Letta) -> None:
        [agent_id] = import_agent_file(client, agent_file(file_agent(**conversation())))

        system, user = client.agents.messages.list(agent_id, order="asc").items
        assert isinstance(system, SystemMessage)
        assert isinstance(user, UserMessage)
        assert user.content == "Hi there"

    def test_strip_messages_leaves_a_fresh_system_message(self, client: Letta) -> None:
        [agent_id] = import_agent_file(
            client, agent_file(file_agent(**conversation())), strip_messages=True
        )

        [system] = client.agents.messages.list(agent_id, order="asc").items
        assert isinstance(system, SystemMessage)
        assert client.agents.retrieve(agent_id).message_ids == [system.id]
        assert f"- AGENT_ID: {agent_id}" in system.content


class TestTools:
    def test_file_tool_is_created_and_attached(self, client: Letta) -> None:
        name = unique("loud").replace("-", "_")
        data = agent_file(file_agent(tool_ids=["tool-0"]), tools=[file_tool(name)])

        [agent_id] = import_agent_file(client, data)

        [tool] = client.tools.list(name=name).items
        parameters = (tool.json_schema or {}).get("parameters")
        assert isinstance(parameters, dict)
        assert parameters["required"] == ["text"]
        agent = client.agents.retrieve(agent_id, include=["agent.tools"])
        assert [t.id for t in agent.tools] == [tool.id]

    def test_tools_named_by_the_agent_may_come_from_the_file(self, client: Letta) -> None:
        name = unique("loud").replace("-", "_")
        data = agent_file(file_agent(tools=[name]), tools=[file_tool(name)])

        [agent_id] = import_agent_file(client, data)

        agent = client.agents.retrieve(agent_id, include=["agent.tools"])
        assert [t.name for t in agent.tools] == [name]

    def test_existing_custom_tool_is_redefined_by_default(self, client: Letta) -> None:
        name = unique("loud").replace("-", "_")
        stored = client.tools.create(source_code=tool_source(name, "loud"))
        data = agent_file(file_agent(tool_ids=["tool-0"]), tools=[file_tool(name, word="quiet")])

        import_agent_file(client, data)

        tool = client.tools.retrieve(stored.id)
        assert tool.source_code == tool_source(name, "quiet")

    def test_existing_custom_tool_is_kept_without_override(self, client: Letta) -> None:
        name = unique("loud").replace("-", "_")
        stored = client.tools.create(source_code=tool_source(name, "loud"))
        data = agent_file(file_agent(tool_ids=["tool-0"]), tools=[file_tool(name, word="quiet")])

        [agent_id] = import_agent_file(client, data, override_existing_tools=False)

        assert client.tools.retrieve(stored.id).source_code == tool_source(name, "loud")
        agent = client.agents.retrieve(agent_id, include=["agent.tools"])
        assert [t.id for t in agent.tools] == [stored.id]

    def test_built_in_tools_are_never_redefined(self, client: Letta) -> None:
        impostor = file_tool("conversation_search")
        impostor["source_code"] = tool_source("conversation_search")

        import_agent_file(client, agent_file(file_agent(tool_ids=["tool-0"]), tools=[impostor]))

        [tool] = client.tools.list(name="conversation_search").items
        assert tool.tool_type == "letta_core"
        assert tool.source_code is None


class TestModelAndEmbedding:
    def test_model_replaces_a_model_kelpie_cannot_call(self, client: Letta) -> None:
        llm = {"model": "glm-5", "model_endpoint_type": "zai", "context_window": 128_000}
        data = agent_file(file_agent(model=None, llm_config=llm))

        detail = rejected(client, data, BadRequestError)
        assert detail.startswith("agents[0] (")
        assert "'zai' is not supported" in detail
        [agent_id] = import_agent_file(client, data, model=MODEL)
        assert client.agents.retrieve(agent_id).llm_config.handle == MODEL

    def test_embedding_is_overridden(self, client: Letta) -> None:
        embedding = {
            "embedding_endpoint_type": "openai",
            "embedding_model": "text-embedding-3-small",
            "embedding_dim": 1536,
        }
        data = agent_file(file_agent(embedding_config=embedding))

        [kept_id] = import_agent_file(client, data)
        [changed_id] = import_agent_file(client, data, embedding=LOCAL_EMBEDDING)

        kept = client.agents.retrieve(kept_id).embedding_config
        changed = client.agents.retrieve(changed_id).embedding_config
        assert kept is not None
        assert kept.embedding_dim == 1536
        assert changed is not None
        assert changed.handle == LOCAL_EMBEDDING

    def test_project_id_is_kept(self, client: Letta) -> None:
        project = unique("project")
        [agent_id] = import_agent_file(client, agent_file(file_agent()), project_id=project)
        assert client.agents.retrieve(agent_id).project_id == project


class TestBadFiles:
    def test_not_json_is_a_bad_request(self, client: Letta) -> None:
        detail = rejected(client, b"\x00not json", BadRequestError)
        assert detail.startswith("Corrupted agent file format")

    def test_legacy_format_is_a_bad_request(self, client: Letta) -> None:
        legacy = json.dumps({"agent_type": "memgpt_agent", "core_memory": [], "messages": []})
        assert rejected(client, legacy, BadRequestError) == LEGACY_DETAIL

    def test_no_agents_is_unprocessable(self, client: Letta) -> None:
        detail = rejected(client, agent_file(), UnprocessableEntityError)
        assert "agents" in detail

    def test_wrong_field_type_names_the_field(self, client: Letta) -> None:
        data = agent_file(file_agent(tags="not-a-list"))
        detail = rejected(client, data, UnprocessableEntityError)
        assert "agents.0.tags" in detail

    def test_dangling_block_reference(self, client: Letta) -> None:
        data = agent_file(file_agent(block_ids=["block-9"]))
        detail = rejected(client, data, UnprocessableEntityError)
        assert detail == "agents[0].block_ids: 'block-9' is not a block in this file"

    def test_in_context_message_must_be_in_the_file(self, client: Letta) -> None:
        data = agent_file(file_agent(in_context_message_ids=["message-3"]))
        detail = rejected(client, data, UnprocessableEntityError)
        assert "'message-3' is not a message of this agent" in detail

    def test_duplicate_ids(self, client: Letta) -> None:
        block = {"id": "block-0", "label": "human", "value": "x"}
        data = agent_file(file_agent(), blocks=[block, {**block, "label": "persona"}])
        detail = rejected(client, data, UnprocessableEntityError)
        assert detail == "blocks: the id 'block-0' is used twice"

    def test_two_tools_of_one_name(self, client: Letta) -> None:
        name = unique("loud").replace("-", "_")
        tools = [file_tool(name), file_tool(name, tool_id="tool-1")]
        detail = rejected(client, agent_file(file_agent(), tools=tools), UnprocessableEntityError)
        assert detail == f"tools: more than one tool is named '{name}'"

    def test_tool_without_name_schema_or_source(self, client: Letta) -> None:
        tools = [{"id": "tool-0", "tool_type": "custom"}]
        detail = rejected(client, agent_file(file_agent(), tools=tools), UnprocessableEntityError)
        assert detail.startswith("tools[0] (tool-0): ")

    def test_unknown_tool_name(self, client: Letta) -> None:
        data = agent_file(file_agent(tools=["no_such_tool_anywhere"]))
        detail = rejected(client, data, BadRequestError)
        assert detail.endswith("tools not found by name: no_such_tool_anywhere")

    def test_secrets_must_be_a_json_object(self, client: Letta) -> None:
        detail = rejected(client, agent_file(file_agent()), BadRequestError, secrets="[1]")
        assert detail == "secrets must be a valid JSON string"

    def test_missing_file_part_is_unprocessable(self, http: httpx.Client) -> None:
        response = http.post("/v1/agents/import", data={"strip_messages": "true"})
        assert response.status_code == 422
        assert "file" in response.json()["detail"]

    def test_a_failing_agent_imports_nothing(self, client: Letta) -> None:
        tool_name = unique("loud").replace("-", "_")
        first = file_agent(unique("first"), block_ids=["block-0"], tool_ids=["tool-0"])
        broken = {**file_agent(), "id": "agent-1", "model": "nowhere/model"}
        marker = unique("block-value")
        data = agent_file(
            first,
            broken,
            blocks=[{"id": "block-0", "label": "human", "value": marker}],
            tools=[file_tool(tool_name)],
        )

        detail = rejected(client, data, BadRequestError)

        assert detail.startswith("agents[1] (")
        assert client.tools.list(name=tool_name).items == []
        assert client.agents.list(name=first["name"] + "_copy").items == []
        assert client.blocks.list(value_search=marker).items == []

    def test_flag_that_is_not_a_boolean_is_unprocessable(self, http: httpx.Client) -> None:
        files = {"file": ("agent.af", agent_file(file_agent()), "application/json")}
        response = http.post("/v1/agents/import", files=files, data={"strip_messages": "maybe"})
        assert response.status_code == 422
        assert response.json() == {
            "detail": "strip_messages: Input should be a valid boolean, got 'maybe'"
        }
