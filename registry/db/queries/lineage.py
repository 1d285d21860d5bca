"""Queries of a repository's lineage graph: its newest versions and their parents, in a fixed number of
indexed statements whatever the repository's size (the web UI draws it on every repository page)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.util import AliasedClass

from registry.db.models import Repository, Version, VersionParent

# What a node of the graph shows of a version (never its manifest, config or files).
_NODE_FIELDS = ("id", "repository_id", "number", "digest", "created_at", "yanked_at", "message", "provenance")


def _node_columns(version: type[Version] | AliasedClass[Version]) -> list[Any]:
    return [getattr(version, field) for field in _NODE_FIELDS]


def newest_versions(session: Session, repository: Repository, *, limit: int) -> Sequence[Row[Any]]:
    """Up to ``limit`` versions of ``repository``, newest (highest number) first: one indexed query on
    ``(repository_id, number)``."""
    return session.execute(
        select(*_node_columns(Version))
        .where(Version.repository_id == repository.id)
        .order_by(Version.number.desc())
        .limit(limit)
    ).all()


def parents_of(session: Session, version_ids: Collection[int]) -> Sequence[Row[Any]]:
    """Every parent link (``child_id``, ``position``) of the versions ``version_ids``, with the parent's
    node columns and its repository's ``namespace``, ``name`` and ``visibility``: one query, ordered by
    child and position, on the ``version_parents`` primary key."""
    parent = aliased(Version)
    return session.execute(
        select(
            VersionParent.version_id.label("child_id"),
            VersionParent.position,
            *_node_columns(parent),
            Repository.namespace,
            Repository.name,
            Repository.visibility,
        )
        .join(parent, parent.id == VersionParent.parent_id)
        .join(Repository, Repository.id == parent.repository_id)
        .where(VersionParent.version_id.in_(list(version_ids)))
        .order_by(VersionParent.version_id, VersionParent.position)
    ).all()
