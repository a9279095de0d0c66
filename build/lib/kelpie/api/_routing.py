"""Routing conventions of the Letta API: every path answers with and without a trailing
slash (no redirect), and handlers return ready-serialised JSON."""

import json
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from kelpie.errors import ValidationFailed
from kelpie.schemas import id_pattern, is_valid_id


class LettaRouter(APIRouter):
    """Routes are declared without a trailing slash; `GuardMiddleware` strips one from the
    request path, so both forms reach the same route with no redirect."""

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        assert not path.endswith("/"), f"declare {path!r} without a trailing slash"
        super().add_api_route(path, endpoint, **kwargs)


def json_response(content: BaseModel | Sequence[BaseModel] | Sequence[str]) -> Response:
    """Serialises with pydantic's Rust encoder once, skipping FastAPI's re-validation."""
    if isinstance(content, BaseModel):
        body = content.model_dump_json()
    else:
        items = [
            item.model_dump_json() if isinstance(item, BaseModel) else json.dumps(item)
            for item in content
        ]
        body = f"[{','.join(items)}]"
    return Response(content=body, media_type="application/json")


def checked_id(prefix: str, value: str, name: str) -> str:
    """Letta answers a malformed path id with 422 and the pattern it expected."""
    if not is_valid_id(prefix, value):
        raise ValidationFailed(f"{name}: String should match pattern '{id_pattern(prefix)}'")
    return value
