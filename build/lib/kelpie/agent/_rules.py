"""Tool rules (Letta §2.13): which tools the model may call next, and whether a call ends,
continues or pauses the turn."""

import json
from collections.abc import Sequence

from kelpie.schemas import ToolRule


class ToolRuleSolver:
    def __init__(self, rules: Sequence[ToolRule]) -> None:
        self._rules = list(rules)
        self.terminal = {r.tool_name for r in rules if r.type == "exit_loop"}
        self.continuing = {r.tool_name for r in rules if r.type == "continue_loop"}
        self.first = [r.tool_name for r in rules if r.type == "run_first"]
        self.required_before_exit = [r.tool_name for r in rules if r.type == "required_before_exit"]
        self.needs_approval = {r.tool_name for r in rules if r.type == "requires_approval"}
        self.max_count = {
            r.tool_name: r.max_count_limit for r in rules if r.type == "max_count_per_step"
        }

    def allowed(
        self, available: Sequence[str], called: Sequence[str], last_output: str | None
    ) -> tuple[list[str], bool]:
        """The tools the model may call now, and whether it must call one of them."""
        names = list(available)
        if not called and self.first:
            return [n for n in names if n in self.first], True
        if called:
            children = self._children_of(called[-1], last_output)
            if children is not None:
                names = [n for n in names if n in children]
                return [n for n in names if self._under_limit(n, called)], bool(names)
        parents = {
            r.tool_name: set(r.children) for r in self._rules if r.type == "parent_last_tool"
        }
        last = called[-1] if called else None
        names = [
            n
            for n in names
            if self._under_limit(n, called)
            and not any(n in kids and last != parent for parent, kids in parents.items())
        ]
        return names, False

    def _children_of(self, tool: str, output: str | None) -> list[str] | None:
        for rule in self._rules:
            if rule.tool_name != tool:
                continue
            if rule.type == "constrain_child_tools":
                return list(rule.children)
            if rule.type == "conditional":
                key = _output_key(output)
                child = rule.child_output_mapping.get(key) if key is not None else None
                if child is None:
                    child = rule.default_child
                return [child] if child else None
        return None

    def _under_limit(self, name: str, called: Sequence[str]) -> bool:
        limit = self.max_count.get(name)
        return limit is None or called.count(name) < limit

    def missing_before_exit(self, called: Sequence[str]) -> list[str]:
        return [name for name in self.required_before_exit if name not in called]


def _output_key(output: str | None) -> str | None:
    """Conditional rules map the tool's unwrapped return value, as a string."""
    if output is None:
        return None
    try:
        packaged = json.loads(output)
    except ValueError:
        return output
    if isinstance(packaged, dict) and "message" in packaged:
        return str(packaged["message"])
    return output
