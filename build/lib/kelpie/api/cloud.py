"""Letta Cloud routes that letta-code calls and tolerates a 404 from (letta-api.md §1.9,
§4): each answers 404 with a `detail` that says why, instead of a bare "Not Found"."""

from typing import Final

from fastapi import Request

from kelpie.api._routing import LettaRouter
from kelpie.errors import NotFound

METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Paths (FastAPI templates; `{rest:path}` takes the remainder) served only by Letta Cloud.
CLOUD_PATHS: Final = (
    "/v1/metadata/{rest:path}",
    "/v1/providers",
    "/v1/providers/{rest:path}",
    "/v1/tools/mcp/servers/connect",
    "/v1/_internal_search/{rest:path}",
    "/v1/agents/{agent_id}/repositories",
    "/v1/templates",
    "/v1/templates/{rest:path}",
    "/v1/git/{rest:path}",
    "/v1/organizations/{rest:path}",
    "/v1/client-side-access-tokens",
    "/v1/client-side-access-tokens/{rest:path}",
    "/v1/environments",
    "/v1/environments/{rest:path}",
)

router = LettaRouter(tags=["cloud only"])


async def cloud_only(request: Request) -> None:
    raise NotFound(
        f"{request.method} {request.url.path} is a Letta Cloud feature;"
        " this Kelpie server does not provide it"
    )


for _path in CLOUD_PATHS:
    router.add_api_route(_path, cloud_only, methods=METHODS, include_in_schema=False)
