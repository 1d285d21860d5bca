"""Serving bytes: single ``Range`` requests, and streaming a blocking iterator from a worker thread."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import anyio.to_thread

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
