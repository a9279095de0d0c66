"""The first program inside a confined long-lived program's sandbox (stdlib only, started by
bubblewrap with the seccomp filter loaded and the namespaces made): it confines itself with
Landlock (which survives exec), sets its rlimits, then becomes the program with exactly the
environment it was given, which travels in one variable (never argv, which any host user
can read in /proc).

    python -I -S -B _program_exec.py [--network] [--write DIR]... [--rlimit NAME=SOFT:HARD]...
        -- PROGRAM ARG...
"""

from __future__ import annotations

import json
import os
import resource
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from kelpie.sandbox import _landlock
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _landlock

    del sys.path[0]

ENV_VARIABLE = "KELPIE_PROGRAM_ENV"
SCRATCH_DIR = "/tmp"
EXIT_CANNOT_RUN = 127
EXIT_BAD_USAGE = 125


def main(argv: list[str]) -> None:
    try:
        split = argv.index("--")
    except ValueError:
        _fail("no program given", EXIT_BAD_USAGE)
    options, program = argv[1:split], argv[split + 1 :]
    if not program or not os.path.isabs(program[0]):
        _fail("the program must be an absolute path", EXIT_BAD_USAGE)
    writable = [SCRATCH_DIR]
    rlimits: list[tuple[int, int, int]] = []
    network = False
    i = 0
    while i < len(options):
        option = options[i]
        if option == "--network":
            network = True
        elif option == "--write":
            i += 1
            writable.append(options[i])
        elif option == "--rlimit":
            i += 1
            name, _, bounds = options[i].partition("=")
            soft, _, hard = bounds.partition(":")
            rlimits.append((getattr(resource, name), int(soft), int(hard)))
        else:
            _fail(f"unknown option {option}", EXIT_BAD_USAGE)
        i += 1
    environment = json.loads(os.environ.get(ENV_VARIABLE, "{}"))
    assert isinstance(environment, dict)
    try:
        _landlock.restrict(read=["/"], write_files=["/dev"], read_write=writable, network=network)
        for which, soft_limit, hard_limit in rlimits:
            resource.setrlimit(which, (soft_limit, hard_limit))
    except (OSError, ValueError) as error:
        _fail(f"could not confine itself: {error}", EXIT_BAD_USAGE)
    os.umask(0o022)
    try:
        os.execve(program[0], program, environment)
    except OSError as error:
        _fail(f"cannot run {program[0]}: {error.strerror}", EXIT_CANNOT_RUN)


def _fail(message: str, status: int) -> NoReturn:
    sys.stderr.write(f"kelpie sandbox: {message}\n")
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    main(sys.argv)
