"""Queries on eval results."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from registry.db.models import EvalMetric, Version


def delete_metrics(session: Session, version: Version, source: str, names: Collection[str]) -> None:
    """Drop ``version``'s metrics of ``source`` named ``names`` (those about to be written again)."""
    session.execute(
        delete(EvalMetric).where(
            EvalMetric.version_id == version.id,
            EvalMetric.source == source,
            EvalMetric.name.in_(list(names)),
        )
    )


def metrics_of(session: Session, version: Version) -> Sequence[EvalMetric]:
    """Every metric of ``version``, both sources, by name (``card`` before ``eval`` for one name)."""
    return session.scalars(
        select(EvalMetric)
        .where(EvalMetric.version_id == version.id)
        .order_by(EvalMetric.name, EvalMetric.source)
    ).all()
