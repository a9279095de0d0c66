"""derive_tool_schema: Letta's rules for turning Python source into a function schema."""

import textwrap

import pytest

from kelpie.errors import InvalidInput
from kelpie.tools import DerivedTool, derive_tool_schema


def _derive(source: str) -> DerivedTool:
    return derive_tool_schema(textwrap.dedent(source))


def _rejection(source: str) -> str:
    with pytest.raises(InvalidInput) as caught:
        _derive(source)
    return caught.value.detail


def _one_param_tool(annotation: str, default: str = "") -> str:
    return f'''
        def f(x: {annotation}{default}):
            """Do it.

            Args:
                x: The x.
            """
        '''


def _param_schema(annotation: str, default: str = "") -> dict[str, object]:
    schema = _derive(_one_param_tool(annotation, default)).json_schema
    properties: dict[str, dict[str, object]] = schema["parameters"]["properties"]
    return properties["x"]


def test_derive_tool_schema_builds_openai_schema_from_typed_args_and_defaults() -> None:
    tool = _derive(
        '''
        def roll_dice(count: int, sides: int = 6, label: str = "roll", exact: bool = False,
                      weight: float = 1.0) -> str:
            """Roll some dice.

            Rolls every die once and
            adds the faces up.

            Args:
                count (int): How many dice to roll.
                sides: Faces on each die.
                label: A name for the roll.
                exact: Whether to show each die.
                weight: A multiplier.

            Returns:
                str: The total.
            """
            return "4"
        '''
    )
    description = "Roll some dice.\n\nRolls every die once and\nadds the faces up."
    assert tool == DerivedTool(
        name="roll_dice",
        description=description,
        json_schema={
            "name": "roll_dice",
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {
                    "count": {"type": "integer", "description": "How many dice to roll."},
                    "sides": {"type": "integer", "description": "Faces on each die."},
                    "label": {"type": "string", "description": "A name for the roll."},
                    "exact": {"type": "boolean", "description": "Whether to show each die."},
                    "weight": {"type": "number", "description": "A multiplier."},
                },
                "required": ["count"],
            },
        },
    )


def test_derive_tool_schema_description_is_short_description_alone_without_long() -> None:
    tool = _derive(_one_param_tool("str"))
    assert tool.description == "Do it."
    assert tool.json_schema["description"] == "Do it."


def test_derive_tool_schema_optional_and_union_none_are_not_required() -> None:
    tool = _derive(
        '''
        from typing import Optional, Union

        def f(a: Optional[str], b: int | None, c: None | bool, d: Union[float, None],
              e: "Optional[int]", g: str) -> None:
            """Do it.

            Args:
                a: A.
                b: B.
                c: C.
                d: D.
                e: E.
                g: G.
            """
        '''
    )
    parameters = tool.json_schema["parameters"]
    assert parameters["properties"] == {
        "a": {"type": "string", "description": "A."},
        "b": {"type": "integer", "description": "B."},
        "c": {"type": "boolean", "description": "C."},
        "d": {"type": "number", "description": "D."},
        "e": {"type": "integer", "description": "E."},
        "g": {"type": "string", "description": "G."},
    }
    assert parameters["required"] == ["g"]


def test_derive_tool_schema_list_of_str_has_string_items() -> None:
    assert _param_schema("list[str]") == {
        "type": "array",
        "items": {"type": "string"},
        "description": "The x.",
    }


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("List[int]", {"type": "array", "items": {"type": "integer"}}),
        ("typing.List[float]", {"type": "array", "items": {"type": "number"}}),
        ("Sequence[bool]", {"type": "array", "items": {"type": "boolean"}}),
        (
            "list[list[int]]",
            {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        ),
        ("list", {"type": "array", "items": {"type": "string"}}),
        ("dict", {"type": "object"}),
        ("Dict[str, int]", {"type": "object"}),
        ("dict[str, list[str]]", {"type": "object"}),
        ("Any", {}),
        ("typing.Any", {}),
    ],
)
def test_derive_tool_schema_maps_container_annotations(
    annotation: str, expected: dict[str, object]
) -> None:
    assert _param_schema(annotation) == {**expected, "description": "The x."}


def test_derive_tool_schema_literal_becomes_enum_typed_by_its_values() -> None:
    assert _param_schema('Literal["fast", "slow"]') == {
        "type": "string",
        "enum": ["fast", "slow"],
        "description": "The x.",
    }
    assert _param_schema("Literal[1, 2, -3]")["enum"] == [1, 2, -3]
    assert _param_schema("Literal[1, 2, -3]")["type"] == "integer"
    assert _param_schema("Literal[True]")["type"] == "boolean"
    assert _param_schema("Literal[0.5, 1.5]")["type"] == "number"


def test_derive_tool_schema_optional_literal_is_enum_and_not_required() -> None:
    tool = _derive(_one_param_tool('Optional[Literal["a", "b"]]'))
    assert tool.json_schema["parameters"] == {
        "type": "object",
        "properties": {"x": {"type": "string", "enum": ["a", "b"], "description": "The x."}},
        "required": [],
    }


def test_derive_tool_schema_missing_annotation_has_no_type_and_stays_required() -> None:
    tool = _derive(_one_param_tool("str").replace("x: str", "x"))
    assert tool.json_schema["parameters"] == {
        "type": "object",
        "properties": {"x": {"description": "The x."}},
        "required": ["x"],
    }


