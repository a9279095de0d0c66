"""Why a connection could not be made, in one sentence a user can act on (it becomes a 4xx
detail or an error tool return): the command is missing, the server exited while starting
(with the end of its stderr), the URL is unreachable or refused us, or nothing answered."""

import errno
from typing import Final

import httpx2
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from kelpie.mcp._transports import CommandNotFound
from kelpie.mcp._types import McpServerSpec, StdioRefused

STDERR_QUOTE_CHARS_MAX: Final = 1000


def exception_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc`, exception groups (the SDK's task groups) flattened."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in exception_leaves(inner)]
    return [exc]


def describe_connect_failure(
    spec: McpServerSpec,
    failure: BaseException | None,
    *,
    ended: bool,
    timeout_s: float,
    http_status: int | None,
    stderr: str | None,
) -> str:
    """`failure` is what the connect raised (None: it was cut off by the connect timeout,
    or by the server ending the stream when `ended`)."""
    where = f"MCP server '{spec.name}'"
    leaves = exception_leaves(failure) if failure is not None else []
    if spec.transport == "stdio":
        sentence = _stdio_sentence(spec, where, leaves, ended=ended, timeout_s=timeout_s)
        return sentence + _stderr_quote(stderr)
    return _remote_sentence(spec, where, leaves, timeout_s=timeout_s, http_status=http_status)


def _stdio_sentence(
    spec: McpServerSpec,
    where: str,
    leaves: list[BaseException],
    *,
    ended: bool,
    timeout_s: float,
) -> str:
    for leaf in leaves:
        if isinstance(leaf, StdioRefused):
            return f"{where} was not started: {leaf}"
        if isinstance(leaf, CommandNotFound):
            return f"{where} could not start: the command '{leaf}' was not found on its PATH."
        if isinstance(leaf, PermissionError):
            return f"{where} could not start: the command '{spec.command}' is not executable."
        if isinstance(leaf, OSError) and leaf.errno in (errno.ENOENT, errno.ENOEXEC):
            return f"{where} could not start '{spec.command}': {leaf.strerror}."
    if ended or any(_is_connection_closed(leaf) for leaf in leaves):
        return f"{where} exited while starting (command '{spec.command}')."
    if not leaves:
        return f"{where} did not answer within {timeout_s:g} s while starting."
    return f"{where} could not be started: {_summary(leaves[0])}."


def _remote_sentence(
    spec: McpServerSpec,
    where: str,
    leaves: list[BaseException],
    *,
    timeout_s: float,
    http_status: int | None,
) -> str:
    at = f"{where} at {spec.url}"
    if http_status in (401, 403):
        return (
            f"{at} refused the connection with HTTP {http_status}: check the credentials "
            "in its headers."
        )
    if http_status is not None and http_status >= 400:
        return f"{at} answered HTTP {http_status} when connecting."
    for leaf in leaves:
        if isinstance(leaf, httpx2.ConnectError):
            return f"{at} could not be reached: {_summary(leaf)}."
        if isinstance(leaf, httpx2.TimeoutException):
            return f"{at} did not answer within {timeout_s:g} s while connecting."
    if not leaves:
        return f"{at} did not answer within {timeout_s:g} s while connecting."
    if any(_is_connection_closed(leaf) for leaf in leaves):
        return f"{at} closed the connection while connecting."
    return f"{at} could not be connected to: {_summary(leaves[0])}."


def _is_connection_closed(exc: BaseException) -> bool:
    return isinstance(exc, MCPError) and exc.code == CONNECTION_CLOSED


def _summary(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _stderr_quote(stderr: str | None) -> str:
    if not stderr:
        return ""
    if len(stderr) > STDERR_QUOTE_CHARS_MAX:
        stderr = "…" + stderr[-STDERR_QUOTE_CHARS_MAX:]
    return f" Its stderr ended with: {stderr}"
