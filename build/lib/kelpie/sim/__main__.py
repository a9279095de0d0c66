"""`python -m kelpie.sim --seed N [--steps M]`: run one seed and print its trace hash last.
`python -m kelpie.sim --sweep N [--first-seed S]`: run N seeds, report failures and speed."""

import sys
import time
from typing import Final

import click

from kelpie.sim._faults import FaultPlan
from kelpie.sim._planted import PLANTED_BUGS, PLANTED_MCP_BUGS, PLANTED_SANDBOX_BUGS
from kelpie.sim._run import CLIENTS_DEFAULT, STEPS_DEFAULT, SimResult, run_seed

SWEEP_FAILURES_SHOWN_MAX: Final = 20


def _describe(result: SimResult) -> str:
    status = "ok" if result.ok else f"FAILED: {result.failure}"
    return (
        f"seed={result.seed} operations={result.operations} crashes={result.crashes}"
        f" faults=[{result.plan.describe()}] {status}"
    )


@click.command()
@click.option("--seed", type=int, default=None, help="Run this one seed (replays exactly).")
@click.option("--steps", type=int, default=STEPS_DEFAULT, show_default=True)
@click.option("--clients", type=int, default=CLIENTS_DEFAULT, show_default=True)
@click.option("--faults", default=None, help="kind=p,... (default: drawn from the seed); 'none'")
@click.option("--no-shuffle", is_flag=True, help="Run ready callbacks in FIFO order.")
@click.option("--sweep", type=int, default=None, help="Run this many seeds.")
@click.option("--first-seed", type=int, default=1, show_default=True)
@click.option(
    "--plant",
    type=click.Choice(sorted([*PLANTED_BUGS, *PLANTED_SANDBOX_BUGS, *PLANTED_MCP_BUGS])),
    default=None,
    help="Plant a known bug, to see the simulator catch it.",
)
def main(
    seed: int | None,
    steps: int,
    clients: int,
    faults: str | None,
    no_shuffle: bool,
    sweep: int | None,
    first_seed: int,
    plant: str | None,
) -> None:
    """Deterministic simulation of the Kelpie server under fault injection."""
    plan = None if faults is None else FaultPlan.parse(faults)
    wrapper = None if plant is None else PLANTED_BUGS.get(plant)
    sandbox = None if plant is None else PLANTED_SANDBOX_BUGS.get(plant)
    mcp = None if plant is None else PLANTED_MCP_BUGS.get(plant)
    if sweep is None:
        result = run_seed(
            seed if seed is not None else first_seed,
            steps=steps,
            plan=plan,
            clients=clients,
            shuffle=not no_shuffle,
            store_wrapper=wrapper,
            sandbox_factory=sandbox,
            mcp_factory=mcp,
        )
        print(f"fault plan: {result.plan.describe()}")
        print(_describe(result))
        print(f"trace_hash={result.trace_hash}")
        sys.exit(0 if result.ok else 1)
    started = time.perf_counter()
    failed = []
    for current in range(first_seed, first_seed + sweep):
        result = run_seed(
            current,
            steps=steps,
            plan=plan,
            clients=clients,
            store_wrapper=wrapper,
            sandbox_factory=sandbox,
            mcp_factory=mcp,
        )
        if not result.ok:
            failed.append(result)
            if len(failed) <= SWEEP_FAILURES_SHOWN_MAX:
                print(_describe(result))
                print(f"  replay: python -m kelpie.sim --seed {current} --steps {steps}")
    elapsed = time.perf_counter() - started
    print(f"{sweep} seeds, {len(failed)} failed, {elapsed:.1f} s, {sweep / elapsed:.2f} seeds/s")
    sys.exit(1 if failed else 0)


main()
