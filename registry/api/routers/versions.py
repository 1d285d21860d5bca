from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.schemas import (
    PushIn,
    PushOut,
    VersionOut,
    YankIn,
    YankOut,
    push_out,
    version_out,
    yank_out,
)
from registry.refs import MAX_NUMBER, Ref, RepoName, RepoRef
from registry.services import versions
from registry.services.blobs import FileEntry
from registry.services.push import PushRequest, push_version
from registry.services.yank import unyank, yank

router = APIRouter(prefix="/repos/{namespace}/{name}", tags=["versions"])


def _target(namespace: str, name: str, ref: str) -> RepoRef:
    return RepoRef(RepoName.parse(f"{namespace}/{name}"), Ref.parse(ref))


@router.get("/versions")
def log(
    namespace: str,
    name: str,
    session: ReadSession,
    principal: Caller,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=MAX_NUMBER),
) -> list[VersionOut]:
    """The repository's versions, newest first."""
    found = versions.log(
        session, RepoName.parse(f"{namespace}/{name}"), principal, limit=limit, offset=offset
    )
    tags = versions.tags_by_version(session, found)
    return [version_out(v, tags.get(v.id, [])) for v in found]


@router.post(
    "/versions",
    status_code=status.HTTP_201_CREATED,
    name="version.push",
    responses={200: {"model": PushOut, "description": "the same content was already a version"}},
)
def commit(
    namespace: str,
    name: str,
    body: PushIn,
    session: WriteSession,
    principal: Caller,
    registry: RegistryDep,
    response: Response,
) -> PushOut:
    """Commit a pushed adapter whose blobs are uploaded. Identical content returns the existing version
    (and moves no tag onto it if it was yanked). ``author`` is descriptive, as the client claims it;
    ``pushed_by`` (like the audit trail and tag history) is the token."""
    request = PushRequest(
        files=[FileEntry(f.path, f.digest, f.size) for f in body.files],
        base_sha=body.base,
        message=body.message,
        author=body.author,
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
        principal=principal,
        max_config_size=registry.settings.max_config_size,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return push_out(
        result.version,
        versions.tags_of(session, result.version),
        created=result.created,
        tags_moved=result.tags_moved,
        warnings=result.warnings,
    )


@router.get("/versions/{ref}")
def show(namespace: str, name: str, ref: str, session: ReadSession, principal: Caller) -> VersionOut:
    """One version by tag, ``sha256:<hex>`` (or a 12+ hex prefix) or ``#<number>``; yanked ones too."""
    version = versions.find_version(session, _target(namespace, name, ref), principal, allow_yanked=True)
    return version_out(version, versions.tags_of(session, version))


@router.post("/versions/{ref}/yank", name="version.yank")
def yank_version(
    namespace: str, name: str, ref: str, body: YankIn, session: WriteSession, principal: Caller
) -> YankOut:
    """Hide a version from tags and numbers (it stays pullable by digest). ``latest`` moves to the newest
    unyanked version (``tags_moved``); the other tags stay on it (``tags``) and resolve to 410."""
    result = yank(session, _target(namespace, name, ref), reason=body.reason, principal=principal)
    return yank_out(result, versions.tags_of(session, result.version))


@router.post("/versions/{ref}/unyank", name="version.unyank")
def unyank_version(namespace: str, name: str, ref: str, session: WriteSession, principal: Caller) -> YankOut:
    """Make a yanked version resolve again. ``latest`` moves back to it only if its yank moved it off and
    nothing moved it since (``tags_moved``)."""
    result = unyank(session, _target(namespace, name, ref), principal=principal)
    return yank_out(result, versions.tags_of(session, result.version))
