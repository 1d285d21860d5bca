from __future__ import annotations

from fastapi import APIRouter

from registry.api.deps import Reader, ReadSession
from registry.api.schemas import ErrorDetail, ResolveBatchIn, ResolveBatchOut, ResolvedOut, version_out
from registry.db import queries
from registry.errors import RegistryError
from registry.refs import RepoRef
from registry.services import versions

router = APIRouter(tags=["versions"])


@router.post("/resolve")
def resolve_batch(body: ResolveBatchIn, session: ReadSession, principal: Reader) -> ResolveBatchOut:
    """Resolve many refs in one round trip (a server loading its adapters at start); each answers with
    its version or its own error, so one bad ref does not fail the rest."""
    results = []
    for ref in body.refs:
        try:
            target = RepoRef.parse(ref)
            principal.require("read", target.repo.namespace)
            version = versions.resolve(session, target, base_sha=body.base)
            results.append(
                ResolvedOut(ref=ref, version=version_out(version, queries.tags_of_version(session, version)))
            )
        except RegistryError as error:
            results.append(ResolvedOut(ref=ref, error=ErrorDetail(code=error.code, message=error.message)))
    return ResolveBatchOut(results=results)
