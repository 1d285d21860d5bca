"""The read side of the Hugging Face Hub protocol, mounted under ``/hf``.

It serves ``huggingface_hub`` (``snapshot_download``, ``hf_hub_download``, ``HfApi.model_info`` and
``list_repo_tree``) and everything built on it: PEFT's ``PeftModel.from_pretrained``, vLLM's
``lora_path``, LoRAX's ``hub`` source. Point them at ``HF_ENDPOINT=<lorareg>/hf`` (or ``endpoint=``)
and use the repository as the repo id and a lorareg reference as the revision: a tag (``main`` means
``latest``), ``#N``, a digest or a 12+ hex prefix of it (``sha256:`` optional), or the 40-hex ``sha``
this API reports for a version. Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) and ``X-Error-Message``; an error answer to ``HEAD`` has no body. No Xet headers are
sent, so clients download over plain HTTP.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse

from registry.api.caching import immutable
from registry.api.deps import Caller, ReadSession, RegistryDep
from registry.api.errors import error_response
from registry.api.streaming import blob_response
from registry.db.models import Version, VersionFile
from registry.errors import Gone, InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import DEFAULT_TAG, MIN_DIGEST_PREFIX, Ref, RepoName
from registry.services import cards, repos, versions

router = APIRouter(tags=["huggingface"])
SHA_LENGTH = 40
LFS_POINTER_SIZE = 134
_HEX = re.compile(rf"^[0-9a-f]{{{MIN_DIGEST_PREFIX},64}}$")
_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


class HfError(Exception):
    """A lookup failure, answered as 404 with the Hub's error headers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def response(self, request: Request) -> Response:
        return error_response(request, status.HTTP_404_NOT_FOUND, self.code, self.message)


def _parse_revision(revision: str) -> list[Ref]:
    """The references ``revision`` may mean, in the order to try them."""
    if revision == "main":
        return [Ref("tag", DEFAULT_TAG)]
    lowered = revision.lower()
    if lowered.startswith("sha256:") or (len(lowered) in (SHA_LENGTH, 64) and _HEX.match(lowered)):
        return [Ref.digest(lowered.removeprefix("sha256:"))]
    digest = [Ref.digest(lowered)] if _HEX.match(lowered) else []
    try:
        return [Ref.parse(revision), *digest]  # a hex-looking tag name wins over a digest prefix
    except InvalidInput:
        if digest:
            return digest
        raise


def _find(session: ReadSession, namespace: str, name: str, revision: str, principal: Principal) -> Version:
    try:
        repository = repos.get_repository(session, RepoName.parse(f"{namespace}/{name}"), principal)
    except (NotFound, InvalidInput) as exc:
        raise HfError("RepoNotFound", str(exc)) from exc
    try:
        refs = _parse_revision(revision)
    except InvalidInput as exc:
        raise HfError("RevisionNotFound", str(exc)) from exc
    failure: Exception | None = None
    for ref in refs:
        try:
            return versions.get_version(session, repository, ref)
        except (NotFound, Gone, InvalidInput) as exc:
            failure = failure or exc
    raise HfError("RevisionNotFound", str(failure)) from failure


def _sha(version: Version) -> str:
    return version.digest[:SHA_LENGTH]


