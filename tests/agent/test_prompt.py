"""The system prompt compiler against Letta's exact layout.

Every expected string is written out in full, copied from the format in Letta's source
(letta/schemas/memory.py, letta/prompts/prompt_generator.py, letta/schemas/tool_rule.py,
letta/helpers/tool_rule_solver.py at v0.16.8)."""

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import pytest

from kelpie.agent import (
    LINE_NUMBER_WARNING,
    TOOL_RULES_DESCRIPTION,
    ClientSkill,
    append_available_skills,
    available_skills_section,
    compile_system_prompt,
    format_letta_time,
    tool_rule_prompt,
    uses_line_numbers,
)
from kelpie.errors import InvalidInput
from kelpie.schemas import Block, ToolRule
from kelpie.schemas._tools import (
    ChildToolRule,
    ConditionalToolRule,
    ContinueToolRule,
    InitToolRule,
    MaxCountPerStepToolRule,
    ParentToolRule,
    RequiredBeforeExitToolRule,
    RequiresApprovalToolRule,
    TerminalToolRule,
)

AGENT_ID: Final = "agent-11111111-2222-4333-8444-555555555555"
CONVERSATION_ID: Final = "conv-66666666-7777-4888-8999-000000000000"
WHEN: Final = dt.datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=dt.UTC)

METADATA: Final = """<memory_metadata>
- AGENT_ID: agent-11111111-2222-4333-8444-555555555555
- CONVERSATION_ID: default
- System prompt last recompiled: 2026-03-01 09:00:00 AM UTC+0000
- 0 previous messages between you and the user are stored in recall memory
</memory_metadata>"""

PERSONA_AND_HUMAN: Final = """<memory_blocks>
The following memory blocks are currently engaged in your core memory unit:

<persona>
<description>
The persona block
</description>
<metadata>
- chars_current=21
- chars_limit=5000
</metadata>
<value>
I am Sam.
I like tea.
</value>
</persona>

<human>
<description>

</description>
<metadata>
- read_only=true
- chars_current=0
- chars_limit=100
</metadata>
<value>

</value>
</human>

</memory_blocks>"""


def _block(
    label: str,
    value: str,
    *,
    description: str | None = None,
    limit: int = 5000,
    read_only: bool = False,
) -> Block:
    return Block(
        id=f"block-{label.replace('/', '-')}",
        label=label,
        value=value,
        description=description,
        limit=limit,
        read_only=read_only,
    )


def _persona_and_human() -> list[Block]:
    return [
        _block("persona", "I am Sam.\nI like tea.", description="The persona block"),
        _block("human", "", limit=100, read_only=True),
    ]


def _compile(system: str, blocks: Sequence[Block], **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "system": system,
        "blocks": blocks,
        "agent_type": "letta_v1_agent",
        "agent_id": AGENT_ID,
        "recompiled_at": WHEN,
    }
    fields.update(overrides)
    return compile_system_prompt(**fields)


# --- placeholder and memory blocks ------------------------------------------------------


def test_prompt_placeholder_replaced_in_place() -> None:
    out = _compile("You are Kelpie.\n{CORE_MEMORY}\nBye.", _persona_and_human())
    assert out == "You are Kelpie.\n" + PERSONA_AND_HUMAN + "\n\n" + METADATA + "\nBye."


def test_prompt_placeholder_absent_is_appended_after_blank_line() -> None:
    out = _compile("You are Kelpie.", _persona_and_human())
    assert out == "You are Kelpie.\n\n" + PERSONA_AND_HUMAN + "\n\n" + METADATA


def test_prompt_every_placeholder_is_replaced() -> None:
    out = _compile("{CORE_MEMORY}|{CORE_MEMORY}", [], agent_type="react_agent")
    memory = "\n\n" + METADATA
    assert out == memory + "|" + memory


def test_prompt_other_braces_are_left_alone() -> None:
    out = _compile("Use {name} and {} freely.", [])
    assert out == "Use {name} and {} freely.\n\n\n\n" + METADATA


def test_prompt_block_with_description_read_only_and_multiline_value() -> None:
    block = _block(
        "notes", "a\nb", description="Scratch notes\nsecond line", limit=42, read_only=True
    )
    out = _compile("S", [block])
    assert out == (
        """S

<memory_blocks>
The following memory blocks are currently engaged in your core memory unit:

<notes>
<description>
Scratch notes
second line
</description>
<metadata>
- read_only=true
- chars_current=3
- chars_limit=42
</metadata>
<value>
a
b
</value>
</notes>

</memory_blocks>

"""
        + METADATA
    )


def test_prompt_empty_blocks_omit_the_section() -> None:
    assert _compile("S", []) == "S\n\n\n\n" + METADATA


