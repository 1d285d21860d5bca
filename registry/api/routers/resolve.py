"""Lookups for loaders: one reference, or a batch of them. Included first: the hottest routes."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.orm import Session

from registry.api.deps import Reader, RegistryDep, get_registry
from registry.api.schemas import (
    ErrorDetail,
    ResolveBatchIn,
    ResolveBatchOut,
    ResolvedOut,
    ResolvedVersionOut,
    resolved_out,
)
from registry.errors import RegistryError
from registry.principal import Principal
from registry.refs import Ref, RepoName, RepoRef
from registry.services import versions

router = APIRouter(tags=["versions"])


@router.get(
    "/repos/{namespace}/{name}/resolve/{ref}",
    response_model=ResolvedVersionOut,
    responses={304: {"description": "ETag matched"}},
)
async def resolve(
    namespace: str,
    name: str,
    ref: str,
    request: Request,
    _: Reader,
    base: str | None = Query(None, description="the base model SHA the caller runs; a mismatch is a 409"),
) -> Response:
    """Resolve a reference to one version, for loaders; refuses yanked versions unless named by digest.

    ``ETag`` is the version digest (``If-None-Match`` answers 304); digest refs are cached as immutable,
    tag refs revalidated (``no-cache``). One query, in one worker thread."""
    target = RepoRef(RepoName.parse(f"{namespace}/{name}"), Ref.parse(ref))
    resolved = await get_registry(request).read(
        lambda session: versions.resolve(session, target, base_sha=base)
    )
    headers = {
        "ETag": f'"{resolved.digest}"',
        "Cache-Control": "public, max-age=31536000, immutable" if target.ref.kind == "digest" else "no-cache",
    }
    if request.headers.get("if-none-match", "").strip() in (headers["ETag"], resolved.digest, "*"):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(resolved_out(resolved).model_dump_json(), media_type="application/json", headers=headers)


@router.post("/resolve")
async def resolve_batch(body: ResolveBatchIn, registry: RegistryDep, principal: Reader) -> ResolveBatchOut:
    """Resolve many refs in one round trip (a server loading its adapters at start); each answers with
    its version or its own error, so one bad ref does not fail the rest. One transaction for all."""
    return await registry.read(
        lambda session: ResolveBatchOut(
            results=[_resolve(session, principal, r, body.base) for r in body.refs]
        )
    )


def _resolve(session: Session, principal: Principal, ref: str, base: str | None) -> ResolvedOut:
    try:
        target = RepoRef.parse(ref)
        principal.require("read", target.repo.namespace)
        return ResolvedOut(ref=ref, version=resolved_out(versions.resolve(session, target, base_sha=base)))
    except RegistryError as error:
        return ResolvedOut(ref=ref, error=ErrorDetail(code=error.code, message=error.message))
