from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from registry.api.deps import Caller, ReadSession, WriteSession
from registry.api.pagination import Cursor, Limit, link_next
from registry.api.schemas import DescriptionIn, RepoIn, RepoOut, VisibilityIn, repo_out
from registry.refs import RepoName
from registry.services import repos

router = APIRouter(prefix="/repos", tags=["repositories"])


@router.get("")
def list_repositories(
    request: Request,
    response: Response,
    session: ReadSession,
    principal: Caller,
    namespace: str | None = None,
    base: str | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> list[RepoOut]:
    """The repositories the caller may read, by name, optionally in one namespace or with versions made
    for one base model (NAME, NAME@SHA, a SHA or a 12+ hex prefix); one page (``Link: rel="next"`` for
    the next)."""
    page = repos.list_repositories(
        session, principal, namespace=namespace, base=base, limit=limit, cursor=cursor
    )
    link_next(request, response, page.next_cursor)
    counts = repos.version_counts(session, list(page.items))
    return [repo_out(r, counts.get(r.id, 0)) for r in page.items]


@router.post("", status_code=status.HTTP_201_CREATED, name="repo.create")
def create_repository(body: RepoIn, session: WriteSession, principal: Caller) -> RepoOut:
    """Create an empty (private) repository; pushing a version creates it too."""
    return repo_out(
        repos.create_repository(session, RepoName.parse(f"{body.namespace}/{body.name}"), principal)
    )


@router.get("/{namespace}/{name}")
def get_repository(namespace: str, name: str, session: ReadSession, principal: Caller) -> RepoOut:
    repository = repos.get_repository(session, RepoName.parse(f"{namespace}/{name}"), principal)
    return repo_out(repository, repos.version_counts(session, [repository]).get(repository.id, 0))


@router.put("/{namespace}/{name}/visibility", name="repo.visibility")
def set_visibility(
    namespace: str, name: str, body: VisibilityIn, session: WriteSession, principal: Caller
) -> RepoOut:
    """Make the repository ``public`` (anyone may read it, without a token) or ``private``."""
    repository = repos.set_visibility(
        session, RepoName.parse(f"{namespace}/{name}"), body.visibility, principal
    )
    return repo_out(repository, repos.version_counts(session, [repository]).get(repository.id, 0))


@router.put("/{namespace}/{name}/description", name="repo.describe")
def describe(
    namespace: str, name: str, body: DescriptionIn, session: WriteSession, principal: Caller
) -> RepoOut:
    """Set the repository's one-line description, shown by ``ls`` (null or "" clears it)."""
    repository = repos.describe(session, RepoName.parse(f"{namespace}/{name}"), body.description, principal)
    return repo_out(repository, repos.version_counts(session, [repository]).get(repository.id, 0))


@router.delete("/{namespace}/{name}", status_code=status.HTTP_204_NO_CONTENT, name="repo.delete")
def delete_repository(namespace: str, name: str, session: WriteSession, principal: Caller) -> Response:
    """Delete a repository with its versions and tags (an admin of its namespace); blobs are left to gc."""
    repos.delete_repository(session, RepoName.parse(f"{namespace}/{name}"), principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
