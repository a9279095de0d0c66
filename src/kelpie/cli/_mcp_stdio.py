"""stdio MCP servers started confined: the MCP client's `StdioLauncher` over the sandbox's
`ProgramSandbox`, with the operator's policy on top. A server's config may ask for the
network and for host paths (`sandbox: {network, read_only_paths, read_write_paths}`); the
paths must lie inside a directory the operator lists in KELPIE_MCP_STDIO_PATHS (anyone who
may register a server could otherwise hand it any directory of the host). When the host
cannot confine, every stdio server is refused saying why, unless the operator runs them
unconfined (KELPIE_MCP_STDIO_UNCONFINED=1, which wires no launcher at all)."""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from kelpie.mcp import McpServerSpec, StdioLaunch, StdioRefused
from kelpie.sandbox import ConfineRefused, ProgramSandbox

PATHS_VARIABLE: Final = "KELPIE_MCP_STDIO_PATHS"
UNCONFINED_VARIABLE: Final = "KELPIE_MCP_STDIO_UNCONFINED"


class ConfinedStdioLauncher:
    def __init__(self, programs: ProgramSandbox, *, allowed_paths: Sequence[Path] = ()) -> None:
        self._programs = programs
        self._allowed = tuple(Path(os.path.realpath(path)) for path in allowed_paths)

    async def launch(
        self, server: McpServerSpec, command: str, env: Mapping[str, str]
    ) -> StdioLaunch:
        for path in (*server.read_only_paths, *server.read_write_paths):
            self._check_allowed(path)
        try:
            confined = await self._programs.confine(
                [command, *server.args],
                env,
                network=server.network,
                read_only=server.read_only_paths,
                read_write=server.read_write_paths,
            )
        except ConfineRefused as error:
            raise StdioRefused(
                f"it cannot run confined: {error} (an operator may run stdio servers "
                f"unconfined with {UNCONFINED_VARIABLE}=1)"
            ) from error
        return StdioLaunch(
            command=confined.argv[0],
            args=tuple(confined.argv[1:]),
            env=confined.env,
            release=confined.release,
        )

    def _check_allowed(self, path: str) -> None:
        real = Path(os.path.realpath(path))
        if not os.path.isabs(path) or not any(real.is_relative_to(a) for a in self._allowed):
            allowed = os.pathsep.join(str(a) for a in self._allowed) or "nothing"
            raise StdioRefused(
                f"the path '{path}' it is granted is not inside a directory the operator "
                f"allows in {PATHS_VARIABLE} (which allows {allowed})"
            )
