"""Agent files: `GET /v1/agents/{id}/export` and `POST /v1/agents/import` (multipart), with
the form fields `letta-client` sends and Letta's defaults for them."""

from typing import Final

import orjson
from fastapi import Request, Response
from starlette.datastructures import FormData, UploadFile

from kelpie.api._deps import ServicesDep
from kelpie.api._routing import LettaRouter, checked_id, json_response
from kelpie.errors import InvalidInput, ValidationFailed
from kelpie.schemas import AGENT_PREFIX, ImportedAgents
from kelpie.service import ImportOptions

# The largest agent file read; the request-body ceiling bounds it too.
AGENT_FILE_BYTES_MAX: Final = 32 * 1024 * 1024

router = LettaRouter(prefix="/v1/agents", tags=["agent files"])

_FLAG: Final = {"type": "boolean"}
_TEXT: Final = {"type": "string"}
# The form as `letta-client` sends it, documented by hand since it is read by hand.
IMPORT_FORM: Final = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The agent file"},
        "append_copy_suffix": {**_FLAG, "default": True},
        "override_existing_tools": {**_FLAG, "default": True},
        "strip_messages": {**_FLAG, "default": False},
        "name": _TEXT,
        "override_name": {**_TEXT, "deprecated": True},
        "model": _TEXT,
        "override_model_handle": {**_TEXT, "deprecated": True},
        "embedding": _TEXT,
        "override_embedding_handle": {**_TEXT, "deprecated": True},
        "project_id": _TEXT,
        "secrets": {**_TEXT, "description": "A JSON object of secrets for the agents"},
        "env_vars_json": {**_TEXT, "deprecated": True},
    },
}
IMPORT_BODY: Final = {
    "required": True,
    "content": {"multipart/form-data": {"schema": IMPORT_FORM}},
}

_TRUE: Final = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE: Final = frozenset({"false", "0", "no", "off", "f", "n"})


@router.get("/{agent_id}/export")
async def export_agent(
    agent_id: str,
    services: ServicesDep,
    scrub_messages: bool = False,
    conversation_id: str | None = None,
    use_legacy_format: bool = False,
    max_steps: int | None = None,  # deprecated by Letta; accepted and unused
) -> Response:
    """The agent as a Letta agent file, indented as Letta writes it."""
    if use_legacy_format:
        raise InvalidInput("Legacy format is not supported")
    file = await services.exporter.export(
        checked_id(AGENT_PREFIX, agent_id, "agent_id"),
        scrub_messages=scrub_messages,
        conversation_id=conversation_id,
    )
    body = orjson.dumps(file.model_dump(mode="json"), option=orjson.OPT_INDENT_2)
    return Response(content=body, media_type="application/json")


@router.post("/import", response_model=ImportedAgents, openapi_extra={"requestBody": IMPORT_BODY})
async def import_agent(request: Request, services: ServicesDep) -> Response:
    """Creates the file's agents with fresh ids, all or none; answers their ids. The
    newer field names win over the deprecated ones (`name` over `override_name`). The
    form is read by hand: declaring a dozen form parameters costs start-up time."""
    form = await request.form()
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed("file: an agent file upload is required")
        data = await upload.read(AGENT_FILE_BYTES_MAX + 1)
        if len(data) > AGENT_FILE_BYTES_MAX:
            raise InvalidInput(f"The agent file is over {AGENT_FILE_BYTES_MAX} bytes")
        headers = request.headers
        options = ImportOptions(
            append_copy_suffix=_flag(form, "append_copy_suffix", default=True),
            override_existing_tools=_flag(form, "override_existing_tools", default=True),
            strip_messages=_flag(form, "strip_messages", default=False),
            name=_text(form, "name") or _text(form, "override_name"),
            model=_text(form, "model") or _text(form, "override_model_handle"),
            embedding=_text(form, "embedding")
            or _text(form, "override_embedding_handle")
            or headers.get("x-override-embedding-model"),
            project_id=headers.get("x-project-id") or _text(form, "project_id"),
            secrets_json=_text(form, "secrets") or _text(form, "env_vars_json"),
        )
    finally:
        await form.close()
    agent_ids = await services.importer.import_file(data, options)
    return json_response(ImportedAgents(agent_ids=agent_ids))


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise ValidationFailed(f"{name}: Input should be a valid string, not a file")
    return value or None


def _flag(form: FormData, name: str, *, default: bool) -> bool:
    """A boolean form field, spelled as FastAPI accepts them."""
    value = _text(form, name)
    if value is None:
        return default
    if value.lower() not in _TRUE | _FALSE:
        raise ValidationFailed(f"{name}: Input should be a valid boolean, got '{value}'")
    return value.lower() in _TRUE
