"""Base models: registration from a shape manifest, lookup by any SHA they answer to."""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from registry.adapters.base_manifest import BaseManifest
from registry.db import queries
from registry.db.models import BaseModel, Version
from registry.errors import Conflict, InvalidInput, UnknownBase
from registry.principal import Principal
from registry.refs import RepoName
from registry.services import audit
from registry.services.blobs import FileEntry, check_files
from registry.services.pages import Page, check_limit, page_of
from registry.storage import BlobStore

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def validate_sha(sha: str) -> str:
    """A base SHA: a 40-hex Hugging Face commit or a 64-hex content digest."""
    sha = sha.lower()
    if not _SHA.match(sha):
        raise InvalidInput(
            f"invalid base model SHA {sha!r}: expected a 40-hex Hugging Face commit SHA or the 64-hex "
            "content digest printed by `lorareg base register`"
        )
    return sha


def register_base(
    session: Session,
    principal: Principal,
    *,
    name: str,
    manifest: BaseManifest,
    revision: str | None = None,
    files: list[FileEntry] | None = None,
    store: BlobStore | None = None,
) -> tuple[BaseModel, bool]:
    """Record a base model (or add an HF revision, or its uploaded files, to a known one); return it and
    whether it is new. Base models are shared by every namespace, so this is an unrestricted admin's.
    ``files`` are the base directory's uploaded files (weights, config, tokenizer), which
    merge-into-base jobs need; their weight files must be the ones the manifest was read from, and a
    base's files, once stored, are not replaced by others."""
    principal.require_unrestricted("admin", "registering a base model")
    if not name or len(name) > 256:
        raise InvalidInput("a base model needs a name of 1 to 256 characters, e.g. meta-llama/Llama-3.1-8B")
    if revision is not None:
        revision = validate_sha(revision)
        if len(revision) != 40:
            raise InvalidInput(f"--revision must be a 40-hex Hugging Face commit SHA, got {revision!r}")
    digest = manifest.content_digest
    created = queries.ensure_base(session, name=name, content_digest=digest, manifest=manifest.to_json())
    base = queries.get_base_by_digest(session, digest)
    assert base is not None
    queries.ensure_base_sha(session, sha=digest, kind="content", base_id=base.id)
    if files is not None:
        assert store is not None
        stored = _stored_files(session, store, manifest, files, principal)
        if base.stored_files is not None and base.stored_files != stored:
            raise Conflict(
                f"base model sha256:{digest} ({base.name}) already has other files stored; a base's "
                "files are not replaced (register the directory they came from, unchanged)"
            )
        base.stored_files = stored
    if revision is not None:
        queries.ensure_base_sha(session, sha=revision, kind="hf", base_id=base.id)
        known = queries.get_base_sha(session, revision)
        assert known is not None
        if known.base_id != base.id:
            raise Conflict(
                f"revision {revision} is already registered for another base model "
                f"({known.base.name}, content sha256:{known.base.content_digest})"
            )
    session.flush()
    session.refresh(base)
    audit.record(
        session,
        principal,
        "base.register",
        target=f"{base.name}@{digest}",
        detail={"created": created, "revision": revision, "files": files is not None},
    )
    return base, created


def _stored_files(
    session: Session, store: BlobStore, manifest: BaseManifest, files: list[FileEntry], principal: Principal
) -> list[dict[str, object]]:
    checked = check_files(session, store, files, principal)
    for name, digest in manifest.files.items():
        if name not in checked or checked[name].digest != digest:
            raise InvalidInput(
                f"the uploaded files lack weight file {name} with sha256:{digest} from the manifest; "
                "upload the same directory the manifest was read from"
            )
    return [
        {"path": f.path, "digest": f.digest, "size": f.size}
        for f in sorted(checked.values(), key=lambda f: f.path)
    ]


def get_base(session: Session, sha: str) -> BaseModel:
    base = queries.get_base_by_sha(session, validate_sha(sha))
    if base is None:
        raise UnknownBase(
            f"base model {sha} is not registered; register it with "
            f"`lorareg base register DIR --name NAME{' --revision ' + sha if len(sha) == 40 else ''}`"
        )
    return base


def find_base(session: Session, *, sha: str | None, name: str | None) -> tuple[BaseModel, str]:
    """The base an adapter names, by SHA or else by a unique name; return it and the SHA used."""
    if sha:
        return get_base(session, sha), sha.lower()
    if not name:
        raise InvalidInput(
            "the adapter names no base model: set base_model_name_or_path and revision in "
            "adapter_config.json, or pass --base NAME@SHA"
        )
    candidates = queries.get_bases_by_name(session, name)
    if len(candidates) == 1:
        return candidates[0], candidates[0].content_digest
    if not candidates:
        raise UnknownBase(
            f"no base model named {name!r} is registered; register it with "
            f"`lorareg base register DIR --name {name}`, or pass --base NAME@SHA"
        )
    raise InvalidInput(
        f"{len(candidates)} base models are named {name!r}; pick one with --base {name}@SHA "
        f"(content SHAs: {', '.join(b.content_digest for b in candidates)})"
    )


def list_bases(session: Session, principal: Principal) -> Sequence[BaseModel]:
    """Every base model (shared by all namespaces): for any token, not anonymous callers."""
    principal.require("read")
    return queries.list_bases(session)


def show_base(session: Session, sha: str, principal: Principal) -> BaseModel:
    principal.require("read")
    return get_base(session, sha)


def adapters_on_base(
    session: Session, sha: str, principal: Principal, *, limit: int = 100, cursor: str | None = None
) -> Page[Version]:
    """The unyanked versions made for a base model, in repositories ``principal`` may read: by
    repository, newest first. ``cursor`` continues a previous page."""
    principal.require("read")
    after = None
    if cursor is not None:
        repo, _, number = cursor.rpartition("#")
        try:
            parsed = RepoName.parse(repo)
            after = (parsed.namespace, parsed.name, int(number))
        except (InvalidInput, ValueError):
            raise InvalidInput(f"invalid cursor {cursor!r}: pass the one a previous page returned") from None
    found = queries.versions_on_base(
        session,
        get_base(session, sha),
        readable_in=principal.readable_namespaces,
        after=after,
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, lambda version: f"{version.repository.full_name}#{version.number}")
