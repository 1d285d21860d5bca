"""What a repository's web page and a version's web page show, read for one viewer: every read goes
through the repository's access gate (:func:`registry.services.repos.get_repository`), and a parent in a
repository the viewer may not read is shown by its digest alone.

The repository page reads a fixed number of indexed statements whatever the repository's size: a page
of versions as rows, their labels, the tags and their latest moves, the latest version with its card, and
the lineage graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from registry.adapters.model_card import Card
from registry.db import queries
from registry.db.models import EvalMetric, Repository, Version, as_utc
from registry.db.queries.labels import Label
from registry.db.queries.repo_pages import (
    TagRow,
    labels_by_version,
    latest_moves,
    tag_rows,
    version_by_id,
    version_rows,
)
from registry.errors import InvalidInput
from registry.principal import Principal
from registry.refs import DEFAULT_TAG, MAX_NUMBER, RepoName, RepoRef
from registry.services import cards, repos, versions
from registry.services.lineage import Lineage, lineage

PAGE_SIZE = 50  # versions per page of the table
TAG_MOVES = 10  # moves of each tag shown (``lorareg tags REPO --history TAG`` lists them all)


@dataclass(frozen=True, slots=True)
class VersionRow:
    """A line of the versions table."""

    number: int
    digest: str  # hex
    author: str | None
    pushed_by: str | None
    message: str | None
    base_name: str
    base_digest: str  # hex
    config: dict[str, Any]
    size: int  # bytes, every file together
    labels: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]
    created_at: datetime
    yanked: bool
    made_by: str | None  # the kind of job that made it (merge, …); None for a push


@dataclass(frozen=True, slots=True)
class TagMove:
    old: int | None  # the version numbers; None: no version (created, removed), or one since deleted
    new: int | None
    actor: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TagView:
    name: str
    number: int
    digest: str  # hex
    yanked: bool
    updated_at: datetime
    moves: tuple[TagMove, ...]  # the newest first, at most TAG_MOVES


@dataclass(frozen=True)
class RepositoryPage:
    repository: Repository
    labels: Sequence[Label]
    tags: tuple[TagView, ...]
    versions: tuple[VersionRow, ...]  # this page of them, newest first
    total: int  # versions in the repository
    page: int
    pages: int
    latest: Version | None  # where ``latest`` points; without it, the newest unyanked version
    card: Card | None  # the latest version's
    lineage: Lineage
    writable: bool  # the viewer may change tags, labels and the description


@dataclass(frozen=True, slots=True)
class Parent:
    """A parent version; in a repository the viewer may not read, its digest alone (``repo`` None)."""

    repo: str | None
    number: int | None
    digest: str  # hex


@dataclass(frozen=True)
class VersionPage:
    version: Version
    tags: list[str]
    labels: Sequence[Label]
    metrics: Sequence[EvalMetric]  # by name, the card's before an attached eval's
    card: Card
    parents: tuple[Parent, ...]
    writable: bool  # the viewer may tag, label and (un)yank it


def may_write(principal: Principal, namespace: str) -> bool:
    """Whether ``principal`` may change the repositories of ``namespace`` (the services check it again)."""
    return principal.has_scope("write") and principal.in_namespace(namespace)


def repository_page(
    session: Session, repo: RepoName, principal: Principal, *, page: int = 1
) -> RepositoryPage:
    """The repository as its page shows it, with page ``page`` (from 1) of its versions."""
    if not 1 <= page <= MAX_NUMBER:
        raise InvalidInput(f"invalid page {page}: pages are numbered from 1")
    repository = repos.get_repository(session, repo, principal)
    total = repos.version_counts(session, [repository]).get(repository.id, 0)
    tag_list = tag_rows(session, repository.id)
    tags_of: dict[int, list[str]] = {}
    for tag in tag_list:
        tags_of.setdefault(tag.version_id, []).append(tag.name)
    rows = version_rows(session, repository.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    labelled = labels_by_version(session, [row.id for row in rows])
    latest = _latest(session, repository, {tag.name: tag.version_id for tag in tag_list})
    return RepositoryPage(
        repository=repository,
        labels=queries.labels_of(session, repository, None),
        tags=_tag_views(session, repository, tag_list),
        versions=tuple(_version_row(row, labelled, tags_of) for row in rows),
        total=total,
        page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        latest=latest,
        card=cards.card_of(session, latest) if latest is not None else None,
        lineage=lineage(session, repo, principal),
        writable=may_write(principal, repo.namespace),
    )


def version_page(session: Session, target: RepoRef, principal: Principal) -> VersionPage:
    """The version ``target`` names (yanked ones too) as its page shows it."""
    version = versions.find_version(session, target, principal, allow_yanked=True)
    return VersionPage(
        version=version,
        tags=versions.tags_of(session, version),
        labels=queries.labels_of(session, version.repository, version),
        metrics=queries.metrics_of(session, version),
        card=cards.card_of(session, version),
        parents=tuple(_parent(link.parent, principal) for link in version.parent_links),
        writable=may_write(principal, target.repo.namespace),
    )


def _latest(session: Session, repository: Repository, tags: dict[str, int]) -> Version | None:
    if DEFAULT_TAG in tags:
        return version_by_id(session, tags[DEFAULT_TAG])
    return queries.newest_unyanked_version(session, repository)


def _tag_views(session: Session, repository: Repository, tag_list: Sequence[TagRow]) -> tuple[TagView, ...]:
    moves: dict[str, list[TagMove]] = {}
    if tag_list:
        for move in latest_moves(session, repository.id, [tag.name for tag in tag_list], per_tag=TAG_MOVES):
            moves.setdefault(move.tag, []).append(
                TagMove(move.old_number, move.new_number, move.actor, as_utc(move.created_at))
            )
    return tuple(
        TagView(
            name=tag.name,
            number=tag.number,
            digest=tag.digest,
            yanked=tag.yanked_at is not None,
            updated_at=as_utc(tag.updated_at),
            moves=tuple(moves.get(tag.name, ())),
        )
        for tag in tag_list
    )


def _version_row(
    row: Row[Any], labelled: dict[int, list[tuple[str, str]]], tags_of: dict[int, list[str]]
) -> VersionRow:
    provenance = row.provenance or {}
    made_by = provenance.get("kind") if "job" in provenance else None
    return VersionRow(
        number=row.number,
        digest=row.digest,
        author=row.author,
        pushed_by=row.pushed_by,
        message=row.message,
        base_name=row.base_name,
        base_digest=row.base_digest,
        config=row.config,
        size=sum(int(file.get("size", 0)) for file in row.file_list or ()),
        labels=tuple(labelled.get(row.id, ())),
        tags=tuple(tags_of.get(row.id, ())),
        created_at=as_utc(row.created_at),
        yanked=row.yanked_at is not None,
        made_by=made_by if isinstance(made_by, str) else None,
    )


def _parent(parent: Version, principal: Principal) -> Parent:
    repository = parent.repository
    if not principal.can_read(repository.namespace, repository.visibility):
        return Parent(repo=None, number=None, digest=parent.digest)
    return Parent(repo=repository.full_name, number=parent.number, digest=parent.digest)
