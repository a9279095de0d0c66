"""What a server does once before it takes requests."""

from typing import Final

from kelpie.env import Env
from kelpie.schemas import datetime_from_us
from kelpie.service._tools import ToolService

RESTART_FAILURE: Final = (
    "The server stopped while this run was in progress; its committed steps are kept"
)


async def prepare(env: Env) -> None:
    """Makes sure the built-in tools exist, so agents can attach them by name, and ends
    every run a previous process left unfinished: failed, with the reason, never running."""
    await ToolService(env).add_base_tools()
    for run in await env.store.active_runs():
        now = datetime_from_us(env.clock.now_us())
        error = {
            "error_type": "internal_error",
            "message": RESTART_FAILURE,
            "detail": RESTART_FAILURE,
        }
        await env.store.save_run(
            run.model_copy(
                update={
                    "status": "failed",
                    "stop_reason": "error",
                    "completed_at": max(now, run.created_at),
                    "metadata": {**(run.metadata or {}), "error": error},
                }
            )
        )
