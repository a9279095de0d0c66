"""Randomness and ids from one seed, so a simulated run can be replayed exactly.

Each subsystem forks its own stream by label: adding draws in one subsystem does not
shift the numbers another one sees.
"""

import random  # noqa: TID251 - the one place a Random is built; everything else goes through here
import secrets
import uuid
from typing import Final, final

SEED_BITS: Final = 64


@final
class Entropy:
    def __init__(self, seed: int, label: str = "root", *, secrets_from_os: bool = False) -> None:
        assert 0 <= seed < 2**SEED_BITS, "seed out of range"
        self.seed = seed
        self.label = label
        self._secrets_from_os = secrets_from_os
        # Seeding with a str hashes it with SHA-512: stable across processes and PYTHONHASHSEED.
        self._rng = random.Random(f"{seed}/{label}")

    def fork(self, label: str) -> "Entropy":
        return Entropy(self.seed, f"{self.label}/{label}", secrets_from_os=self._secrets_from_os)

    def random(self) -> float:
        return self._rng.random()

    def randint(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def choice_index(self, count: int) -> int:
        assert count > 0, "choice from an empty sequence"
        return self._rng.randrange(count)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self._rng.getrandbits(128), version=4)

    def secret_bytes(self, count: int) -> bytes:
        """Key material (API keys). The production Entropy draws it from the operating
        system's CSPRNG: a seeded stream is predictable to anyone who sees enough of its
        output (ids), so it must never make a secret. A simulated one draws from its stream,
        so a run replays exactly."""
        assert count > 0, "an empty secret"
        if self._secrets_from_os:
            return secrets.token_bytes(count)
        return self._rng.getrandbits(count * 8).to_bytes(count, "big")

    def new_id(self, prefix: str) -> str:
        """A Letta-style id, `<prefix>-<uuid4>`."""
        return f"{prefix}-{self.uuid4()}"
