"""An agent's workspace as the REST API shows it (a Kelpie extension): the files its code
and custom tools left in their working directory, and how much of the quota they use."""

import datetime as dt

from kelpie.schemas._base import ResponseModel


class WorkspaceFileEntry(ResponseModel):
    path: str  # relative to the workspace, "/"-separated
    size_bytes: int
    modified_at: dt.datetime


class WorkspaceListing(ResponseModel):
    agent_id: str
    files: list[WorkspaceFileEntry]
    used_bytes: int
    quota_bytes: int
