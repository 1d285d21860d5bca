"""A page of a list: at most ``limit`` items, and the cursor that continues after the last one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from registry.errors import InvalidInput
from registry.refs import MAX_NUMBER

T = TypeVar("T")
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_cursor: str | None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {MAX_LIMIT}, got {limit}")
    return limit


def numeric_cursor(cursor: str) -> int:
    """A cursor that is a row id or a version number: an integer a 32-bit column holds, else refused."""
    if not cursor.isdigit() or not 1 <= int(cursor) <= MAX_NUMBER:
        raise InvalidInput(f"invalid cursor {cursor!r}: pass the one a previous page returned")
    return int(cursor)


def page_of(found: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """``found`` holds up to ``limit + 1`` rows: one more than asked says that a next page exists."""
    items = found[:limit]
    return Page(items, cursor_of(items[-1]) if len(found) > limit else None)
