"""The audit trail for admins: every mutating call, newest first, filtered by namespace, action and actor,
a page at a time. Who sees which entries is the audit service's rule (a namespace admin: its own)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request, Response

from registry.api.deps import ReadSession
from registry.services import audit
from registry.services.pages import MAX_LIMIT
from registry.ui.pages import Viewer, page_router, render

router = page_router()
PAGE = 50
Filter = Annotated[str | None, Query(max_length=256)]


@router.get("/audit")
def audit_page(
    request: Request,
    session: ReadSession,
    viewer: Viewer,
    namespace: Filter = None,
    action: Filter = None,
    actor: Filter = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = PAGE,
) -> Response:
    """The trail the viewer may read (admins only), filtered by what the form gives."""
    given = {"namespace": namespace, "action": action, "actor": actor}
    filters = {key: value.strip() for key, value in given.items() if value and value.strip()}
    page = audit.list_events(session, viewer, **filters, limit=limit, cursor=cursor)
    more = page.next_cursor
    context = {
        "filters": filters,
        "events": page.items,
        "more": str(request.url.include_query_params(cursor=more)) if more else None,
        "first": str(request.url.remove_query_params("cursor")) if cursor is not None else None,
    }
    return render(request, "audit/trail.html", context)
