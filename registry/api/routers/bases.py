from __future__ import annotations

from fastapi import APIRouter, Response, status

from registry.adapters.base_manifest import BaseManifest
from registry.api.deps import Reader, ReadSession, RegistryDep, Writer, WriteSession
from registry.api.schemas import BaseIn, BaseOut, CompatibleAdapterOut, base_out
from registry.db import queries
from registry.services import bases
from registry.services.blobs import FileEntry

router = APIRouter(prefix="/bases", tags=["base models"])


@router.post("", status_code=status.HTTP_201_CREATED, responses={200: {"model": BaseOut}})
def register(
    body: BaseIn, session: WriteSession, _: Writer, registry: RegistryDep, response: Response
) -> BaseOut:
    """Register a base model from its shape manifest (read from safetensors headers by the client)."""
    manifest = BaseManifest.from_json(body.manifest.model_dump())
    files = [FileEntry(f.path, f.digest, f.size) for f in body.files] if body.files is not None else None
    base, created = bases.register_base(
        session, name=body.name, manifest=manifest, revision=body.revision, files=files, store=registry.store
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return base_out(base, created=created)


@router.get("")
def list_bases(session: ReadSession, _: Reader) -> list[BaseOut]:
    return [base_out(b) for b in bases.list_bases(session)]


@router.get("/{sha}")
def get_base(sha: str, session: ReadSession, _: Reader) -> BaseOut:
    return base_out(bases.get_base(session, sha))


@router.get("/{sha}/adapters")
def compatible_adapters(sha: str, session: ReadSession, _: Reader) -> list[CompatibleAdapterOut]:
    """Every unyanked adapter version made for this base model, newest first per repository."""
    found = queries.versions_on_base(session, bases.get_base(session, sha))
    tags = queries.tags_by_version(session, (v.id for v in found))
    return [
        CompatibleAdapterOut(
            repo=v.repository.full_name, number=v.number, digest=f"sha256:{v.digest}", tags=tags.get(v.id, [])
        )
        for v in found
    ]
