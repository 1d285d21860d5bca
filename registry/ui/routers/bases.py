"""Base models: the list (shapes, SHAs, how many adapters), and one base's page (its shape summary,
every SHA it answers to, whether its weights are stored, and the adapters made for it, paginated)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Request, Response

from registry.api.deps import ReadSession
from registry.services import base_catalog
from registry.services.pages import MAX_LIMIT
from registry.ui.pages import Viewer, page_router, render

router = page_router()
PAGE = 50


@router.get("/bases")
def bases_page(request: Request, session: ReadSession, viewer: Viewer) -> Response:
    """Every base model, with the number of adapters made for it that the viewer may read."""
    entries = base_catalog.catalog(session, viewer)
    return render(request, "bases/list.html", {"entries": entries})


@router.get("/bases/{spec:path}")
def base_page(
    request: Request,
    spec: Annotated[str, Path(max_length=400)],
    session: ReadSession,
    viewer: Viewer,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = PAGE,
) -> Response:
    """A base named any way it answers to (NAME, NAME@SHA, a SHA or a 12+ hex prefix of one)."""
    found = base_catalog.overview(session, spec, viewer, limit=limit, cursor=cursor)
    more = found.adapters.next_cursor
    context = {
        "found": found,
        "base": found.base,
        "shape": found.shape,
        "more": str(request.url.include_query_params(cursor=more)) if more else None,
        "paged": cursor is not None,
    }
    return render(request, "bases/base.html", context)
