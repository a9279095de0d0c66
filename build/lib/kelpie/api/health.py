"""Health: answers as soon as the server accepts connections."""

from typing import Final

from kelpie import __version__
from kelpie.api._routing import LettaRouter

# The Letta server release whose API Kelpie speaks; clients read it for telemetry only.
LETTA_COMPATIBLE_VERSION: Final = "0.16.7"

router = LettaRouter(prefix="/v1/health", tags=["health"])


@router.get("")
async def health() -> dict[str, str]:
    return {"status": "ok", "version": LETTA_COMPATIBLE_VERSION, "kelpie_version": __version__}
