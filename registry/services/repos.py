"""Repositories: the access gate (every service reaches a repository through it), create, list,
visibility, delete."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import VISIBILITIES, Repository
from registry.errors import InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import RESERVED_NAMESPACES, RepoName, validate_name
from registry.services import audit, search_index
from registry.services.bases import get_base
from registry.services.pages import Page, check_limit, page_of

MAX_DESCRIPTION = 1024


def get_repository(
    session: Session, repo: RepoName, principal: Principal, *, need: str = "read", lock: bool = False
) -> Repository:
    """The repository, if ``principal`` may ``need`` it (``read``, ``write`` or ``admin``).

    Writes are checked against the namespace before the lookup, so that a refusal does not depend on
    whether the repository exists; a repository that may not be read is reported exactly like one
    that does not exist.
    """
    if need != "read":
        principal.require(need, repo.namespace)
    repository = queries.get_repository(session, repo.namespace, repo.name, lock=lock)
    if repository is None:
        if not principal.in_namespace(repo.namespace):
            raise principal.cannot_see(str(repo))
        raise NotFound(f"repository {repo} does not exist; push a version to create it")
    if not principal.can_read(repository.namespace, repository.visibility):
        raise principal.cannot_see(str(repo))
    return repository


def is_public(session: Session, repo: RepoName) -> bool:
    repository = queries.get_repository(session, repo.namespace, repo.name)
    return repository is not None and repository.visibility == "public"


def create_repository(session: Session, repo: RepoName, principal: Principal) -> Repository:
    """The repository, created (private) if it does not exist yet, locked for the transaction."""
    principal.require("write", repo.namespace)
    if (
        repo.namespace in RESERVED_NAMESPACES
        and queries.get_repository(session, repo.namespace, repo.name) is None
    ):
        raise InvalidInput(
            f"namespace {repo.namespace!r} is reserved (the web UI's /{repo.namespace} pages): choose another"
        )
    repository, created = queries.ensure_repository(session, repo.namespace, repo.name)
    if created:
        audit.record(session, principal, "repo.create", target=str(repo), namespace=repo.namespace)
    return repository


def list_repositories(
    session: Session,
    principal: Principal,
    *,
    namespace: str | None = None,
    base: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[Repository]:
    """The repositories ``principal`` may read, by name; optionally of one namespace, or with versions
    made for one base model (any form ``bases.get_base`` resolves). ``cursor`` continues a previous page."""
    if namespace is not None:
        validate_name(namespace, "namespace")
    after = None
    if cursor is not None:
        try:
            parsed = RepoName.parse(cursor)
        except InvalidInput:
            raise InvalidInput(f"invalid cursor {cursor!r}: pass the one a previous page returned") from None
        after = (parsed.namespace, parsed.name)
    found = queries.list_repositories(
        session,
        readable_in=principal.readable_namespaces,
        namespace=namespace,
        base_id=get_base(session, base).id if base is not None else None,
        after=after,
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, lambda repository: repository.full_name)


def version_counts(session: Session, repositories: list[Repository]) -> dict[int, int]:
    return queries.count_versions(session, (r.id for r in repositories))


def set_visibility(session: Session, repo: RepoName, visibility: str, principal: Principal) -> Repository:
    """Make a repository ``public`` (anyone reads it, anonymous callers too) or ``private``."""
    if visibility not in VISIBILITIES:
        raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
    repository = get_repository(session, repo, principal, need="write", lock=True)
    if repository.visibility != visibility:
        previous, repository.visibility = repository.visibility, visibility
        session.flush()
        search_index.changed(session)
        audit.record(
            session,
            principal,
            "repo.visibility",
            target=str(repo),
            namespace=repo.namespace,
            detail={"from": previous, "to": visibility},
        )
    return repository


def describe(session: Session, repo: RepoName, description: str | None, principal: Principal) -> Repository:
    """Set a repository's one-line description (``None`` or "" clears it)."""
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"a description is at most {MAX_DESCRIPTION} characters, got {len(description)}")
    if description and not description.isprintable():
        raise InvalidInput("a description is one line of printable characters (no newlines or tabs)")
    repository = get_repository(session, repo, principal, need="write", lock=True)
    changed = repository.description != (description or None)
    repository.description = description or None
    session.flush()
    if changed:
        search_index.refresh(session, repository)
    audit.record(
        session,
        principal,
        "repo.describe",
        target=str(repo),
        namespace=repo.namespace,
        detail={"changed": changed},
    )
    return repository


def delete_repository(session: Session, repo: RepoName, principal: Principal) -> None:
    """Delete a repository with its versions and tags (an admin of its namespace); blobs are left to gc."""
    queries.delete_repository(session, get_repository(session, repo, principal, need="admin", lock=True))
    search_index.changed(session)
    audit.record(session, principal, "repo.delete", target=str(repo), namespace=repo.namespace)