def _timestamp(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _model_info(version: Version, card: dict[str, Any], *, blobs: bool) -> dict[str, Any]:
    """What ``HfApi.model_info`` reads; ``card`` gives ``cardData``, ``tags``, ``library_name`` and
    ``pipeline_tag`` (the version's model card, as the Hub derives them)."""
    repo_id = version.repository.full_name
    created = _timestamp(version.created_at)
    return {
        "id": repo_id,
        "modelId": repo_id,
        "sha": _sha(version),
        "private": version.repository.visibility != "public",
        "gated": False,
        "disabled": False,
        "lastModified": created,
        "createdAt": created,
        **card,
        "siblings": [_sibling(f, blobs=blobs) for f in version.files],
    }


def _sibling(file: VersionFile, *, blobs: bool) -> dict[str, Any]:
    """A ``siblings`` entry; with ``blobs`` (``files_metadata=True``) its blob id and LFS sha256 too."""
    sibling: dict[str, Any] = {"rfilename": file.path, "size": file.size}
    if blobs:
        sibling["blobId"] = file.blob_digest
        if _is_lfs(file):
            sibling["lfs"] = {"sha256": file.blob_digest, "size": file.size, "pointerSize": LFS_POINTER_SIZE}
    return sibling


def _is_lfs(file: VersionFile) -> bool:
    return file.path.endswith(_LFS_SUFFIXES)


def _file_entry(file: VersionFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "path": file.path, "size": file.size, "oid": file.blob_digest}
    if _is_lfs(file):
        entry["lfs"] = {"oid": file.blob_digest, "size": file.size, "pointerSize": LFS_POINTER_SIZE}
    return entry


def _tree(version: Version, path: str, *, recursive: bool) -> list[dict[str, Any]] | None:
    """The entries under ``path`` (files, and folders unless recursive); None if there is no such folder."""
    prefix = f"{path.strip('/')}/" if path.strip("/") else ""
    inside = [f for f in version.files if f.path.startswith(prefix)]
    if prefix and not inside:
        return None
    entries: list[dict[str, Any]] = []
    folders: set[str] = set()
    for file in inside:
        rest = file.path[len(prefix) :]
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            folder = prefix + "/".join(parts[:depth])
            if (recursive or depth == 1) and folder not in folders:
                folders.add(folder)
                entries.append({"type": "directory", "path": folder, "oid": _sha(version), "size": 0})
        if recursive or len(parts) == 1:
            entries.append(_file_entry(file))
    return entries


@router.get("/api/models/{namespace}/{name}")
@router.get("/api/models/{namespace}/{name}/revision/{revision}")
def model_info(
    namespace: str,
    name: str,
    request: Request,
    session: ReadSession,
    principal: Caller,
    revision: str = "main",
    blobs: bool = False,
) -> Response:
    """``HfApi.model_info``: the version's ``sha``, its model card (``cardData``, ``tags``) and its files
    (``siblings``; with ``blobs``, as ``files_metadata=True`` asks, each file's ``blobId`` and ``lfs``
    sha256 and size)."""
    try:
        version = _find(session, namespace, name, revision, principal)
    except HfError as exc:
        return exc.response(request)
    return JSONResponse(_model_info(version, cards.hub_fields(session, version), blobs=blobs))


@router.get("/api/models/{namespace}/{name}/tree/{revision}")
@router.get("/api/models/{namespace}/{name}/tree/{revision}/{path:path}")
def tree(
    namespace: str,
    name: str,
    revision: str,
    request: Request,
    session: ReadSession,
    principal: Caller,
    path: str = "",
    recursive: bool = False,
) -> Response:
    """``HfApi.list_repo_tree`` (what ``snapshot_download`` lists files with): one page, no ``Link``."""
    try:
        version = _find(session, namespace, name, revision, principal)
        entries = _tree(version, path, recursive=recursive)
        if entries is None:
            raise HfError("EntryNotFound", f"{version.repository.full_name} has no folder {path!r}")
    except HfError as exc:
        return exc.response(request)
    return JSONResponse(entries)


@router.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
def resolve_file(
    namespace: str,
    name: str,
    revision: str,
    path: str,
    request: Request,
    session: ReadSession,
    registry: RegistryDep,
    principal: Caller,
) -> Response:
    """``hf_hub_download``: HEAD for the metadata (``ETag``, ``X-Repo-Commit``, size), GET for the bytes
    (``Range`` honoured): a redirect to a presigned URL on object storage, else streamed from the store."""
    try:
        version = _find(session, namespace, name, revision, principal)
    except HfError as exc:
        return exc.response(request)
    file = next((f for f in version.files if f.path == path), None)
    if file is None:
        missing = HfError(
            "EntryNotFound", f"{version.repository.full_name} version #{version.number} has no file {path!r}"
        )
        response = missing.response(request)
        response.headers["X-Repo-Commit"] = _sha(version)
        return response
    digest, size = file.blob_digest, file.size
    headers = {
        "ETag": f'"{digest}"',
        "X-Repo-Commit": _sha(version),
        "X-Linked-Etag": f'"{digest}"',
        "X-Linked-Size": str(size),
        "Accept-Ranges": "bytes",
        "Cache-Control": (
            immutable(principal, version.repository.visibility) if revision == _sha(version) else "no-cache"
        ),
    }
    return blob_response(request, registry.store, registry.settings, digest, size, headers)
