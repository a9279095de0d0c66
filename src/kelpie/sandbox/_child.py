"""A child process the event loop can await, started without stalling the loop.

asyncio's own subprocess start under uvloop forks the whole server (hundreds of MiB of page
tables to copy) on the loop's thread: ~30 ms per start, and every request waits meanwhile.
`subprocess.Popen` in a thread uses vfork instead (well under a millisecond, off the loop);
the loop then reads the pipes and learns of the exit through a pidfd."""

import asyncio
import concurrent.futures
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO


class Child:
    def __init__(
        self,
        popen: "subprocess.Popen[bytes]",
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self._popen = popen
        self.stdout = stdout
        self.stderr = stderr
        self._transports = transports
        self._exited: asyncio.Future[None] | None = None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited (reaped without blocking)."""
        return self._popen.poll()

    async def wait(self) -> int:
        if self._popen.poll() is None:
            await self._exit()
        return self._popen.wait()  # it has exited: this reaps it at once

    def close_pipes(self) -> None:
        """Stops reading its output (the pipes also close by themselves at their end)."""
        for transport in self._transports:
            transport.close()

    async def _exit(self) -> None:
        if self._exited is None:
            loop = asyncio.get_running_loop()
            self._exited = loop.create_future()
            pidfd = os.pidfd_open(self._popen.pid)
            exited = self._exited

            def readable() -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                if not exited.done():
                    exited.set_result(None)

            loop.add_reader(pidfd, readable)
        await asyncio.shield(self._exited)


async def spawn(
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int],
    env: Mapping[str, str],
    threads: concurrent.futures.Executor,
) -> Child:
    """Starts `argv` in a new session, stdin from /dev/null, stdout and stderr piped.
    Not to be cancelled: the thread hands the caller's fds to the child (see WorkerProcess)."""

    def start() -> "subprocess.Popen[bytes]":
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            env=dict(env),
        )

    popen = await asyncio.get_running_loop().run_in_executor(threads, start)
    transports: list[asyncio.BaseTransport] = []
    readers: list[asyncio.StreamReader] = []
    try:
        for pipe in (popen.stdout, popen.stderr):
            assert pipe is not None
            reader, transport = await _reader(pipe)
            readers.append(reader)
            transports.append(transport)
    except BaseException:
        # Pipes a transport took are closed by it; the others here. Nothing left behind.
        for transport in transports:
            transport.close()
        for pipe in (popen.stdout, popen.stderr)[len(transports) :]:
            assert pipe is not None
            pipe.close()
        popen.kill()
        threads.submit(popen.wait)
        raise
    return Child(popen, readers[0], readers[1], transports)


async def _reader(pipe: IO[bytes]) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe
    )
    return reader, transport
