"""Agents' workspaces through the API (a Kelpie extension): list, download, upload and
delete the files an agent's code keeps between runs. The sandbox layer owns the directory
and its safety rules; this maps its refusals to the error tree."""

from collections.abc import Callable
from typing import Final, TypeVar

from kelpie.env import Env
from kelpie.errors import InvalidInput, NotFound, TooLarge
from kelpie.sandbox import WorkspaceError, WorkspaceFileMissing, WorkspaceFull
from kelpie.schemas import WorkspaceFileEntry, WorkspaceListing, datetime_from_us

WORKSPACE_UPLOAD_BYTES_MAX: Final = 32 * 1024 * 1024
_T = TypeVar("_T")


class WorkspaceService:
    def __init__(self, env: Env) -> None:
        self._env = env

    async def listing(self, agent_id: str) -> WorkspaceListing:
        await self._check_agent(agent_id)
        workspaces = self._env.sandbox.workspaces
        files = _refusing(lambda: workspaces.files(agent_id))
        return WorkspaceListing(
            agent_id=agent_id,
            files=[
                WorkspaceFileEntry(
                    path=file.path,
                    size_bytes=file.size_bytes,
                    modified_at=datetime_from_us(file.modified_us),
                )
                for file in files
            ],
            used_bytes=sum(file.size_bytes for file in files),
            quota_bytes=workspaces.bytes_max,
        )

    async def read(self, agent_id: str, path: str) -> bytes:
        await self._check_agent(agent_id)
        workspaces = self._env.sandbox.workspaces
        return _refusing(lambda: workspaces.read(agent_id, path))

    async def write(self, agent_id: str, path: str, data: bytes) -> WorkspaceFileEntry:
        assert len(data) <= WORKSPACE_UPLOAD_BYTES_MAX, "the route caps uploads"
        await self._check_agent(agent_id)
        workspaces = self._env.sandbox.workspaces
        file = _refusing(lambda: workspaces.write(agent_id, path, data))
        return WorkspaceFileEntry(
            path=file.path,
            size_bytes=file.size_bytes,
            modified_at=datetime_from_us(file.modified_us),
        )

    async def delete(self, agent_id: str, path: str) -> None:
        await self._check_agent(agent_id)
        workspaces = self._env.sandbox.workspaces
        _refusing(lambda: workspaces.delete_file(agent_id, path))

    async def _check_agent(self, agent_id: str) -> None:
        if await self._env.store.get_agent(agent_id) is None:
            raise NotFound(f"Agent {agent_id} not found")


def _refusing(operation: Callable[[], _T]) -> _T:
    try:
        return operation()
    except WorkspaceFileMissing as error:
        raise NotFound(str(error)) from error
    except WorkspaceFull as error:
        raise TooLarge(str(error)) from error
    except WorkspaceError as error:
        raise InvalidInput(str(error)) from error
