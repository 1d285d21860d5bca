"""Repositories: look up, create, list, delete."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Repository
from registry.errors import NotFound
from registry.refs import RepoName
from registry.services.bases import get_base


def get_repository(session: Session, repo: RepoName, *, lock: bool = False) -> Repository:
    repository = queries.get_repository(session, repo.namespace, repo.name, lock=lock)
    if repository is None:
        raise NotFound(f"repository {repo} does not exist; push a version to create it")
    return repository


def create_repository(session: Session, repo: RepoName) -> Repository:
    return queries.ensure_repository(session, repo.namespace, repo.name)


def list_repositories(
    session: Session, *, namespace: str | None = None, base_sha: str | None = None
) -> Sequence[Repository]:
    base_id = get_base(session, base_sha).id if base_sha is not None else None
    return queries.list_repositories(session, namespace=namespace, base_id=base_id)


def delete_repository(session: Session, repo: RepoName) -> None:
    """Delete a repository with its versions and tags; its blobs are left to ``gc``."""
    queries.delete_repository(session, get_repository(session, repo, lock=True))
