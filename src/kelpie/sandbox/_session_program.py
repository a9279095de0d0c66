"""The program that runs inside an agent's gVisor session (stdlib only): a Python REPL
server. It keeps one namespace for the session's whole life, so variables, imports and open
files carry over from one execution to the next, and across a checkpoint and restore.

The channel is the container's stdin (host to session) and stdout (session to host), framed
as in `_frames`, with the process tier's messages: the host sends a job, the code's tool
calls travel as `{"call": name, "arguments": {...}}` answered by `{"ok": bool, "value": ...}`,
and `{"result": {...}}` ends the execution. Then the session waits for the next job. Once
started it announces itself with `{"ready": true}`; a restored session was checkpointed
waiting for a job and carries on waiting: the host's `{"ping": true}` gets `{"pong": true}`.

The channel is moved off fds 0 and 1 at start, so nothing the code runs (a subprocess, a
write to fd 1) can write into it. During an execution fds 1 and 2 are files of the session's
own /tmp (unlinked): prints, C-level writes and subprocesses' output all land there, in
order, and come back with the result."""

from __future__ import annotations

import io
import json
import os
import resource
import select
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# `python -I` leaves the script's directory off sys.path; the framing lives beside it (and
# leaves again, so the code's imports never find the sandbox's own modules).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if TYPE_CHECKING:
    from kelpie.sandbox import _frames, _snippet
else:
    import _frames
    import _snippet

del sys.path[0]

_CHUNK_BYTES = 65536
# A job (source and environment) and each tool's answer; the host checks its own side.
_FRAME_BYTES_MAX = 64 * 1024 * 1024
_OUTPUT_NAMES = ("stdout", "stderr")
# Per execution: the job gives the soft limit, the container's spec holds the hard one.
_RLIMITS = {
    "memory_bytes": "RLIMIT_AS",
    "processes": "RLIMIT_NPROC",
    "open_files": "RLIMIT_NOFILE",
    "file_bytes": "RLIMIT_FSIZE",
}


class Channel:
    def __init__(self, reader: int, writer: int) -> None:
        self.reader = reader
        self.writer = writer

    def send(self, message: dict[str, Any], *, lenient: bool = False) -> None:
        """Raises TypeError or ValueError (having sent nothing) for what JSON cannot carry,
        unless `lenient`: then such values travel as their str()."""
        data = json.dumps(message, default=str if lenient else None).encode()
        view = memoryview(_frames.encode(data))
        while view:
            try:
                view = view[os.write(self.writer, view) :]
            except BlockingIOError:
                _wait(self.writer, select.POLLOUT)

    def receive(self) -> Any:
        header = self._exactly(_frames.HEADER_BYTES)
        return json.loads(self._exactly(_frames.body_length(header, _FRAME_BYTES_MAX)))

    def _exactly(self, n_bytes: int) -> bytes:
        chunks = []
        while n_bytes:
            try:
                chunk = os.read(self.reader, min(n_bytes, _CHUNK_BYTES))
            except BlockingIOError:
                _wait(self.reader, select.POLLIN)
                continue
            if not chunk:
                raise EOFError("the host closed the channel")
            chunks.append(chunk)
            n_bytes -= len(chunk)
        return b"".join(chunks)


def _wait(fd: int, events: int) -> None:
    """Waits until `fd` is ready: the stdio gVisor hands over may be non-blocking (runsc's
    own processes share it and set the flag), whatever it was on the host's side."""
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


class Session:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.tools: dict[str, Any] = {}
        self.base_environment = dict(os.environ)
        self.null = os.open(os.devnull, os.O_RDWR)
        self.outputs = [_unlinked_file(f"/tmp/.kelpie-{name}") for name in _OUTPUT_NAMES]
        self.stdout = _text_stream(1)
        self.stderr = _text_stream(2)
        self.hard_limits = {
            name: resource.getrlimit(getattr(resource, rlimit))[1]
            for name, rlimit in _RLIMITS.items()
        }

    def execute(self, job: dict[str, Any]) -> dict[str, Any]:
        for path in job.get("sys_path", ()):
            if path not in sys.path:
                sys.path.append(path)  # after the standard library: nothing shadows it
        os.environ.clear()
        os.environ.update(self.base_environment)
        os.environ.update(job.get("environment", {}))
        self._install_tools(job.get("tools", []))
        for fd in self.outputs:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        os.dup2(self.outputs[0], 1)
        os.dup2(self.outputs[1], 2)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self._limit(job.get("limits", {}))
        try:
            result = _snippet.run(job["source_code"], self.namespace)
        finally:
            self._limit({})
            for stream in {sys.stdout, sys.stderr, self.stdout, self.stderr}:
                try:
                    stream.flush()
                except Exception:  # the code may have replaced or broken it
                    pass
            os.dup2(self.null, 1)
            os.dup2(self.null, 2)
            sys.stdout, sys.stderr = self.stdout, self.stderr
        output_max = int(job.get("output_bytes", 1 << 20))
        for name, fd in zip(_OUTPUT_NAMES, self.outputs, strict=True):
            size = os.fstat(fd).st_size
            result[name] = os.pread(fd, output_max, 0).decode(errors="replace")
            result[f"{name}_bytes"] = size
            os.ftruncate(fd, 0)
        return result

    def _limit(self, limits: dict[str, int]) -> None:
        """Soft limits for this execution (none of them above the container's hard ones);
        with none given, back to the hard limits the session itself runs under."""
        for name, rlimit in _RLIMITS.items():
            hard = self.hard_limits[name]
            soft = limits.get(name, hard)
            if hard != resource.RLIM_INFINITY:
                soft = min(soft, hard)
            try:
                resource.setrlimit(getattr(resource, rlimit), (soft, hard))
            except (OSError, ValueError):
                pass  # the code lowered the hard limit itself: it keeps what it chose

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        self.channel.send(message)
        answer: dict[str, Any] = self.channel.receive()
        return answer

    def _install_tools(self, tools: list[dict[str, Any]]) -> None:
        """The job's tools as functions of the namespace and of module `kelpie_tools`;
        stubs of an earlier execution's tools leave (unless the code rebound the name)."""
        for name, function in self.tools.items():
            if self.namespace.get(name) is function:
                del self.namespace[name]
        module = _snippet.tools_module(tools, self._ask)
        self.tools = {name: getattr(module, name) for name in module.__all__}
        self.namespace.update(self.tools)


def main() -> None:
    # The channel leaves fds 0 and 1 (dup'd fds are not inherited by subprocesses); so does
    # the container's stderr, kept for this program's own last words.
    channel = Channel(os.dup(0), os.dup(1))
    last_words = os.dup(2)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    os.umask(0o022)
    try:
        _serve(channel)
    except EOFError:
        os._exit(0)  # the host is gone: so is the session
    except BaseException:  # the session itself failed (not the code): say why, then end
        import traceback

        os.write(last_words, f"kelpie session failed: {traceback.format_exc()}".encode())
        os._exit(70)


def _serve(channel: Channel) -> None:
    session = Session(channel)
    channel.send({"ready": True})
    while True:
        job = channel.receive()
        if "ping" in job:  # the host, reattached after a restore, checks we carry on
            channel.send({"pong": True})
            continue
        result = session.execute(job)
        try:
            channel.send({"result": result}, lenient=True)
        except (TypeError, ValueError, RecursionError) as error:
            channel.send({"result": {"status": "error", "error": f"Result is not JSON: {error}"}})


def _unlinked_file(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    os.unlink(path)
    return fd


def _text_stream(fd: int) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", line_buffering=True)


if __name__ == "__main__":
    main()
