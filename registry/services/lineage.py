"""A repository's lineage graph: its newest versions, their parents (merges, job inputs from other
repositories included) and the links between them, read in four statements whatever the repository's size.

A parent in a repository the viewer may not read is an opaque node: its digest, and nothing that would
tell which repository holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import as_utc
from registry.db.queries.lineage import newest_versions, parents_of
from registry.principal import Principal
from registry.refs import RepoName
from registry.services import repos
from registry.services.pages import check_limit

DEFAULT_LIMIT = 200


@dataclass(frozen=True, slots=True)
class Node:
    """One version of the graph. An opaque one (``readable`` False) has only its ``id`` and ``digest``:
    ``repo``, ``number``, ``created_at``, ``kind`` and ``message`` are None, and ``tags`` empty."""

    id: int
    repo: str | None  # "namespace/name"
    number: int | None
    digest: str  # hex
    created_at: datetime | None
    yanked: bool
    tags: tuple[str, ...]  # by name
    kind: str | None  # the kind of job that made it (merge, extract, …); None for a push
    message: str | None
    readable: bool


@dataclass(frozen=True, slots=True)
class Edge:
    """``child_id`` has ``parent_id`` as its parent number ``position`` (0: the first)."""

    child_id: int
    parent_id: int
    position: int


@dataclass(frozen=True, slots=True)
class Lineage:
    """The graph of ``repo``: ``nodes`` newest first, children always above their parents (the order of
    their ids, which is the order they were pushed in), so a drawing takes them as its rows."""

    repo: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    truncated: bool  # older versions of the repository were left out


def lineage(session: Session, repo: RepoName, principal: Principal, *, limit: int = DEFAULT_LIMIT) -> Lineage:
    """The newest ``limit`` versions of ``repo`` (which ``principal`` must be able to read), with their
    direct parents from other repositories. A link to an older version of ``repo`` itself, one left
    out, is left out too (``truncated`` says there are such versions)."""
    check_limit(limit)
    repository = repos.get_repository(session, repo, principal)
    rows = newest_versions(session, repository, limit=limit + 1)
    own = {row.id: row for row in rows[:limit]}
    links = [
        link
        for link in parents_of(session, own)
        if link.id in own or link.repository_id != repository.id  # not an older version left out
    ]
    outside = {link.id: link for link in links if link.id not in own}
    readable = {link.id for link in outside.values() if principal.can_read(link.namespace, link.visibility)}
    tags = queries.tags_by_version(session, [*own, *readable])
    nodes = [_node(row, str(repo), tags) for row in own.values()]
    nodes += [
        _node(link, f"{link.namespace}/{link.name}", tags) if link.id in readable else _opaque(link)
        for link in outside.values()
    ]
    return Lineage(
        repo=str(repo),
        nodes=tuple(sorted(nodes, key=lambda node: node.id, reverse=True)),
        edges=tuple(Edge(link.child_id, link.id, link.position) for link in links),
        truncated=len(rows) > limit,
    )


def _node(row: Row[Any], repo: str, tags: dict[int, list[str]]) -> Node:
    return Node(
        id=row.id,
        repo=repo,
        number=row.number,
        digest=row.digest,
        created_at=as_utc(row.created_at),
        yanked=row.yanked_at is not None,
        tags=tuple(tags.get(row.id, ())),
        kind=_job_kind(row.provenance),
        message=row.message,
        readable=True,
    )


def _opaque(row: Row[Any]) -> Node:
    return Node(
        id=row.id,
        repo=None,
        number=None,
        digest=row.digest,
        created_at=None,
        yanked=False,
        tags=(),
        kind=None,
        message=None,
        readable=False,
    )


def _job_kind(provenance: dict[str, Any]) -> str | None:
    """The kind of job a job's output was made by, as the runner records it in its provenance."""
    kind = provenance.get("kind") if "job" in provenance else None
    return kind if isinstance(kind, str) else None
