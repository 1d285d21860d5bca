"""The audit trail: every mutating call, with the authenticated actor, its target and how it ended.

Successful changes are recorded by the services in the transaction that makes them, so a change and
its audit entry commit together; refused or failed calls are recorded by the API in a transaction of
their own. The actor is always the token (its name and id), never a client-supplied author.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import AuditEvent
from registry.principal import Principal
from registry.services.pages import Page, check_limit, numeric_cursor, page_of

MAX_TARGET = 512
MAX_NAMESPACE = 96


def _printable(text: str, limit: int) -> str:
    """``text`` with control characters escaped (a refused request's path may hold a NUL, which
    PostgreSQL cannot store), cut to ``limit``."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:limit]


def record(
    session: Session,
    principal: Principal,
    action: str,
    *,
    target: str,
    namespace: str | None = None,
    result: str = "ok",
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one entry to the trail (committed with ``session``'s transaction)."""
    session.add(
        AuditEvent(
            actor=principal.name,
            token_id=principal.token_id,
            action=action,
            namespace=_printable(namespace, MAX_NAMESPACE) if namespace is not None else None,
            target=_printable(target, MAX_TARGET),
            result=result,
            detail=detail,
        )
    )
    session.flush()


def list_events(
    session: Session,
    principal: Principal,
    *,
    namespace: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[AuditEvent]:
    """The trail, newest first: all of it for an unrestricted admin, a namespace admin's namespaces
    otherwise (global entries, such as base registrations, only for the former); only ``namespace``'s,
    ``action``'s and ``actor``'s (a token's name) entries when given."""
    principal.require("admin", namespace)
    namespaces = principal.namespaces
    if namespace is not None:
        namespaces = (namespace,)
    before = numeric_cursor(cursor) if cursor is not None else None
    found = queries.list_audit_events(
        session,
        namespaces=namespaces,
        action=action,
        actor=actor,
        before=before,
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, lambda event: str(event.id))
