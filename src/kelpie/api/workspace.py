"""Agents' workspaces (a Kelpie extension): `/v1/agents/{agent_id}/workspace`, the directory
an agent's code and custom tools run in, kept across runs and restarts. List it, and
download, upload (the request body is the file) or delete one file by its relative path."""

from typing import Annotated, Final

from fastapi import Path, Request, Response

from kelpie.api._deps import ServicesDep
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.errors import TooLarge
from kelpie.schemas import AGENT_PREFIX, WorkspaceFileEntry, WorkspaceListing
from kelpie.service import WORKSPACE_UPLOAD_BYTES_MAX

router = LettaRouter(prefix="/v1/agents/{agent_id}/workspace", tags=["workspace"])

FilePath = Annotated[
    str, Path(description="The file's path relative to the workspace, '/'-separated")
]


# Read by hand (streamed and counted), so documented by hand.
UPLOAD_BODY: Final = {
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
}


def _agent_id(agent_id: str) -> str:
    return checked_id(AGENT_PREFIX, agent_id, "agent_id")


@router.get("", response_model=WorkspaceListing)
async def list_workspace(agent_id: str, services: ServicesDep) -> Response:
    """The workspace's files (regular files, by path), the bytes they use and the quota."""
    return json_response(await services.workspaces.listing(_agent_id(agent_id)))


@router.get(
    "/files/{path:path}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_workspace_file(agent_id: str, path: FilePath, services: ServicesDep) -> Response:
    """The file's bytes."""
    data = await services.workspaces.read(_agent_id(agent_id), path)
    return Response(content=data, media_type="application/octet-stream")


@router.put(
    "/files/{path:path}",
    response_model=WorkspaceFileEntry,
    openapi_extra={"requestBody": UPLOAD_BODY},
)
async def upload_workspace_file(
    agent_id: str, path: FilePath, request: Request, services: ServicesDep
) -> Response:
    """Writes the request body as the file, making its directories; replaces a file that
    is there. 413 past the upload limit or the workspace's quota."""
    checked = _agent_id(agent_id)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > WORKSPACE_UPLOAD_BYTES_MAX:
            raise TooLarge(f"An upload may be at most {WORKSPACE_UPLOAD_BYTES_MAX} bytes")
        chunks.append(chunk)
    return json_response(await services.workspaces.write(checked, path, b"".join(chunks)))


@router.delete("/files/{path:path}")
async def delete_workspace_file(agent_id: str, path: FilePath, services: ServicesDep) -> None:
    """Deletes the file; 404 if there is none."""
    await services.workspaces.delete(_agent_id(agent_id), path)