@pytest.mark.parametrize("agent_type", ["react_agent", "workflow_agent", "REACT_AGENT"])
def test_prompt_react_and_workflow_agents_get_no_blocks(agent_type: str) -> None:
    out = _compile("S", _persona_and_human(), agent_type=agent_type, line_numbered=True)
    assert out == "S\n\n\n\n" + METADATA


def test_prompt_blocks_render_in_given_order() -> None:
    out = _compile("S", list(reversed(_persona_and_human())))
    assert out.index("<human>") < out.index("<persona>")


# --- line-numbered variant --------------------------------------------------------------


def test_prompt_line_numbered_variant() -> None:
    blocks = [
        _block("notes", "line1\nline2", description="Notes", limit=100),
        _block("empty", "", limit=10, read_only=True),
    ]
    out = _compile("S", blocks, line_numbered=True)
    assert out == (
        """S

<memory_blocks>
The following memory blocks are currently engaged in your core memory unit:

<notes>
<description>
Notes
</description>
<metadata>
- chars_current=11
- chars_limit=100
</metadata>
<warning>
# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. \
Do NOT include line number prefixes in your memory edit tool calls.
</warning>
<value>
1→ line1
2→ line2
</value>
</notes>

<empty>
<description>

</description>
<metadata>
- read_only=true
- chars_current=0
- chars_limit=10
</metadata>
<warning>
# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. \
Do NOT include line number prefixes in your memory edit tool calls.
</warning>
<value>
</value>
</empty>

</memory_blocks>

"""
        + METADATA
    )


def test_prompt_line_numbered_keeps_wrapper_without_blocks() -> None:
    out = _compile("S", [], line_numbered=True)
    assert out == (
        "S\n\n<memory_blocks>\n"
        "The following memory blocks are currently engaged in your core memory unit:\n\n"
        "\n</memory_blocks>\n\n" + METADATA
    )


def test_prompt_line_number_warning_is_letta_text() -> None:
    assert LINE_NUMBER_WARNING == (
        "# NOTE: Line numbers shown below (with arrows like '1→') are to help during editing. "
        "Do NOT include line number prefixes in your memory edit tool calls."
    )


@pytest.mark.parametrize(
    ("agent_type", "endpoint", "expected"),
    [
        ("letta_v1_agent", "anthropic", True),
        ("memgpt_v2_agent", "anthropic", True),
        ("sleeptime_agent", "anthropic", True),
        ("memgpt_agent", "anthropic", False),
        ("react_agent", "anthropic", False),
        ("letta_v1_agent", "openai", False),
        ("letta_v1_agent", None, False),
    ],
)
def test_prompt_uses_line_numbers(agent_type: str, endpoint: str | None, expected: bool) -> None:
    assert uses_line_numbers(agent_type, endpoint) is expected


# --- git-memory variant -----------------------------------------------------------------


def test_prompt_git_memory_projection_layout() -> None:
    blocks = [
        _block("system/human", "human data", description="The human block"),
        _block("system/persona", "persona data\n", description="ignored in <self>"),
        _block("system/project/notes", "line one\nline two\n", description=" Notes \n"),
        _block("notes", "my notes", description="Personal notes"),
        _block("reference/api", "api specs"),
        _block("skills/search", "# skill", description="Search."),
    ]
    out = _compile("S", blocks, git_memory=True, line_numbered=True)
    assert out == (
        """S



Reminder: <projection> contains the local path of the memory file projection.

<self>
<projection>$MEMORY_DIR/system/persona.md</projection>
persona data
</self>

<memory>
<human>
  <projection>$MEMORY_DIR/system/human.md</projection>
  <description>The human block</description>
  human data
</human>
<project>
  <notes>
    <projection>$MEMORY_DIR/system/project/notes.md</projection>
    <description>Notes</description>
    line one
line two
  </notes>
</project>
<external_projection>
${MEMORY_DIR}/
├── reference/
│   └── api.md
└── notes.md
</external_projection>
</memory>

"""
        + METADATA
    )


def test_prompt_git_memory_persona_only() -> None:
    out = _compile("S", [_block("system/persona", "me")], git_memory=True)
    assert out == (
        "S\n\n\n\nReminder: <projection> contains the local path of the memory file projection."
        "\n\n<self>\n<projection>$MEMORY_DIR/system/persona.md</projection>\nme\n</self>"
        "\n\n" + METADATA
    )


def test_prompt_git_memory_without_system_blocks_renders_nothing() -> None:
    out = _compile("S", [_block("notes", "x")], git_memory=True)
    assert out == "S\n\n\n\n" + METADATA


# --- tool rules -------------------------------------------------------------------------


