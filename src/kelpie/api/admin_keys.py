"""API keys (a Kelpie extension): `/v1/admin/api-keys`, create (the key is in the answer,
and only there), list and revoke.

Only an admin may call these: a request made with the server password or with a key
created with `admin: true`. On an open server (no password, no key yet) there is no admin,
so the first key is made with `kelpie keys create --admin` (or a password is set): a
client that merely reaches an open server cannot lock everyone else out.
"""

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response

from kelpie.api._auth import CREDENTIAL_SCOPE_KEY, Credential
from kelpie.api._deps import ServicesDep
from kelpie.api._responses import raises
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.schemas import API_KEY_PREFIX, ApiKeyCreate, ApiKeyCreated, ApiKeyInfo

# Every route needs an admin (`_require_admin`): 403 without one.
router = LettaRouter(prefix="/v1/admin/api-keys", tags=["admin"], responses=raises(403))

_NO_ADMIN = (
    "Managing API keys needs the server password or an admin API key; this server has"
    " neither yet: set KELPIE_SERVER_PASSWORD or run `kelpie keys create --admin`"
)


async def _require_admin(request: Request) -> None:
    credential = request.scope.get(CREDENTIAL_SCOPE_KEY)
    if credential is None:
        raise HTTPException(status_code=403, detail=_NO_ADMIN)
    assert isinstance(credential, Credential)
    if not credential.admin:
        assert credential.key is not None
        detail = (
            f"API key '{credential.key.name}' may not manage API keys: use the server"
            " password or a key created with admin"
        )
        raise HTTPException(status_code=403, detail=detail)


AdminOnly = Annotated[None, Depends(_require_admin)]


@router.post("", response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyCreate, services: ServicesDep, _: AdminOnly) -> Response:
    """Makes a key. The answer's `key` is the only copy: the server keeps a digest."""
    return json_response(await services.api_keys.create(body))


@router.get("", response_model=list[ApiKeyInfo])
async def list_api_keys(services: ServicesDep, _: AdminOnly) -> Response:
    """Every key ever made, oldest first, revoked and expired ones included."""
    return json_response(await services.api_keys.list_keys())


@router.delete("/{key_id}", response_model=ApiKeyInfo)
async def revoke_api_key(key_id: str, services: ServicesDep, _: AdminOnly) -> Response:
    """Revokes the key at once (its record stays, with `revoked_at`); 404 if unknown."""
    key_id = checked_id(API_KEY_PREFIX, key_id, "key_id")
    return json_response(await services.api_keys.revoke(key_id))
