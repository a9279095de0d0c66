"""What a server does once before it takes requests."""

from kelpie.env import Env
from kelpie.service._tools import ToolService


async def prepare(env: Env) -> None:
    """Makes sure the built-in tools exist, so agents can attach them by name."""
    await ToolService(env).add_base_tools()
