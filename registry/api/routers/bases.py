from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from registry.adapters.base_manifest import BaseManifest
from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.pagination import Cursor, Limit, link_next
from registry.api.schemas import BaseIn, BaseOut, CompatibleAdapterOut, base_out
from registry.services import bases, versions
from registry.services.blobs import FileEntry

router = APIRouter(prefix="/bases", tags=["base models"])
# Any form a base answers to (``registry.refs.BASE_FORMS``): a NAME may hold slashes, hence ``{sha:path}``.
BaseParam = Annotated[
    str, Path(description="the base: NAME, NAME@SHA, a SHA (40 or 64 hex, or sha256:…) or a 12+ hex prefix")
]


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
    """Register a base model from its shape manifest (read from safetensors headers by the client), or
    add a revision or its files to a registered one (200; ``added`` says what is new). Base models are
    shared by every namespace: this needs an admin token limited to none."""
    manifest = BaseManifest.from_json(body.manifest.model_dump())
    files = [FileEntry(f.path, f.digest, f.size) for f in body.files] if body.files is not None else None
    registration = bases.register_base(
        session,
        principal,
        name=body.name,
        manifest=manifest,
        revision=body.revision,
        files=files,
        store=registry.store,
        quantized_from=body.quantized_from,
    )
    if "base" not in registration.added:
        response.status_code = status.HTTP_200_OK
    return base_out(registration.base, added=registration.added)


@router.get("")
def list_bases(session: ReadSession, principal: Caller) -> list[BaseOut]:
    return [base_out(b) for b in bases.list_bases(session, principal)]


# Declared before GET /{sha:path}, whose path would match this one's too.
@router.get("/{sha:path}/adapters")
def compatible_adapters(
    sha: BaseParam,
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


@router.get("/{sha:path}")
def get_base(sha: BaseParam, session: ReadSession, principal: Caller) -> BaseOut:
    return base_out(bases.show_base(session, sha, principal))
