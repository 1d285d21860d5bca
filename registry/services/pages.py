"""A page of a list: at most ``limit`` items, and the cursor that continues after the last one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from registry.errors import InvalidInput

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


def page_of(found: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """``found`` holds up to ``limit + 1`` rows: one more than asked says that a next page exists."""
    items = found[:limit]
    return Page(items, cursor_of(items[-1]) if len(found) > limit else None)
