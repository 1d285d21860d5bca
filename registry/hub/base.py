"""A base model's manifest from the Hub: the safetensors headers it needs, read from the local HF cache
where present, else with HTTP range requests; each weight file's sha256 from its LFS metadata or its
cache blob name. Weights are never downloaded, so the content digest is the one a directory gives."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from registry.adapters.base_manifest import BaseManifest, manifest_from
from registry.adapters.safetensors_header import SafetensorsHeader, parse_header, parse_header_file
from registry.errors import InvalidInput, NotFound
from registry.hub.cache import CachedFile, find_cached
from registry.hub.errors import hub_errors
from registry.hub.names import DEFAULT_REVISION, check_repo_id, endpoint_token, endpoint_url
from registry.hub.ranges import RangeReader
from registry.hub.revisions import hub_api, resolve


@dataclass(frozen=True)
class HubFile:
    size: int | None
    sha256: str | None  # from LFS metadata or the cache blob name; None: unknown without the bytes
    cached: Path | None  # the local copy in the HF cache


class HubFiles:
    """A repository's top-level files at one commit (a ``WeightFiles``): cached copies where present,
    else range reads through ``reader`` (None offline)."""

    def __init__(self, where: str, files: dict[str, HubFile], reader: RangeReader | None) -> None:
        self.where = where
        self.files = files
        self.reader = reader

    def names(self) -> Collection[str]:
        return self.files.keys()

    def read(self, name: str) -> bytes:
        file = self.files[name]
        if file.cached is not None:
            return file.cached.read_bytes()
        return self._remote(name).read_at(name, 0, self._size(name))

    def header(self, name: str) -> SafetensorsHeader:
        file = self.files[name]
        if file.cached is not None:
            return parse_header_file(file.cached)
        reader = self._remote(name)
        return parse_header(
            lambda offset, length: reader.read_at(name, offset, length), self._size(name), filename=name
        )

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        file = self.files[name]
        if file.cached is not None:
            with file.cached.open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        return self._remote(name).read_at(name, offset, length)

    def sha256(self, name: str) -> str:
        file = self.files[name]
        if file.sha256 is not None:
            return file.sha256
        if file.cached is not None:
            with file.cached.open("rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        raise InvalidInput(
            f"{name} in {self.where} is not stored with Git LFS, so its sha256 is unknown without "
            "downloading it; download the repository into the HF cache (hf download) and register again"
        )

    def _remote(self, name: str) -> RangeReader:
        if self.reader is None:
            raise NotFound(
                f"{name} of {self.where} is not in the local HF cache, and HF_HUB_OFFLINE=1 forbids fetching "
                "it: download the whole repository (hf download) or unset HF_HUB_OFFLINE"
            )
        return self.reader

    def _size(self, name: str) -> int:
        size = self.files[name].size
        if size is None:
            raise InvalidInput(f"{self.where} does not say how large {name} is: not a Hub-compatible server")
        return size


@dataclass(frozen=True)
class HubBase:
    repo_id: str
    revision: str  # as asked
    commit: str  # the 40-hex commit SHA it resolved to
    manifest: BaseManifest
    bytes_fetched: int  # bytes of headers and index read over HTTP; 0: all from the local HF cache


def read_hub_base(
    repo_id: str,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    cache_dir: Path | None = None,
) -> HubBase:
    """Resolve ``repo_id@revision`` (default ``main``) to its commit and read the base model's manifest there.

    Online, the commit and the files' sizes and sha256s come from ``model_info(files_metadata=True)``;
    with ``HF_HUB_OFFLINE=1``, from the cache alone. The saved HF token goes only to the Hub it is for
    (:func:`~registry.hub.names.endpoint_token`).
    """
    check_repo_id(repo_id)
    endpoint = endpoint_url(endpoint)
    token = endpoint_token(endpoint, token)
    revision = revision or DEFAULT_REVISION
    if constants.HF_HUB_OFFLINE:
        commit, files, reader = _from_cache(repo_id, revision, cache_dir)
    else:
        commit, files, reader = _from_hub(repo_id, revision, endpoint, token, cache_dir)
    with hub_errors(repo_id, commit, endpoint):
        manifest = manifest_from(HubFiles(f"{repo_id}@{commit}", files, reader))
    return HubBase(
        repo_id=repo_id,
        revision=revision,
        commit=commit,
        manifest=manifest,
        bytes_fetched=reader.bytes_read if reader is not None else 0,
    )


def _from_hub(
    repo_id: str, revision: str, endpoint: str, token: str | bool | None, cache_dir: Path | None
) -> tuple[str, dict[str, HubFile], RangeReader]:
    commit, info = resolve(hub_api(endpoint, token), repo_id, revision, files_metadata=True)
    cached = find_cached(repo_id, commit, cache_dir)
    files = {
        sibling.rfilename: _hub_file(
            sibling.size,
            sibling.lfs.sha256 if sibling.lfs else None,
            cached.files.get(sibling.rfilename) if cached else None,
        )
        for sibling in info.siblings or ()
        if "/" not in sibling.rfilename
    }
    return commit, files, RangeReader(repo_id, commit, endpoint=endpoint, token=token)


def _from_cache(repo_id: str, revision: str, cache_dir: Path | None) -> tuple[str, dict[str, HubFile], None]:
    cached = find_cached(repo_id, revision, cache_dir)
    if cached is None:
        raise NotFound(
            f"{repo_id}@{revision} is not in the local HF cache ({cache_dir or constants.HF_HUB_CACHE}), "
            f"and HF_HUB_OFFLINE=1 forbids fetching it: download it first (hf download {repo_id} "
            f"--revision {revision}) or unset HF_HUB_OFFLINE"
        )
    files = {name: _hub_file(None, None, cached.files.get(name)) for name in cached.names()}
    return cached.commit, files, None


def _hub_file(size: int | None, lfs_sha256: str | None, cached: CachedFile | None) -> HubFile:
    return HubFile(
        size=size,
        sha256=lfs_sha256 or (cached.sha256 if cached else None),
        cached=cached.path if cached else None,
    )
