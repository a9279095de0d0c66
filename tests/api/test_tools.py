"""Tools: create from Python source, schema from the docstring, upsert, list, and the tools of
an agent (letta-api.md §1.7, §2.3, §3.2)."""

from __future__ import annotations

import textwrap

import httpx
import pytest
from letta_client import BadRequestError, ConflictError, Letta, NotFoundError

from ._support import LETTA_V1_BASE_TOOLS, is_id, new_agent, unique

PAGE_ALL = 1_000
AGENT_TOOLS_LIMIT_DEFAULT = 10
RETURN_CHAR_LIMIT_DEFAULT = 50_000


def tool_source(name: str, summary: str = "Roll a die several times.") -> str:
    """Python source for a tool named `name` with a Google-style docstring."""
    return textwrap.dedent(
        f'''
        def {name}(sides: int, label: str, times: int = 1, loud: bool = False) -> str:
            """{summary}

            Args:
                sides (int): Number of faces on the die.
                label (str): What to call the roll.
                times (int): How many rolls to make.
                loud (bool): Whether to shout the result.

            Returns:
                str: The rolls, comma separated.
            """
            return ",".join(str(sides) for _ in range(times))
        '''
    ).lstrip()


def simple_source(name: str) -> str:
    return textwrap.dedent(
        f'''
        def {name}(text: str) -> str:
            """Echo the text back.

            Args:
                text (str): The text to echo.

            Returns:
                str: The same text.
            """
            return text
        '''
    ).lstrip()


def tool_name() -> str:
    return unique("roll").replace("-", "_")


class TestCreateTool:
    def test_name_and_schema_come_from_the_source(self, client: Letta) -> None:
        name = tool_name()
        source = tool_source(name)

        tool = client.tools.create(source_code=source)

        assert is_id("tool", tool.id), tool.id
        assert tool.name == name
        assert tool.source_code == source
        assert tool.source_type == "python"
        assert tool.tool_type == "custom"
        schema = tool.json_schema
        assert schema is not None
        assert schema["name"] == name
        assert schema["description"] == "Roll a die several times."
        parameters = schema["parameters"]
        assert isinstance(parameters, dict)
        assert parameters["type"] == "object"
        assert parameters["properties"] == {
            "sides": {"type": "integer", "description": "Number of faces on the die."},
            "label": {"type": "string", "description": "What to call the roll."},
            "times": {"type": "integer", "description": "How many rolls to make."},
            "loud": {"type": "boolean", "description": "Whether to shout the result."},
        }
        assert sorted(parameters["required"]) == ["label", "sides"]

    def test_return_char_limit_defaults_to_fifty_thousand(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()))

        assert tool.return_char_limit == RETURN_CHAR_LIMIT_DEFAULT

    def test_tags_round_trip(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()), tags=["dice", "games"])

        assert sorted(client.tools.retrieve(tool.id).tags or []) == ["dice", "games"]

    def test_description_defaults_to_the_docstring_summary(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name(), "Toss some dice."))

        assert tool.description == "Toss some dice."

    def test_retrieve_returns_the_same_tool(self, client: Letta) -> None:
        created = client.tools.create(source_code=tool_source(tool_name()))

        fetched = client.tools.retrieve(created.id)

        assert fetched.id == created.id
        assert fetched.name == created.name
        assert fetched.source_code == created.source_code
        assert fetched.json_schema == created.json_schema

    def test_same_function_name_twice_is_a_conflict(self, client: Letta) -> None:
        name = tool_name()
        first = client.tools.create(source_code=tool_source(name))

        with pytest.raises(ConflictError):
            client.tools.create(source_code=tool_source(name, "A different summary."))

        same_name = client.tools.list(name=name, limit=PAGE_ALL).items
        assert [tool.id for tool in same_name] == [first.id]
        assert client.tools.retrieve(first.id).description == "Roll a die several times."

    def test_source_without_docstring_is_a_bad_request(self, client: Letta) -> None:
        name = tool_name()
        source = f"def {name}(x: int) -> int:\n    return x\n"

        with pytest.raises(BadRequestError):
            client.tools.create(source_code=source)

        assert client.tools.list(name=name, limit=PAGE_ALL).items == []

    def test_answers_both_slash_forms_without_redirect(self, http: httpx.Client) -> None:
        for path in ("/v1/tools/", "/v1/tools"):
            response = http.get(path, params={"limit": 1})
            assert response.status_code == 200, f"{path}: {response.text}"
            assert isinstance(response.json(), list)


