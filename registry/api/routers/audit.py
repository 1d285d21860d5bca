from __future__ import annotations

from fastapi import APIRouter, Request, Response

from registry.api.deps import Caller, ReadSession
from registry.api.pagination import Cursor, Limit, link_next
from registry.api.schemas import AuditEventOut, audit_event_out
from registry.services import audit

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def list_audit_events(
    request: Request,
    response: Response,
    session: ReadSession,
    principal: Caller,
    namespace: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> list[AuditEventOut]:
    """Every mutating call, newest first: actor (the token), action, target, result. Admins; an admin
    limited to namespaces sees those namespaces' entries. Filters: ``namespace``, ``action``, ``actor`` (a
    token's name)."""
    page = audit.list_events(
        session, principal, namespace=namespace, action=action, actor=actor, limit=limit, cursor=cursor
    )
    link_next(request, response, page.next_cursor)
    return [audit_event_out(e) for e in page.items]
