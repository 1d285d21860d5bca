"""``X-Request-ID`` on every answer, errors included: the client's own id when it sent a sane one (at most
:data:`MAX_LENGTH` visible ASCII characters), else a new one. The id is the log lines' ``request_id``
while the request is served (:data:`registry.logs.current_request`)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from fastapi import Request, status
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.errors import error_response
from registry.logs import RequestContext, current_request

HEADER = "X-Request-ID"
MAX_LENGTH = 128
SANE = re.compile(rf"[\x21-\x7e]{{1,{MAX_LENGTH}}}")

logger = logging.getLogger("lorareg")


def request_id(scope: Scope) -> str:
    """The id the client sent, if sane, else a fresh one."""
    sent = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"")
    text = sent.decode("latin-1")
    return text if SANE.fullmatch(text) else uuid.uuid4().hex


class RequestId:
    """Pure ASGI middleware, outermost: sets the request's id for its log lines and on its answer. An
    exception the app did not turn into an answer is logged with the id and answered with a 500 that
    names it, so the log line can be found."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext(id=request_id(scope), started=time.perf_counter())
        token = current_request.set(context)
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)[HEADER] = context.id
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            logger.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            if started:
                raise
            message = f"internal server error; the server's log has the details under request id {context.id}"
            response = error_response(
                Request(scope), status.HTTP_500_INTERNAL_SERVER_ERROR, "internal_error", message
            )
            await response(scope, receive, sending)
        finally:
            current_request.reset(token)