def test_prompt_tool_rules_section_order_and_text() -> None:
    rules: list[ToolRule] = [
        TerminalToolRule(tool_name="send_message", prompt_template="ignored {{ tool_name }}"),
        RequiresApprovalToolRule(tool_name="rm"),
        MaxCountPerStepToolRule(tool_name="web_search", max_count_limit=2),
        ParentToolRule(tool_name="open", children=["read", "close"]),
        ContinueToolRule(tool_name="memory_insert"),
        InitToolRule(tool_name="boot"),
        ConditionalToolRule(tool_name="route", child_output_mapping={"a": "x"}),
        RequiredBeforeExitToolRule(tool_name="save"),
        ChildToolRule(tool_name="plan", children=["act", "check"]),
    ]
    out = _compile("S", [], agent_type="react_agent", tool_rules=rules)
    assert out == (
        """S



<tool_usage_rules>
The following constraints define rules for tool usage and guide desired behavior. \
These rules must be followed to ensure proper tool execution and workflow. \
A single response may contain multiple tool calls.

<tool_rule>
memory_insert requires continuing your response when called
</tool_rule>
<tool_rule>
web_search: at most 2 use(s) per response
</tool_rule>
<tool_rule>
route will determine which tool to use next based on its output
</tool_rule>
<tool_rule>
After using plan, you must use one of these tools: act, check
</tool_rule>
<tool_rule>
read, close can only be used after open
</tool_rule>
<tool_rule>
send_message ends your response (yields control) when called
</tool_rule>
</tool_usage_rules>

"""
        + METADATA
    )


def test_prompt_tool_rules_follow_memory_blocks() -> None:
    rules: list[ToolRule] = [ContinueToolRule(tool_name="memory_insert")]
    out = _compile("S", _persona_and_human(), tool_rules=rules)
    assert out == (
        "S\n\n"
        + PERSONA_AND_HUMAN
        + "\n\n<tool_usage_rules>\n"
        + TOOL_RULES_DESCRIPTION
        + "\n\n<tool_rule>\nmemory_insert requires continuing your response when called\n"
        "</tool_rule>\n</tool_usage_rules>\n\n" + METADATA
    )


def test_prompt_rules_without_prompt_text_omit_the_section() -> None:
    rules: list[ToolRule] = [
        InitToolRule(tool_name="boot"),
        RequiresApprovalToolRule(tool_name="rm"),
        RequiredBeforeExitToolRule(tool_name="save"),
    ]
    assert _compile("S", [], tool_rules=rules) == "S\n\n\n\n" + METADATA


def test_prompt_tool_rule_prompt_single_rules() -> None:
    assert tool_rule_prompt(InitToolRule(tool_name="boot")) is None
    assert tool_rule_prompt(RequiresApprovalToolRule(tool_name="rm")) is None
    assert (
        tool_rule_prompt(RequiredBeforeExitToolRule(tool_name="save"))
        == "<tool_rule>save must be called before ending the conversation</tool_rule>"
    )


# --- metadata ---------------------------------------------------------------------------


def test_prompt_metadata_with_archival_count_and_tags() -> None:
    out = _compile(
        "{CORE_MEMORY}",
        [],
        agent_type="workflow_agent",
        conversation_id=CONVERSATION_ID,
        previous_message_count=42,
        archival_memory_count=156,
        archival_tags=["ideas", "meeting_notes", "project_x"],
    )
    assert out == (
        """

<memory_metadata>
- AGENT_ID: agent-11111111-2222-4333-8444-555555555555
- CONVERSATION_ID: conv-66666666-7777-4888-8999-000000000000
- System prompt last recompiled: 2026-03-01 09:00:00 AM UTC+0000
- 42 previous messages between you and the user are stored in recall memory
- 156 total memories you created are stored in archival memory (use tools to access them)
- Available archival memory tags: ideas, meeting_notes, project_x
</memory_metadata>"""
    )


def test_prompt_metadata_tags_without_archival_count() -> None:
    out = _compile(
        "{CORE_MEMORY}",
        [],
        agent_type="react_agent",
        previous_message_count=3,
        archival_tags=["a"],
    )
    assert out == (
        """

<memory_metadata>
- AGENT_ID: agent-11111111-2222-4333-8444-555555555555
- CONVERSATION_ID: default
- System prompt last recompiled: 2026-03-01 09:00:00 AM UTC+0000
- 3 previous messages between you and the user are stored in recall memory
- Available archival memory tags: a
</memory_metadata>"""
    )


