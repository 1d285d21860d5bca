"""Queries of the registry's front page: how much a caller can see."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.db.models import BaseModel, Repository, Version
from registry.db.queries.repos import readable


def readable_counts(session: Session, namespaces: tuple[str, ...] | None) -> tuple[int, int, int]:
    """Repositories and versions readable by a caller of ``namespaces`` (see ``readable``), and bases."""
    repositories = select(func.count()).select_from(Repository).where(readable(namespaces))
    versions = (
        select(func.count())
        .select_from(Version)
        .join(Repository, Repository.id == Version.repository_id)
        .where(readable(namespaces))
    )
    bases = select(func.count()).select_from(BaseModel)
    row = session.execute(
        select(repositories.scalar_subquery(), versions.scalar_subquery(), bases.scalar_subquery())
    ).one()
    return int(row[0]), int(row[1]), int(row[2])
