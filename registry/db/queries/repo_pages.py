"""Queries of a repository's web page: a page of its versions as rows (never their manifests), the labels
of those versions, its tags with where they point, and the latest moves of each tag. Each is one indexed
statement whatever the repository's size."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session, aliased

from registry.db.models import BaseModel, Tag, TagEvent, Version, VersionLabel


def version_rows(session: Session, repository_id: int, *, limit: int, offset: int) -> Sequence[Row[Any]]:
    """Up to ``limit`` versions of the repository, newest first, after skipping ``offset``: their own
    columns (the file list included, the manifest not) and their base's name and content digest."""
    return session.execute(
        select(
            Version.id,
            Version.number,
            Version.digest,
            Version.author,
            Version.pushed_by,
            Version.message,
            Version.config,
            Version.file_list,
            Version.provenance,
            Version.created_at,
            Version.yanked_at,
            BaseModel.name.label("base_name"),
            BaseModel.content_digest.label("base_digest"),
        )
        .join(BaseModel, BaseModel.id == Version.base_id)
        .where(Version.repository_id == repository_id)
        .order_by(Version.number.desc())
        .limit(limit)
        .offset(offset)
    ).all()


def labels_by_version(session: Session, version_ids: Collection[int]) -> dict[int, list[tuple[str, str]]]:
    """The labels (key, value) of each of ``version_ids``, by key."""
    rows = session.execute(
        select(VersionLabel.version_id, VersionLabel.key, VersionLabel.value)
        .where(VersionLabel.version_id.in_(list(version_ids)))
        .order_by(VersionLabel.version_id, VersionLabel.key)
    )
    found: dict[int, list[tuple[str, str]]] = {}
    for version_id, key, value in rows:
        found.setdefault(version_id, []).append((key, value))
    return found


TagRow = Row[
    str, int, datetime, int, str, datetime | None
]  # name, version_id, updated_at, number, digest, yanked_at


def tag_rows(session: Session, repository_id: int) -> Sequence[TagRow]:
    """The repository's tags by name, each with the number, digest and yanked time of its version."""
    return session.execute(
        select(
            Tag.name,
            Tag.version_id,
            Tag.updated_at,
            Version.number,
            Version.digest,
            Version.yanked_at,
        )
        .join(Version, Version.id == Tag.version_id)
        .where(Tag.repository_id == repository_id)
        .order_by(Tag.name)
    ).all()


def latest_moves(
    session: Session, repository_id: int, tags: Collection[str], *, per_tag: int
) -> Sequence[Row[Any]]:
    """The newest ``per_tag`` moves of each of ``tags``, by tag and newest first: the numbers moved from
    and to (None: no version, or one since deleted), the actor and the time."""
    old, new = aliased(Version), aliased(Version)
    ranked = (
        select(
            TagEvent.id,
            TagEvent.tag,
            TagEvent.actor,
            TagEvent.created_at,
            old.number.label("old_number"),
            new.number.label("new_number"),
            func.row_number().over(partition_by=TagEvent.tag, order_by=TagEvent.id.desc()).label("rank"),
        )
        .outerjoin(old, old.id == TagEvent.old_version_id)
        .outerjoin(new, new.id == TagEvent.new_version_id)
        .where(TagEvent.repository_id == repository_id, TagEvent.tag.in_(list(tags)))
        .subquery()
    )
    return session.execute(
        select(ranked).where(ranked.c.rank <= per_tag).order_by(ranked.c.tag, ranked.c.id.desc())
    ).all()


def version_by_id(session: Session, version_id: int) -> Version | None:
    return session.get(Version, version_id)
