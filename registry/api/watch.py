"""Long polls: a watch route answers as soon as what it watches changes, or 304 when its timeout passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import anyio
from fastapi import Request, Response, status

T = TypeVar("T")
WATCH_POLL_SECONDS = 0.25
WATCH_MAX_TIMEOUT = 60.0


async def long_poll(request: Request, check: Callable[[], T | None], timeout: float) -> T | Response:
    """``check()`` (a short read transaction, in a worker thread) every ``WATCH_POLL_SECONDS`` until it
    answers: that answer; 304 once ``timeout`` passes or the client has gone. Between checks the request
    holds neither a session nor a thread."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await anyio.to_thread.run_sync(check)
        if answer is not None:
            return answer
        remaining = deadline - time.monotonic()
        if remaining <= 0 or await request.is_disconnected():
            return Response(status_code=status.HTTP_304_NOT_MODIFIED)
        await anyio.sleep(min(WATCH_POLL_SECONDS, remaining))
