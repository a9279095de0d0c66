"""What a server does once before it takes requests."""

from typing import Final

from kelpie.agent import closing_items
from kelpie.env import Env
from kelpie.schemas import Run, UsageStatistics, datetime_from_us
from kelpie.service._streams import to_event
from kelpie.service._tools import ToolService

RESTART_FAILURE: Final = (
    "The server stopped while this run was in progress; its committed steps are kept"
)


async def prepare(env: Env) -> None:
    """Makes sure the built-in tools exist, so agents can attach them by name, and ends
    every run a previous process left unfinished: failed, with the reason, never running;
    a background run's stored stream gets its end, so readers see the run finish."""
    await env.sandbox.start()
    await ToolService(env).add_base_tools()
    for run in await env.store.active_runs():
        await _fail_left_over(env, run)


async def _fail_left_over(env: Env, run: Run) -> None:
    now = datetime_from_us(env.clock.now_us())
    error = {"error_type": "internal_error", "message": RESTART_FAILURE, "detail": RESTART_FAILURE}
    failed = run.model_copy(
        update={
            "status": "failed",
            "stop_reason": "error",
            "completed_at": max(now, run.created_at),
            "metadata": {**(run.metadata or {}), "error": error},
        }
    )
    events = []
    if run.background:
        usage = run.usage or UsageStatistics(run_ids=[run.id])
        problem = ("internal_error", RESTART_FAILURE, RESTART_FAILURE)
        items: list[dict[str, object] | None] = [
            *closing_items(run.id, "error", usage, problem),
            None,
        ]
        seq = await env.store.last_run_seq(run.id)
        events = [to_event(run.id, seq + index, item) for index, item in enumerate(items, 1)]
    await env.store.save_run(failed, events)
