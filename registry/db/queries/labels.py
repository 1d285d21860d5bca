"""Queries on labels: key-value pairs on repositories and on versions, and their history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.models import LabelEvent, Repository, RepositoryLabel, Version, VersionLabel

Label = RepositoryLabel | VersionLabel


def labels_of(session: Session, repository: Repository, version: Version | None) -> Sequence[Label]:
    """The labels of ``version``, or of ``repository`` itself when ``version`` is None, by key."""
    if version is None:
        return session.scalars(
            select(RepositoryLabel)
            .where(RepositoryLabel.repository_id == repository.id)
            .order_by(RepositoryLabel.key)
        ).all()
    return session.scalars(
        select(VersionLabel).where(VersionLabel.version_id == version.id).order_by(VersionLabel.key)
    ).all()


def label_history(
    session: Session,
    repository: Repository,
    version: Version | None,
    *,
    key: str | None,
    before: int | None,
    limit: int,
) -> Sequence[LabelEvent]:
    """The label changes of ``version`` (of the repository itself when None), newest first; only those of
    ``key`` if given; ids below ``before`` (a cursor)."""
    query = (
        select(LabelEvent)
        .where(
            LabelEvent.repository_id == repository.id,
            LabelEvent.version_id.is_(None) if version is None else LabelEvent.version_id == version.id,
        )
        .order_by(LabelEvent.id.desc())
        .limit(limit)
    )
    if key is not None:
        query = query.where(LabelEvent.key == key)
    if before is not None:
        query = query.where(LabelEvent.id < before)
    return session.scalars(query).all()
