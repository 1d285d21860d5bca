"""Search over the repositories the caller may read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from registry.api.deps import Caller, RegistryDep
from registry.api.pagination import Cursor, Limit, link_next
from registry.api.schemas import SearchHitOut, search_hits_json
from registry.services import search as searching
from registry.services.pages import Page

SearchAnswer = tuple[bytes, str | None]

router = APIRouter(tags=["search"])
FILTERS = searching.MAX_FILTERS


@router.get("/search", response_model=list[SearchHitOut])
async def search(
    request: Request,
    registry: RegistryDep,
    principal: Caller,
    q: Annotated[str | None, Query(max_length=256, description="words, all matched as prefixes")] = None,
    namespace: str | None = None,
    base: Annotated[str | None, Query(description="NAME, NAME@SHA, a SHA or a 12+ hex prefix")] = None,
    label: Annotated[
        list[str] | None,
        Query(max_length=FILTERS, description="key:value, on the repository or its latest version"),
    ] = None,
    metric: Annotated[
        list[str] | None,
        Query(max_length=FILTERS, description="NAME>=X (>=, >, <=, <, =), of the latest version"),
    ] = None,
    license: Annotated[str | None, Query(max_length=256)] = None,
    sort: Annotated[str, Query(max_length=600, description=searching.SORTS)] = "updated",
    limit: Limit = 20,
    cursor: Cursor = None,
) -> Response:
    """Repositories whose name, description or latest version's model card holds every word of ``q``,
    and that pass every filter (AND): ``namespace``, ``base`` and ``license`` of the latest version (the one
    ``latest`` points at; without that tag, the newest unyanked one), each ``label`` on the repository or on
    that version, each ``metric`` of that version. Sorted by ``updated`` (the newest change first), ``name``
    or ``metric:NAME`` (the highest first; only results with NAME). One page (``Link: rel="next"``), found by
    one statement, a lookup on the event loop (one more for ``base``; one more to count how many rows the
    filters select, unless counted lately); a search asked again before any change search can see is
    answered from the process's cache, after one lookup of the ``search`` generation."""
    query = searching.SearchQuery(
        q=q,
        namespace=namespace,
        base=base,
        license=license,
        labels=label or (),
        metrics=metric or (),
        sort=sort,
        limit=limit,
        cursor=cursor,
    )
    body, next_cursor = await searching.cached_search(
        registry.lookups, principal, query, registry.search_cache, _rendered
    )
    response = Response(body, media_type="application/json")
    link_next(request, response, next_cursor)
    return response


def _rendered(page: Page[searching.Hit]) -> SearchAnswer:
    """A page as the API answers it, kept in the search cache: the JSON body and the next page's cursor."""
    return search_hits_json(page.items), page.next_cursor
