from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from registry.api.deps import Reader, ReadSession, RegistryDep, Writer, WriteSession
from registry.api.schemas import (
    PushIn,
    PushOut,
    VersionOut,
    YankIn,
    push_out,
    version_out,
)
from registry.db import queries
from registry.refs import Ref, RepoName, RepoRef
from registry.services import repos, versions
from registry.services.blobs import FileEntry
from registry.services.push import PushRequest, push_version
from registry.services.yank import yank

router = APIRouter(prefix="/repos/{namespace}/{name}", tags=["versions"])


def _target(namespace: str, name: str, ref: str) -> RepoRef:
    return RepoRef(RepoName.parse(f"{namespace}/{name}"), Ref.parse(ref))


@router.get("/versions")
def log(
    namespace: str,
    name: str,
    session: ReadSession,
    _: Reader,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0),
) -> list[VersionOut]:
    """The repository's versions, newest first."""
    repository = repos.get_repository(session, RepoName.parse(f"{namespace}/{name}"))
    found = versions.log(session, repository, limit=limit, offset=offset)
    tags = queries.tags_by_version(session, (v.id for v in found))
    return [version_out(v, tags.get(v.id, [])) for v in found]


@router.post(
    "/versions",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": PushOut, "description": "the same content was already a version"}},
)
def commit(
    namespace: str,
    name: str,
    body: PushIn,
    session: WriteSession,
    principal: Writer,
    registry: RegistryDep,
    response: Response,
) -> PushOut:
    """Commit a pushed adapter whose blobs are uploaded. Identical content returns the existing version."""
    request = PushRequest(
        files=[FileEntry(f.path, f.digest, f.size) for f in body.files],
        base_sha=body.base,
        message=body.message,
        author=body.author or principal.name,
        provenance=body.provenance,
        tags=body.tags,
        update_latest=body.update_latest,
        parents=body.parents,
        kind=body.kind,
    )
    result = push_version(
        session,
        registry.store,
        RepoName.parse(f"{namespace}/{name}"),
        request,
        max_config_size=registry.settings.max_config_size,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return push_out(
        result.version,
        queries.tags_of_version(session, result.version),
        created=result.created,
        tags_moved=result.tags_moved,
    )


@router.get("/versions/{ref}")
def show(namespace: str, name: str, ref: str, session: ReadSession, _: Reader) -> VersionOut:
    """One version by tag, ``sha256:<hex>`` (or a 12+ hex prefix) or ``#<number>``; yanked ones too."""
    target = _target(namespace, name, ref)
    version = versions.get_version(
        session, repos.get_repository(session, target.repo), target.ref, allow_yanked=True
    )
    return version_out(version, queries.tags_of_version(session, version))


@router.post("/versions/{ref}/yank")
def yank_version(
    namespace: str, name: str, ref: str, body: YankIn, session: WriteSession, principal: Writer
) -> VersionOut:
    version = yank(session, _target(namespace, name, ref), reason=body.reason, actor=principal.name)
    return version_out(version, queries.tags_of_version(session, version))
