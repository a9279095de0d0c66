"""The configured LLM and embedding models."""

from fastapi import Request, Response

from kelpie.api._routing import LettaRouter, json_response
from kelpie.env import Env
from kelpie.schemas import EmbeddingModel, Model

router = LettaRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=list[Model])
async def list_models(
    request: Request,
    provider_category: list[str] | None = None,
    provider_name: str | None = None,
    provider_type: str | None = None,
) -> Response:
    env: Env = request.app.state.env
    models = [
        model
        for model in await env.models.list_llm_models()
        if (provider_name is None or model.provider_name == provider_name)
        and (provider_type is None or model.provider_type == provider_type)
        and (not provider_category or model.provider_category in provider_category)
    ]
    return json_response(models)


@router.get("/embedding", response_model=list[EmbeddingModel])
async def list_embedding_models(request: Request) -> Response:
    env: Env = request.app.state.env
    return json_response(await env.models.list_embedding_models())
