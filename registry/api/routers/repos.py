from __future__ import annotations

from fastapi import APIRouter, Response, status

from registry.api.deps import Admin, Reader, ReadSession, Writer, WriteSession
from registry.api.schemas import RepoIn, RepoOut, repo_out
from registry.db import queries
from registry.refs import RepoName, validate_name
from registry.services import repos

router = APIRouter(prefix="/repos", tags=["repositories"])


@router.get("")
def list_repositories(
    session: ReadSession, _: Reader, namespace: str | None = None, base: str | None = None
) -> list[RepoOut]:
    """Repositories, optionally in one namespace or with versions made for one base model SHA."""
    if namespace is not None:
        validate_name(namespace, "namespace")
    found = repos.list_repositories(session, namespace=namespace, base_sha=base)
    counts = queries.count_versions(session, (r.id for r in found))
    return [repo_out(r, counts.get(r.id, 0)) for r in found]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_repository(body: RepoIn, session: WriteSession, principal: Writer) -> RepoOut:
    principal.require("write", body.namespace)
    return repo_out(repos.create_repository(session, RepoName.parse(f"{body.namespace}/{body.name}")))


@router.get("/{namespace}/{name}")
def get_repository(namespace: str, name: str, session: ReadSession, _: Reader) -> RepoOut:
    repository = repos.get_repository(session, RepoName.parse(f"{namespace}/{name}"))
    return repo_out(repository, queries.count_versions(session, [repository.id]).get(repository.id, 0))


@router.delete("/{namespace}/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_repository(namespace: str, name: str, session: WriteSession, _: Admin) -> Response:
    """Delete a repository with its versions and tags (admin scope); its blobs are left to gc."""
    repos.delete_repository(session, RepoName.parse(f"{namespace}/{name}"))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
