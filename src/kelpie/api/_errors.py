"""The one place errors become HTTP responses: Kelpie's error tree by status, request
validation as 422 with a readable `detail`, anything unexpected as a logged 500."""

import logging
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from kelpie.errors import (
    Conflict,
    Expired,
    InvalidInput,
    KelpieError,
    NotFound,
    TooLarge,
    Unavailable,
    ValidationFailed,
)
from kelpie.schemas import describe_validation_errors

# Most specific first: the first class in an error's MRO found here decides its status.
STATUS_BY_ERROR: Final[dict[type[KelpieError], int]] = {
    ValidationFailed: 422,
    InvalidInput: 400,
    NotFound: 404,
    Conflict: 409,
    Expired: 410,
    TooLarge: 413,
    Unavailable: 503,
    KelpieError: 500,
}
RETRY_AFTER_S: Final = 1
# Statuses the SDK would retry that must not be retried blindly (the write may have landed).
_NO_RETRY_STATUSES: Final = frozenset({409})

log = logging.getLogger(__name__)


def status_of(error_type: type[KelpieError]) -> int:
    for cls in error_type.__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    raise AssertionError("KelpieError is in the table")


async def _kelpie_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, KelpieError)
    status = status_of(type(error))
    headers = None
    if status in _NO_RETRY_STATUSES:
        headers = {"x-should-retry": "false"}
    elif status == 503:
        headers = {"retry-after": str(RETRY_AFTER_S)}
    body: dict[str, object] = {"detail": error.detail}
    run_id = getattr(error, "run_id", None)
    if run_id is not None:
        body["run_id"] = run_id  # a busy conversation names the run it is busy with
    return JSONResponse(body, status_code=status, headers=headers)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return JSONResponse({"detail": describe_validation_errors(error.errors())}, status_code=422)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "An unknown error occurred"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KelpieError, _kelpie_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
