"""Lookups for loaders: one reference, or a batch of them. Included first: the hottest routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from registry.api.caching import immutable
from registry.api.deps import Caller, Registry, RegistryDep, caller, get_registry
from registry.api.errors import status_for
from registry.api.schemas import (
    ErrorDetail,
    ResolveBatchIn,
    ResolveBatchOut,
    ResolvedOut,
    ResolvedVersionOut,
    resolved_out,
)
from registry.errors import RegistryError
from registry.metrics import instruments
from registry.principal import Principal
from registry.refs import Ref, RepoName, RepoRef
from registry.services import bases, versions

router = APIRouter(tags=["versions"])


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string"},
    }


# The single resolve takes the bare request: FastAPI's per-request parameter and dependency solving cost
# about a fifth of this route's throughput (bench/resolve.py), so it reads its parameters itself and
# declares them to OpenAPI here.
_RESOLVE_PARAMETERS = [
    _parameter("namespace", "path", "the repository's namespace"),
    _parameter("name", "path", "the repository's name"),
    _parameter("ref", "path", "a tag, #NUMBER (as %23NUMBER), or a sha256: digest or prefix"),
    _parameter(
        "base",
        "query",
        "the base model the caller runs, as NAME, NAME@SHA, a SHA or a 12+ hex prefix; a mismatch is a 409",
    ),
]


@router.get(
    "/repos/{namespace}/{name}/resolve/{ref}",
    response_model=ResolvedVersionOut,
    responses={304: {"description": "ETag matched"}},
    openapi_extra={"parameters": _RESOLVE_PARAMETERS},
)
async def resolve(request: Request) -> Response:
    """Resolve a reference to one version, for loaders; refuses yanked versions unless named by digest.

    ``ETag`` is the version digest (``If-None-Match`` answers 304); digest refs are cached as immutable,
    tag refs revalidated (``no-cache``). One query, a lookup on the event loop."""
    principal = await caller(request)
    path = request.path_params
    target = RepoRef(RepoName.parse(f"{path['namespace']}/{path['name']}"), Ref.parse(path["ref"]))
    base = request.query_params.get("base")
    resolved = await versions.resolve(get_registry(request).lookups, target, principal, base_sha=base)
    headers = {
        "ETag": f'"{resolved.digest}"',
        "Cache-Control": immutable(principal, resolved.visibility)
        if target.ref.kind == "digest"
        else "no-cache",
    }
    if request.headers.get("if-none-match", "").strip() in (headers["ETag"], resolved.digest, "*"):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(resolved_out(resolved).model_dump_json(), media_type="application/json", headers=headers)


@router.post("/resolve")
async def resolve_batch(body: ResolveBatchIn, registry: RegistryDep, principal: Caller) -> ResolveBatchOut:
    """Resolve many refs in one round trip (a server loading its adapters at start); each answers with
    its version or its own error, so one bad ref does not fail the rest. One lookup per ref (and one for
    the base, unless given as a whole SHA)."""
    base = await bases.base_sha_for(registry.lookups, body.base) if body.base is not None else None
    return ResolveBatchOut(results=[await _resolve(registry, principal, r, base) for r in body.refs])


async def _resolve(registry: Registry, principal: Principal, ref: str, base: str | None) -> ResolvedOut:
    try:
        resolved = await versions.resolve(registry.lookups, RepoRef.parse(ref), principal, base_sha=base)
    except RegistryError as error:
        instruments.resolved("batch", status_for(error))
        return ResolvedOut(ref=ref, error=ErrorDetail(code=error.code, message=error.message))
    instruments.resolved("batch", status.HTTP_200_OK)
    return ResolvedOut(ref=ref, version=resolved_out(resolved))
