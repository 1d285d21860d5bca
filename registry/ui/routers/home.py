"""The front page: search with filters, the recently updated repositories, and counts."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session

from registry.api.deps import RegistryDep
from registry.errors import InvalidInput, NotFound
from registry.services import overview
from registry.services import search as searching
from registry.services.pages import Page
from registry.ui.pages import Viewer, page_router, render

router = page_router()
PAGE = 20


@router.get("/")
async def home(
    request: Request,
    registry: RegistryDep,
    viewer: Viewer,
    q: Annotated[str | None, Query(max_length=256)] = None,
    namespace: str | None = None,
    base: str | None = None,
    label: Annotated[str | None, Query(max_length=1200)] = None,
    license: Annotated[str | None, Query(max_length=256)] = None,
    sort: Annotated[str, Query(max_length=600)] = "updated",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Search (the search API's query: every filter AND-ed), newest changes first by default."""
    given = {"q": q, "namespace": namespace, "base": base, "label": label, "license": license}
    filters = {key: value.strip() for key, value in given.items() if value and value.strip()}
    query = searching.SearchQuery(
        q=filters.get("q"),
        namespace=filters.get("namespace"),
        base=filters.get("base"),
        license=filters.get("license"),
        labels=[filters["label"]] if "label" in filters else (),
        sort=sort,
        limit=PAGE,
        cursor=cursor,
    )
    problem = None
    try:
        page = await searching.search_lookup(registry.lookups, viewer, query)
    except (
        InvalidInput,
        NotFound,
    ) as refusal:  # a filter the viewer typed: said on the page, next to the form
        page, problem = Page[searching.Hit](items=[], next_cursor=None), str(refusal)
    counts = await registry.lookups.run(lambda connection: overview.counts(Session(connection), viewer))
    more = None
    if page.next_cursor is not None:
        more = request.url.include_query_params(cursor=page.next_cursor)
    context = {
        "filters": filters,
        "sort": sort,
        "hits": page.items,
        "more": str(more) if more else None,
        "counts": counts,
        "problem": problem,
        "searching": bool(filters) or cursor is not None,
    }
    return render(request, "home.html", context, status=400 if problem else 200)
