"""A child process the event loop can await, started without stalling the loop.

asyncio's own subprocess start under uvloop forks the whole server (hundreds of MiB of page
tables to copy) on the loop's thread: ~30 ms per start, and every request waits meanwhile.
`subprocess.Popen` in a thread uses vfork instead (well under a millisecond, off the loop);
the loop then reads the child's output and learns of its exit through a pidfd.

The output travels over socket pairs, not pipes: uvloop's pipe transports close a pipe's fd
twice (libuv, then the file object), and between the two closes a spawning thread may have
been given that fd number for a new pipe."""

import asyncio
import concurrent.futures
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence

_CHUNK_BYTES = 65536


class ChildOutput:
    """The host's end of one of the child's output streams."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock

    async def read(self, n_bytes: int = -1) -> bytes:
        """Up to `n_bytes` (b"" at the end), or with -1 everything until the end."""
        loop = asyncio.get_running_loop()
        if n_bytes >= 0:
            return await loop.sock_recv(self._sock, n_bytes)
        chunks = []
        while chunk := await loop.sock_recv(self._sock, _CHUNK_BYTES):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._sock.close()


class Child:
    def __init__(
        self, popen: "subprocess.Popen[bytes]", stdout: ChildOutput, stderr: ChildOutput
    ) -> None:
        self._popen = popen
        self.stdout = stdout
        self.stderr = stderr
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

    def close_output(self) -> None:
        self.stdout.close()
        self.stderr.close()

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
    """Starts `argv` in a new session, stdin from /dev/null, stdout and stderr captured.
    Not to be cancelled: the thread hands the caller's fds to the child (see WorkerProcess)."""
    out_ours, out_theirs = socket.socketpair()
    err_ours, err_theirs = socket.socketpair()

    def start() -> "subprocess.Popen[bytes]":
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out_theirs.fileno(),
            stderr=err_theirs.fileno(),
            pass_fds=tuple(pass_fds),
            start_new_session=True,
            env=dict(env),
        )

    try:
        popen = await asyncio.get_running_loop().run_in_executor(threads, start)
    except BaseException:
        out_ours.close()
        err_ours.close()
        raise
    finally:
        out_theirs.close()
        err_theirs.close()
    return Child(popen, ChildOutput(out_ours), ChildOutput(err_ours))
