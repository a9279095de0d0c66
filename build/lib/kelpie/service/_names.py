"""Friendly random agent names, as Letta gives agents created without one."""

from typing import Final

from kelpie.env import Entropy

_ADJECTIVES: Final = (
    "amber", "brave", "calm", "clever", "crimson", "eager", "gentle", "golden", "jolly",
    "lively", "lucky", "mellow", "nimble", "quiet", "rapid", "silver", "steady", "swift",
    "tidy", "vivid", "witty", "young", "zesty", "bold",
)  # fmt: skip
_NOUNS: Final = (
    "otter", "heron", "falcon", "badger", "lynx", "marten", "osprey", "puffin", "raven",
    "salmon", "seal", "stoat", "swift", "tern", "vole", "wren", "kelpie", "selkie",
    "finch", "hare", "ibis", "kite", "newt", "robin",
)  # fmt: skip


def random_agent_name(entropy: Entropy) -> str:
    adjective = _ADJECTIVES[entropy.choice_index(len(_ADJECTIVES))]
    noun = _NOUNS[entropy.choice_index(len(_NOUNS))]
    return f"{adjective}-{noun}-{entropy.randint(100, 999)}"
