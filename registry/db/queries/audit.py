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
    before: int | None,
    limit: int,
) -> Sequence[AuditEvent]:
    """Newest first; only those of ``namespaces`` unless it is None; ids below ``before`` (a cursor)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if namespaces is not None:
        query = query.where(AuditEvent.namespace.in_(namespaces))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    return session.scalars(query).all()