def test_derive_tool_schema_keyword_only_params_follow_their_own_defaults() -> None:
    tool = _derive(
        '''
        def f(a: int, *, b: str, c: str = "c") -> None:
            """Do it.

            Args:
                a: A.
                b: B.
                c: C.
            """
        '''
    )
    assert tool.json_schema["parameters"]["required"] == ["a", "b"]


def test_derive_tool_schema_skips_self_and_agent_state() -> None:
    tool = _derive(
        '''
        def f(self, agent_state: "AgentState", text: str) -> None:
            """Do it.

            Args:
                text: The text.
            """
        '''
    )
    assert tool.json_schema["parameters"] == {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "The text."}},
        "required": ["text"],
    }


def test_derive_tool_schema_takes_last_top_level_function() -> None:
    tool = _derive(
        '''
        import json

        def helper(x: int) -> int:
            """Help.

            Args:
                x: X.
            """
            return x

        class Thing:
            def method(self) -> None:
                """A method, never the tool."""

        async def the_tool(y: str) -> str:
            """The tool.

            Args:
                y: Y.
            """
            def nested(z: int) -> int:
                """Nested, never the tool."""
                return z
            return y

        VALUE = 1
        '''
    )
    assert tool.name == "the_tool"
    assert tool.description == "The tool."
    assert list(tool.json_schema["parameters"]["properties"]) == ["y"]


def test_derive_tool_schema_never_executes_the_source() -> None:
    tool = _derive(
        '''
        raise SystemExit("executed")

        def f(x: int) -> None:
            """Do it.

            Args:
                x: X.
            """
            raise SystemExit("executed")
        '''
    )
    assert tool.name == "f"


def test_derive_tool_schema_rejects_syntax_error_with_line() -> None:
    detail = _rejection("def ok() -> None:\n    pass\n\ndef f(:\n    pass\n")
    assert detail == "source_code has a syntax error at line 4: invalid syntax"


def test_derive_tool_schema_rejects_source_without_function() -> None:
    detail = _rejection("x = 1\nclass C:\n    def m(self) -> None:\n        pass\n")
    assert detail == (
        "source_code defines no function: define the tool as a top-level def "
        "with a Google-style docstring"
    )


def test_derive_tool_schema_rejects_missing_docstring() -> None:
    detail = _rejection("def f(x: int) -> int:\n    return x\n")
    assert detail == (
        "Function 'f' has no docstring: add a Google-style docstring describing it and its Args"
    )


def test_derive_tool_schema_rejects_blank_docstring() -> None:
    detail = _rejection('def f(x: int) -> int:\n    """   """\n    return x\n')
    assert detail.startswith("Function 'f' has no docstring")


def test_derive_tool_schema_rejects_param_missing_from_args_section() -> None:
    detail = _rejection(
        '''
        def f(x: int, y: int) -> None:
            """Do it.

            Args:
                x: X.
            """
        '''
    )
    assert (
        detail == "Parameter 'y' of function 'f' has no description in the docstring's Args section"
    )


def test_derive_tool_schema_rejects_docstring_without_args_section() -> None:
    detail = _rejection('def f(x: int) -> None:\n    """Do it."""\n')
    assert (
        detail == "Parameter 'x' of function 'f' has no description in the docstring's Args section"
    )


def test_derive_tool_schema_rejects_malformed_args_section() -> None:
    detail = _rejection('def f(x: int) -> None:\n    """Do it.\n\n    Args:\n        x\n    """\n')
    assert (
        detail
        == "Function 'f' has a docstring that is not valid Google style: Expected a colon in 'x'."
    )


def test_derive_tool_schema_rejects_star_args() -> None:
    detail = _rejection('def f(*values: int) -> None:\n    """Do it."""\n')
    assert detail == (
        "Function 'f' takes *values: tools receive one named argument per JSON property, "
        "so declare each parameter explicitly"
    )


def test_derive_tool_schema_rejects_star_star_kwargs() -> None:
    detail = _rejection('def f(x: int, **options: str) -> None:\n    """Do it."""\n')
    assert detail.startswith("Function 'f' takes **options: ")


def test_derive_tool_schema_rejects_positional_only_params() -> None:
    detail = _rejection(
        'def f(x: int, /) -> None:\n    """Do it.\n\n    Args:\n        x: X.\n    """\n'
    )
    assert detail == (
        "Parameter 'x' of function 'f' is positional-only: tools are called with keyword "
        "arguments, so remove the '/'"
    )


@pytest.mark.parametrize(
    "annotation",
    [
        "Foo",
        "int | str",
        "Union[int, str]",
        "None",
        "tuple[int, int]",
        "list[int, str]",
        'Literal[1, "a"]',
        "Literal[None]",
        "Literal[99999999999999999999]",
        '"int |"',
        "set[str]",
    ],
)
def test_derive_tool_schema_rejects_unsupported_annotation(annotation: str) -> None:
    detail = _rejection(_one_param_tool(annotation))
    assert detail == (
        f"Parameter 'x' of function 'f' has an unsupported type annotation '{annotation}': "
        "supported are str, int, float, bool, list[X], Sequence[X], dict, Literal[...], "
        "Optional[X], X | None, Any"
    )


def test_derive_tool_schema_long_union_chain_is_rejected_not_crashed() -> None:
    detail = _rejection(_one_param_tool("|".join(["a"] * 1500)))
    assert detail.startswith(
        "Parameter 'x' of function 'f' has an unsupported type annotation 'a|a|"
    )
    assert "...': supported are" in detail


def test_derive_tool_schema_rejects_source_too_deep_to_parse() -> None:
    detail = _rejection(_one_param_tool("|".join(["a"] * 50_000)))
    assert detail == "source_code is nested too deeply to parse"
