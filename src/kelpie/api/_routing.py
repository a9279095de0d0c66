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
    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, endpoint, **kwargs)
        alternate = path[:-1] if path.endswith("/") else f"{path}/"
        if alternate or self.prefix:
            super().add_api_route(alternate, endpoint, **{**kwargs, "include_in_schema": False})


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
