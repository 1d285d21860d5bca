"""One error shape for every failure: ``{"error": {"code": …, "message": …}}``, and the same code and
message in the ``X-Error-Code`` and ``X-Error-Message`` headers (all a HEAD answer can carry).

A header value must be printable ASCII, so the headers carry the message ``unicode_escape``-escaped
(``\\x00``, ``\\x7f``, ``\\n``, ``\\xe9``, ``\\U0001f4a5``, a backslash doubled) and cut to
:data:`MAX_HEADER_MESSAGE` characters; the JSON body keeps the message as it is."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import errors

MAX_HEADER_MESSAGE = 1000
MAX_PROBLEMS = 20  # validation errors listed in one message (a body may hold thousands)
STATUS_BY_ERROR: list[tuple[type[errors.RegistryError], int]] = [
    (errors.TooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (errors.InvalidAdapter, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (errors.InvalidInput, status.HTTP_400_BAD_REQUEST),
    (errors.NotFound, status.HTTP_404_NOT_FOUND),
    (errors.Conflict, status.HTTP_409_CONFLICT),
    (errors.Gone, status.HTTP_410_GONE),
    (errors.Unauthorized, status.HTTP_401_UNAUTHORIZED),
    (errors.Unavailable, status.HTTP_503_SERVICE_UNAVAILABLE),
    (errors.Forbidden, status.HTTP_403_FORBIDDEN),
]

HEADERS_BY_ERROR: list[tuple[type[errors.RegistryError], dict[str, str]]] = [
    (errors.Unauthorized, {"WWW-Authenticate": 'Bearer realm="lorareg"'}),
    (errors.Unavailable, {"Retry-After": "1"}),  # worth retrying soon: a lost connection is replaced at once
]


def header_safe(text: str, limit: int = MAX_HEADER_MESSAGE) -> str:
    """``text`` as a valid header value: printable ASCII, the rest backslash-escaped, at most ``limit``
    characters, no space at either end."""
    return text.encode("unicode_escape").decode("ascii")[:limit].strip(" ")


def error_response(
    request: Request, status_code: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The error as JSON, or, for HEAD, as headers alone."""
    headers = {
        "X-Error-Code": header_safe(code),
        "X-Error-Message": header_safe(message),
        **(headers or {}),
    }
    if request.method == "HEAD":
        return Response(status_code=status_code, headers=headers)
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status_code, headers=headers
    )


def status_for(error: errors.RegistryError) -> int:
    return next(code for cls, code in STATUS_BY_ERROR if isinstance(error, cls))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the JSON error shape."""

    @app.exception_handler(errors.RegistryError)
    async def _registry_error(request: Request, exc: errors.RegistryError) -> Response:
        headers = next((h for cls, h in HEADERS_BY_ERROR if isinstance(exc, cls)), None)
        return error_response(request, status_for(exc), exc.code, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        found = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in found[:MAX_PROBLEMS]
        )
        if len(found) > MAX_PROBLEMS:
            problems += f"; and {len(found) - MAX_PROBLEMS} more problems"
        return error_response(request, status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, "http_error", str(exc.detail), headers=exc.headers)
