"""A bound on request bodies: every route but blob uploads (which ``max_blob_size`` bounds) refuses a
body over ``max_json_body`` bytes with a 413, by its Content-Length before reading it, or, for a body
streamed without one, as soon as the bytes read pass the limit (the handler's answer is dropped)."""

from __future__ import annotations

import re
from urllib.parse import unquote

from fastapi import Request, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.errors import error_response

BLOB_UPLOAD = re.compile(r"/api/v1/blobs/sha256:[^/]*")


class _Exceeded(Exception):
    """Raised into the handler reading a streamed body past the limit."""


class BodyLimit:
    """Pure ASGI middleware: 413 ``too_large`` for a body over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "PUT" and BLOB_UPLOAD.fullmatch(scope["path"])):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, receive, send, declared)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    raise _Exceeded
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the handler's answer to a body it could not read: ours replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _Exceeded:
            if started:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send, received)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        qualifier = "" if _content_length(scope) is not None else "at least "
        message = (
            f"request body of {qualifier}{size} bytes exceeds the limit of {self.limit} bytes "
            "(setting max_json_body, LOREG_MAX_JSON_BODY)"
        )
        response = error_response(
            Request(scope), status.HTTP_413_CONTENT_TOO_LARGE, "too_large", message, {"Connection": "close"}
        )
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PrintableUrl:
    """Pure ASGI middleware: 400 for a path or query holding a control character (``%00`` and the
    like), which no name, ref or id may contain and PostgreSQL text cannot hold."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            if _CONTROL.search(scope["path"]) or _CONTROL.search(unquote(query)):
                message = "the URL holds a control character (such as %00); names, refs and ids never do"
                response = error_response(
                    Request(scope, receive), status.HTTP_400_BAD_REQUEST, "invalid_input", message
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
