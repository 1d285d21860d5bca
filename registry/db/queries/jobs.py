"""Queries on jobs."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from registry.db.models import Job

REUSABLE = ("queued", "running", "succeeded")


def get_job(session: Session, job_id: str, *, lock: bool = False) -> Job | None:
    query = select(Job).where(Job.id == job_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def find_reusable_job(session: Session, key: str) -> Job | None:
    """The newest identical job that has not failed or been cancelled."""
    return session.scalars(
        select(Job).where(Job.key == key, Job.status.in_(REUSABLE)).order_by(Job.created_at.desc()).limit(1)
    ).first()


def list_jobs(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    before: Job | None = None,
    limit: int = 50,
) -> Sequence[Job]:
    """Newest first; ``before``: only jobs older than that one (a cursor)."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if before is not None:
        query = query.where(
            or_(
                Job.created_at < before.created_at,
                and_(Job.created_at == before.created_at, Job.id < before.id),
            )
        )
    if status is not None:
        query = query.where(Job.status == status)
    if kind is not None:
        query = query.where(Job.kind == kind)
    return session.scalars(query).all()


def unfinished_jobs(session: Session) -> Sequence[Job]:
    return session.scalars(
        select(Job).where(Job.status.in_(("queued", "running"))).order_by(Job.created_at)
    ).all()
