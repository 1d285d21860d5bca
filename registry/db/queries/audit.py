"""Queries on the audit trail."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.models import AuditEvent


def list_audit_events(
    session: Session,
    *,
    namespaces: tuple[str, ...] | None,
    action: str | None,
    actor: str | None,
    before: int | None,
    limit: int,
) -> Sequence[AuditEvent]:
    """Newest first; only those of ``namespaces`` unless it is None, of ``action`` and ``actor`` if
    given; ids below ``before`` (a cursor)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if namespaces is not None:
        query = query.where(AuditEvent.namespace.in_(namespaces))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    return session.scalars(query).all()