class TestUpdateTool:
    def test_description_persists(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()))

        updated = client.tools.update(tool.id, description="A better description")

        assert updated.id == tool.id
        assert updated.description == "A better description"
        fetched = client.tools.retrieve(tool.id)
        assert fetched.description == "A better description"
        assert fetched.name == tool.name
        assert fetched.source_code == tool.source_code

    def test_unknown_tool_is_not_found(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.tools.update("tool-00000000-0000-4000-8000-000000000000", description="x")


class TestDeleteTool:
    def test_deleted_tool_is_gone(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()))

        client.tools.delete(tool.id)

        with pytest.raises(NotFoundError):
            client.tools.retrieve(tool.id)
        assert client.tools.list(name=str(tool.name), limit=PAGE_ALL).items == []

    def test_deleted_tool_is_detached_from_agents(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()))
        agent = new_agent(client, tool_ids=[tool.id], include_base_tools=False)

        client.tools.delete(tool.id)

        assert client.agents.tools.list(agent.id).items == []


class TestUpsertTool:
    def test_same_name_keeps_the_id_and_takes_the_new_source(self, client: Letta) -> None:
        name = tool_name()
        first_source = tool_source(name, "First version.")
        second_source = tool_source(name, "Second version.")

        first = client.tools.upsert(source_code=first_source)
        second = client.tools.upsert(source_code=second_source)

        assert first.id == second.id
        assert first.name == name
        assert second.source_code == second_source
        fetched = client.tools.retrieve(first.id)
        assert fetched.source_code == second_source
        assert fetched.json_schema is not None
        assert fetched.json_schema["description"] == "Second version."
        assert [t.id for t in client.tools.list(name=name, limit=PAGE_ALL).items] == [first.id]

    def test_upsert_of_a_new_name_creates(self, client: Letta) -> None:
        name = tool_name()

        tool = client.tools.upsert(source_code=tool_source(name))

        assert is_id("tool", tool.id), tool.id
        assert client.tools.retrieve(tool.id).name == name


class TestListTools:
    def test_name_filter_is_exact(self, client: Letta) -> None:
        name = tool_name()
        wanted = client.tools.create(source_code=tool_source(name))
        client.tools.create(source_code=tool_source(f"{name}_longer"))

        found = client.tools.list(name=name, limit=PAGE_ALL).items

        assert [tool.id for tool in found] == [wanted.id]

    def test_names_filter_takes_several(self, client: Letta) -> None:
        first = client.tools.create(source_code=simple_source(tool_name()))
        second = client.tools.create(source_code=simple_source(tool_name()))
        client.tools.create(source_code=simple_source(tool_name()))

        found = client.tools.list(names=[str(first.name), str(second.name)], limit=PAGE_ALL)

        assert sorted(tool.id for tool in found.items) == sorted([first.id, second.id])

    def test_tool_ids_filter(self, client: Letta) -> None:
        first = client.tools.create(source_code=simple_source(tool_name()))
        client.tools.create(source_code=simple_source(tool_name()))

        found = client.tools.list(tool_ids=[first.id], limit=PAGE_ALL).items

        assert [tool.id for tool in found] == [first.id]

    def test_tool_types_filter(self, client: Letta) -> None:
        custom = client.tools.create(source_code=simple_source(tool_name()))

        customs = client.tools.list(tool_types=["custom"], limit=PAGE_ALL).items
        others = client.tools.list(exclude_tool_types=["custom"], limit=PAGE_ALL).items

        assert custom.id in {tool.id for tool in customs}
        assert {tool.tool_type for tool in customs} == {"custom"}
        assert others
        assert "custom" not in {tool.tool_type for tool in others}

    def test_base_tools_are_listed_by_name(self, client: Letta) -> None:
        found = client.tools.list(name="web_search", limit=10).items

        assert [tool.name for tool in found] == ["web_search"]

    def test_auto_paging_visits_every_tool_once(self, client: Letta) -> None:
        prefix = tool_name()
        created = {
            client.tools.create(source_code=simple_source(f"{prefix}_{i}")).id for i in range(5)
        }

        seen: list[str] = []
        for tool in client.tools.list(limit=3):
            seen.append(tool.id)
            assert len(seen) <= PAGE_ALL, "auto-paging did not stop: `after` ignored?"

        assert len(seen) == len(set(seen))
        assert created <= set(seen)


