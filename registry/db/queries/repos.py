"""Queries on repositories."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import ColumnElement, delete, func, or_, select, true, tuple_
from sqlalchemy.orm import Session

from registry.db.models import (
    Repository,
    Version,
)
from registry.db.queries._dialect import insert_for


def get_repository(session: Session, namespace: str, name: str, *, lock: bool = False) -> Repository | None:
    query = select(Repository).where(Repository.namespace == namespace, Repository.name == name)
    if lock:
        query = query.with_for_update(of=Repository)
    return session.scalars(query).one_or_none()


def ensure_repository(session: Session, namespace: str, name: str) -> tuple[Repository, bool]:
    """Return the repository, creating it if needed, locked for the rest of the transaction, and whether
    this call created it."""
    inserted = session.execute(
        insert_for(session, Repository)
        .values(namespace=namespace, name=name, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["namespace", "name"])
        .returning(Repository.id)
    ).first()
    repository = get_repository(session, namespace, name, lock=True)
    assert repository is not None
    return repository, inserted is not None


def readable(namespaces: tuple[str, ...] | None) -> ColumnElement[bool]:
    """Repositories readable by a caller of ``namespaces`` (None: every one): theirs, and public ones."""
    if namespaces is None:
        return true()
    return or_(Repository.visibility == "public", Repository.namespace.in_(namespaces))


def list_repositories(
    session: Session,
    *,
    readable_in: tuple[str, ...] | None,
    namespace: str | None = None,
    base_id: int | None = None,
    after: tuple[str, str] | None = None,
    limit: int,
) -> Sequence[Repository]:
    """By namespace and name, after ``after`` (a cursor), readable by ``readable_in`` (see ``readable``)."""
    query = (
        select(Repository)
        .where(readable(readable_in))
        .order_by(Repository.namespace, Repository.name)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(Repository.namespace, Repository.name) > tuple_(*after))
    if namespace is not None:
        query = query.where(Repository.namespace == namespace)
    if base_id is not None:
        query = query.where(
            select(Version.id)
            .where(Version.repository_id == Repository.id, Version.base_id == base_id)
            .exists()
        )
    return session.scalars(query).all()


def delete_repository(session: Session, repository: Repository) -> None:
    session.execute(delete(Repository).where(Repository.id == repository.id))


def count_versions(session: Session, repository_ids: Iterable[int]) -> dict[int, int]:
    ids = list(repository_ids)
    rows = session.execute(
        select(Version.repository_id, func.count())
        .where(Version.repository_id.in_(ids))
        .group_by(Version.repository_id)
    )
    return {digest: size for digest, size in rows}
