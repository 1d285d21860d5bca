"""Lists answer one page at a time: ``limit`` rows at most, and a ``Link: <…>; rel="next"`` header (as
GitHub and the Hugging Face Hub send) whose URL carries the ``cursor`` of the next page."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request, Response

from registry.refs import MAX_NUMBER
from registry.services.pages import MAX_LIMIT

Id = Annotated[int, Path(ge=1, le=MAX_NUMBER, description="the numeric id")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"rows per page, at most {MAX_LIMIT}")]
Cursor = Annotated[
    str | None, Query(max_length=512, description="where the page starts: from the previous page's Link")
]


def link_next(request: Request, response: Response, cursor: str | None) -> None:
    """Point at the page after this one, if there is one."""
    if cursor is not None:
        url = request.url.include_query_params(cursor=cursor)
        response.headers["Link"] = f'<{url}>; rel="next"'
