from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from registry.adapters.base_manifest import BaseManifest
from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.pagination import Cursor, Limit, link_next
from registry.api.schemas import BaseIn, BaseOut, CompatibleAdapterOut, base_out
from registry.services import bases, versions
from registry.services.blobs import FileEntry

router = APIRouter(prefix="/bases", tags=["base models"])


@router.post(
    "", status_code=status.HTTP_201_CREATED, name="base.register", responses={200: {"model": BaseOut}}
)
def register(
    body: BaseIn,
    session: WriteSession,
    principal: Caller,
    registry: RegistryDep,
    response: Response,
) -> BaseOut:
    """Register a base model from its shape manifest (read from safetensors headers by the client).
    Base models are shared by every namespace: this needs an admin token limited to none."""
    manifest = BaseManifest.from_json(body.manifest.model_dump())
    files = [FileEntry(f.path, f.digest, f.size) for f in body.files] if body.files is not None else None
    base, created = bases.register_base(
        session,
        principal,
        name=body.name,
        manifest=manifest,
        revision=body.revision,
        files=files,
        store=registry.store,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return base_out(base, created=created)


@router.get("")
def list_bases(session: ReadSession, principal: Caller) -> list[BaseOut]:
    return [base_out(b) for b in bases.list_bases(session, principal)]


@router.get("/{sha}")
def get_base(sha: str, session: ReadSession, principal: Caller) -> BaseOut:
    return base_out(bases.show_base(session, sha, principal))


@router.get("/{sha}/adapters")
def compatible_adapters(
    sha: str,
    request: Request,
    response: Response,
    session: ReadSession,
    principal: Caller,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> list[CompatibleAdapterOut]:
    """The unyanked adapter versions made for this base model in repositories the caller may read, by
    repository, newest first; one page (``Link: rel="next"`` for the next)."""
    page = bases.adapters_on_base(session, sha, principal, limit=limit, cursor=cursor)
    link_next(request, response, page.next_cursor)
    tags = versions.tags_by_version(session, page.items)
    return [
        CompatibleAdapterOut(
            repo=v.repository.full_name, number=v.number, digest=f"sha256:{v.digest}", tags=tags.get(v.id, [])
        )
        for v in page.items
    ]
