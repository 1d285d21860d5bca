"""One JSON error shape for every failure: ``{"error": {"code": …, "message": …}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry import errors

STATUS_BY_ERROR: list[tuple[type[errors.RegistryError], int]] = [
    (errors.TooLarge, status.HTTP_413_CONTENT_TOO_LARGE),
    (errors.InvalidAdapter, status.HTTP_422_UNPROCESSABLE_CONTENT),
    (errors.InvalidInput, status.HTTP_400_BAD_REQUEST),
    (errors.NotFound, status.HTTP_404_NOT_FOUND),
    (errors.Conflict, status.HTTP_409_CONFLICT),
    (errors.Gone, status.HTTP_410_GONE),
    (errors.Unauthorized, status.HTTP_401_UNAUTHORIZED),
    (errors.Forbidden, status.HTTP_403_FORBIDDEN),
]


def error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status_code, headers=headers
    )


def status_for(error: errors.RegistryError) -> int:
    return next(code for cls, code in STATUS_BY_ERROR if isinstance(error, cls))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into the JSON error shape."""

    @app.exception_handler(errors.RegistryError)
    async def _registry_error(_request: Request, exc: errors.RegistryError) -> JSONResponse:
        challenge = isinstance(exc, errors.Unauthorized)
        headers = {"WWW-Authenticate": 'Bearer realm="lorareg"'} if challenge else None
        return error_response(status_for(exc), exc.code, exc.message, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error_response(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid_request", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, "http_error", str(exc.detail), headers=exc.headers)
