"""Queries on tags."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload

from registry.db.models import (
    Repository,
    Tag,
    TagEvent,
    Version,
)
from registry.db.queries._dialect import insert_for


def get_tag(session: Session, repository: Repository, name: str, *, lock: bool = False) -> Tag | None:
    query = select(Tag).where(Tag.repository_id == repository.id, Tag.name == name)
    if lock:
        query = query.with_for_update(of=Tag)
    return session.scalars(query).one_or_none()


def insert_tag_if_absent(session: Session, repository: Repository, name: str, version: Version) -> bool:
    """Create the tag pointing at ``version``; False if it already existed."""
    result = session.execute(
        insert_for(session, Tag)
        .values(repository_id=repository.id, name=name, version_id=version.id, updated_at=func.now())
        .on_conflict_do_nothing(index_elements=["repository_id", "name"])
        .returning(Tag.id)
    )
    return result.scalar_one_or_none() is not None


def list_tags(session: Session, repository: Repository) -> Sequence[Tag]:
    return session.scalars(select(Tag).where(Tag.repository_id == repository.id).order_by(Tag.name)).all()


def tags_by_version(session: Session, version_ids: Iterable[int]) -> dict[int, list[str]]:
    rows = session.execute(
        select(Tag.version_id, Tag.name).where(Tag.version_id.in_(list(version_ids))).order_by(Tag.name)
    )
    found: dict[int, list[str]] = {}
    for version_id, name in rows:
        found.setdefault(version_id, []).append(name)
    return found


def tags_of_version(session: Session, version: Version) -> list[str]:
    return tags_by_version(session, [version.id]).get(version.id, [])


def tag_history(session: Session, repository: Repository, tag: str, *, limit: int) -> Sequence[TagEvent]:
    return session.scalars(
        select(TagEvent)
        .where(TagEvent.repository_id == repository.id, TagEvent.tag == tag)
        .order_by(TagEvent.id.desc())
        .limit(limit)
    ).all()


def get_tag_with_version(session: Session, repository_id: int, name: str) -> Tag | None:
    """The tag and its version in one query (for the watch poll, which reads it after the session)."""
    return session.scalars(
        select(Tag)
        .options(joinedload(Tag.version))
        .where(Tag.repository_id == repository_id, Tag.name == name)
    ).one_or_none()
