"""Routing conventions of the Letta API: every path answers with and without a trailing
slash (no redirect), JSON bodies are decoded strictly, handlers return ready-serialised
JSON, and each operation documents the errors that can answer it (`_responses`)."""

import json
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import compile_path

from kelpie.api._responses import Responses, error_responses
from kelpie.errors import ValidationFailed
from kelpie.schemas import JsonRejected, decode_json, id_pattern, is_valid_id


class StrictJsonRequest(Request):
    """Decodes JSON bodies with `decode_json`: a lone surrogate, NaN or Infinity anywhere
    in any body is a 422 naming the field, before any handler sees it. (Malformed JSON
    stays FastAPI's `json.JSONDecodeError` path, a 422 too.)"""

    _strict_json: Any

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            try:
                self._strict_json = decode_json(await self.body())
            except JsonRejected as error:
                # FastAPI turns any other exception raised here into a bare 400.
                raise HTTPException(status_code=422, detail=error.detail) from error
        return self._strict_json


class LettaRoute(APIRoute):
    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        responses: Responses | None = None,
        methods: set[str] | list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        # The errors go in before FastAPI builds the route: it makes the response models
        # from `responses` then. What a route declares itself wins, status by status.
        dependant = get_dependant(path=compile_path(path)[1], call=endpoint)
        declared_body = "requestBody" in (kwargs.get("openapi_extra") or {})
        derived = error_responses(path, methods or ["GET"], dependant, declared_body=declared_body)
        responses = {**derived, **(responses or {})}
        super().__init__(path, endpoint, responses=responses, methods=methods, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler


class LettaRouter(APIRouter):
    """Routes are declared without a trailing slash; `GuardMiddleware` strips one from the
    request path, so both forms reach the same route with no redirect."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(route_class=LettaRoute, **kwargs)

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