def test_prompt_metadata_count_without_tags() -> None:
    out = _compile("{CORE_MEMORY}", [], agent_type="react_agent", archival_memory_count=1)
    assert out.endswith(
        "- 0 previous messages between you and the user are stored in recall memory\n"
        "- 1 total memories you created are stored in archival memory (use tools to access them)\n"
        "</memory_metadata>"
    )


# --- time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "timezone", "expected"),
    [
        (dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC), "UTC", "2026-03-01 09:00:00 AM UTC+0000"),
        (
            dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC),
            "Europe/Berlin",
            "2026-03-01 10:00:00 AM CET+0100",
        ),
        (
            dt.datetime(2026, 7, 1, 13, 5, 9, tzinfo=dt.UTC),
            "Europe/Berlin",
            "2026-07-01 03:05:09 PM CEST+0200",
        ),
        (
            dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC),
            "America/Los_Angeles",
            "2026-01-01 12:00:00 AM PST-0800",
        ),
        (
            dt.datetime(2026, 1, 1, 12, 30, tzinfo=dt.UTC),
            "UTC",
            "2026-01-01 12:30:00 PM UTC+0000",
        ),
        (
            dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "UTC",
            "2026-01-01 08:00:00 AM UTC+0000",
        ),
    ],
)
def test_prompt_format_letta_time(when: dt.datetime, timezone: str, expected: str) -> None:
    assert format_letta_time(when, timezone) == expected


def test_prompt_timestamp_in_agent_timezone() -> None:
    out = _compile("{CORE_MEMORY}", [], agent_type="react_agent", timezone="Europe/Berlin")
    assert "- System prompt last recompiled: 2026-03-01 10:00:00 AM CET+0100\n" in out


def test_prompt_no_timezone_prints_the_time_in_its_own_zone() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2), "X")
    assert format_letta_time(WHEN, None) == "2026-03-01 09:00:00 AM UTC+0000"
    assert format_letta_time(WHEN.astimezone(plus_two), "") == "2026-03-01 11:00:00 AM X+0200"


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "../etc/passwd", "/etc/localtime"])
def test_prompt_unknown_timezone_is_invalid_input(timezone: str) -> None:
    with pytest.raises(InvalidInput, match="Unknown timezone"):
        format_letta_time(WHEN, timezone)


def test_prompt_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        _compile("S", [], recompiled_at=dt.datetime(2026, 3, 1, 9, 0))


# --- available skills -------------------------------------------------------------------

SKILL_BLOCKS: Final = (
    _block("skills/searching", "# searching", description="Search past messages.\nMore."),
    _block("skills/creating/SKILL", "# creating", description="Create skills."),
    _block("skills/creating/references/x", "nested", description="Not listed."),
    _block("persona", "not a skill"),
)
CLIENT_SKILLS: Final = (
    ClientSkill("playwright", "Browser automation.", "skills/playwright/SKILL.md"),
    ClientSkill("google", "Google CLI.", " /home/u/.skills/google/SKILL.md "),
    ClientSkill("searching", "Client copy, skipped.", "elsewhere/searching/SKILL.md"),
    ClientSkill("blank", "", ""),
    ClientSkill("odd", "Odd one.", "tools/odd.md"),
)
SKILLS_SECTION: Final = """<available_skills>
${MEMORY_DIR}/skills
├── blank/
│   └── SKILL.md
├── creating/
│   └── SKILL.md (Create skills.)
└── searching/
    └── SKILL.md (Search past messages.)

/home/u/.skills
└── google/
    └── SKILL.md (Google CLI.)

skills
└── playwright/
    └── SKILL.md (Browser automation.)

tools
└── odd.md (Odd one.)
</available_skills>"""


def test_prompt_available_skills_section() -> None:
    assert available_skills_section(SKILL_BLOCKS, CLIENT_SKILLS) == "\n\n" + SKILLS_SECTION


def test_prompt_available_skills_empty() -> None:
    assert available_skills_section([_block("persona", "p")], []) == ""
    assert append_available_skills("text\n", blocks=[], client_skills=[]) == "text\n"


def test_prompt_client_skills_appended_for_a_request() -> None:
    out = _compile(
        "S", SKILL_BLOCKS, agent_type="react_agent", client_skills=[("x", "X.", "a/x/SKILL.md")]
    )
    assert out == (
        "S\n\n\n\n"
        + METADATA
        + """

<available_skills>
${MEMORY_DIR}/skills
├── creating/
│   └── SKILL.md (Create skills.)
└── searching/
    └── SKILL.md (Search past messages.)

a
└── x/
    └── SKILL.md (X.)
</available_skills>"""
    )


def test_prompt_stored_message_has_no_skills() -> None:
    out = _compile("S", SKILL_BLOCKS, agent_type="react_agent")
    assert out == "S\n\n\n\n" + METADATA