class TestAddBaseTools:
    def test_returns_the_base_tools(self, http: httpx.Client) -> None:
        response = http.post("/v1/tools/add-base-tools")

        assert response.status_code == 200, response.text
        tools = response.json()
        assert isinstance(tools, list)
        names = {tool["name"] for tool in tools}
        assert "send_message" in names
        assert LETTA_V1_BASE_TOOLS <= names
        for tool in tools:
            assert is_id("tool", tool["id"]), tool["id"]

    def test_is_idempotent(self, http: httpx.Client) -> None:
        first = http.post("/v1/tools/add-base-tools")
        second = http.post("/v1/tools/add-base-tools")

        assert first.status_code == 200, first.text
        assert second.status_code == 200, second.text
        first_ids = {tool["name"]: tool["id"] for tool in first.json()}
        second_ids = {tool["name"]: tool["id"] for tool in second.json()}
        assert first_ids == second_ids


class TestAgentTools:
    def test_list_returns_the_agent_tools(self, client: Letta) -> None:
        agent = new_agent(client)

        tools = client.agents.tools.list(agent.id).items

        assert {tool.name for tool in tools} == LETTA_V1_BASE_TOOLS

    def test_attach_and_detach(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()))
        agent = new_agent(client)

        attached = client.agents.tools.attach(tool.id, agent_id=agent.id)

        assert attached is not None, "attach should return the AgentState (letta-api.md §1.7)"
        assert attached.id == agent.id
        names = {t.name for t in client.agents.tools.list(agent.id).items}
        assert names == LETTA_V1_BASE_TOOLS | {tool.name}

        detached = client.agents.tools.detach(tool.id, agent_id=agent.id)

        assert detached is not None, "detach should return the AgentState (letta-api.md §1.7)"
        assert detached.id == agent.id
        assert {t.name for t in client.agents.tools.list(agent.id).items} == LETTA_V1_BASE_TOOLS
        assert client.tools.retrieve(tool.id).id == tool.id

    def test_attach_twice_lists_the_tool_once(self, client: Letta) -> None:
        tool = client.tools.create(source_code=tool_source(tool_name()))
        agent = new_agent(client, include_base_tools=False)

        client.agents.tools.attach(tool.id, agent_id=agent.id)
        client.agents.tools.attach(tool.id, agent_id=agent.id)

        assert [t.id for t in client.agents.tools.list(agent.id).items] == [tool.id]

    def test_attach_unknown_tool_is_not_found(self, client: Letta) -> None:
        agent = new_agent(client, include_base_tools=False)

        with pytest.raises(NotFoundError):
            client.agents.tools.attach(
                "tool-00000000-0000-4000-8000-000000000000", agent_id=agent.id
            )

        assert client.agents.tools.list(agent.id).items == []

    def test_default_page_is_ten_and_auto_paging_visits_all(self, client: Letta) -> None:
        prefix = tool_name()
        tool_ids = [
            client.tools.create(source_code=simple_source(f"{prefix}_{i}")).id for i in range(12)
        ]
        agent = new_agent(client, tool_ids=tool_ids, include_base_tools=False)

        first_page = client.agents.tools.list(agent.id)
        seen: list[str] = []
        for tool in client.agents.tools.list(agent.id):
            seen.append(tool.id)
            assert len(seen) <= len(tool_ids), "auto-paging did not stop: `after` ignored?"

        assert len(first_page.items) == AGENT_TOOLS_LIMIT_DEFAULT
        assert sorted(seen) == sorted(tool_ids)

    def test_tools_of_unknown_agent_is_not_found(self, client: Letta) -> None:
        with pytest.raises(NotFoundError):
            client.agents.tools.list("agent-00000000-0000-4000-8000-000000000000")
