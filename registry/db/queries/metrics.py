"""Scrape-time aggregates: jobs and webhook deliveries as the database holds them, so that every API
process reports the same numbers whichever process or machine ran the work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, extract, func, select
from sqlalchemy.orm import Session

from registry.db.models import Job, WebhookDelivery


@dataclass(frozen=True)
class JobGroup:
    """The jobs of one kind in one status."""

    kind: str
    status: str
    jobs: int
    timed: int  # those with a start and an end
    seconds: float  # the timed ones' run times, summed
    within: tuple[int, ...]  # how many timed ones ran at most each of the bounds asked for


def _run_seconds(session: Session) -> ColumnElement[Any]:
    """A job's run time (``finished_at - started_at``) in seconds; NULL unless it started and ended."""
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", Job.finished_at - Job.started_at)
    return (func.julianday(Job.finished_at) - func.julianday(Job.started_at)) * 86400.0


def job_groups(session: Session, bounds: Sequence[float]) -> list[JobGroup]:
    """Every (kind, status) with its counts and cumulative run-time buckets: one aggregate over all jobs."""
    seconds = _run_seconds(session)
    rows = session.execute(
        select(
            Job.kind,
            Job.status,
            func.count(),
            func.count(seconds),
            func.coalesce(func.sum(seconds), 0),
            *(func.sum(case((seconds <= bound, 1), else_=0)) for bound in bounds),
        ).group_by(Job.kind, Job.status)
    ).all()
    return [
        JobGroup(
            kind=kind,
            status=status,
            jobs=jobs,
            timed=timed,
            seconds=float(total),
            within=tuple(int(n) for n in within),
        )
        for kind, status, jobs, timed, total, *within in rows
    ]


def delivery_counts(session: Session) -> dict[str, int]:
    """Webhook deliveries by status (pending, delivered, failed)."""
    rows = session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ).all()
    return {status: count for status, count in rows}
