"""Queries of how much base models are used: the adapters made for each that a caller may read."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.db.models import Repository, Version
from registry.db.queries.repos import readable


def adapter_counts(
    session: Session, *, readable_in: tuple[str, ...] | None, base_id: int | None = None
) -> dict[int, int]:
    """Unyanked versions per base id (only ``base_id``'s, if given), in repositories readable by a caller
    of ``readable_in`` (see ``readable``): one grouped statement, the count ``versions_on_base`` lists."""
    query = (
        select(Version.base_id, func.count())
        .join(Repository, Repository.id == Version.repository_id)
        .where(Version.yanked_at.is_(None), readable(readable_in))
        .group_by(Version.base_id)
    )
    if base_id is not None:
        query = query.where(Version.base_id == base_id)
    return {base: count for base, count in session.execute(query).tuples()}
