"""Serving a blob's bytes: a presigned redirect on object storage, or the bytes themselves (single
``Range`` requests, HEAD) streamed from the blob store in a thread."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import anyio.to_thread
from fastapi import Request, Response, status
from fastapi.responses import RedirectResponse, StreamingResponse

from registry.config import Settings
from registry.storage import BlobStore

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def stream_in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Yield from a blocking iterator (a blob store read) without blocking the event loop."""
    sentinel = object()
    while (chunk := await anyio.to_thread.run_sync(next, chunks, sentinel)) is not sentinel:
        yield chunk  # type: ignore[misc]


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` for a single ``bytes=`` range, or None if it cannot be satisfied."""
    match = _RANGE.match(value.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":
        length = int(last)
        return (max(size - length, 0), size) if length > 0 and size > 0 else None
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    return (start, end) if start < size and start < end else None


def bytes_response(
    request: Request, store: BlobStore, digest: str, size: int, headers: dict[str, str]
) -> Response:
    """The blob's bytes (or the ``Range`` asked for: 206, or 416) with ``headers``; headers only for HEAD."""
    start, end, status_code = 0, size, status.HTTP_200_OK
    if (requested := request.headers.get("range")) and request.method == "GET":
        parsed = parse_range(requested, size)
        if parsed is None:
            return Response(
                status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE,
                headers={**headers, "Content-Range": f"bytes */{size}"},
            )
        start, end = parsed
        status_code = status.HTTP_206_PARTIAL_CONTENT
        headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{size}"}
    headers = {**headers, "Content-Length": str(end - start)}
    if request.method == "HEAD":
        return Response(status_code=status_code, headers=headers)
    return StreamingResponse(
        stream_in_thread(store.read_range(digest, start, end)),
        status_code=status_code,
        headers=headers,
        media_type="application/octet-stream",
    )


def blob_response(
    request: Request, store: BlobStore, settings: Settings, digest: str, size: int, headers: dict[str, str]
) -> Response:
    """A GET on object storage is a 307 to a short-lived presigned URL, so the bytes never pass through
    the API (unless ``LOREG_PRESIGN_DOWNLOADS=false``); otherwise, and for HEAD, ``bytes_response``."""
    if request.method == "GET" and settings.presign_downloads:
        expires = timedelta(seconds=settings.presign_expiry)
        if (direct := store.download_url(digest, expires=expires)) is not None:
            return RedirectResponse(
                direct, status_code=status.HTTP_307_TEMPORARY_REDIRECT, headers={"Cache-Control": "no-store"}
            )
    return bytes_response(request, store, digest, size, headers)
