"""An HTTP client for the lorareg API (httpx), used by every CLI command."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
from tqdm import tqdm

from cli.cache import BlobCache, DigestMismatch
from registry.refs import Ref, RepoName, RepoRef

CHUNK = 1024 * 1024


class ApiError(Exception):
    """The server answered with an error (4xx: the user's to fix; 5xx: the server's)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Uploaded:
    """What an upload sent: the blobs the server lacked, and their bytes."""

    files: int
    bytes: int


class RegistryClient:
    def __init__(self, url: str, token: str | None = None, *, progress: bool = True) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(60.0, connect=10.0)
        )
        self.progress = progress

    def close(self) -> None:
        self.http.close()

    # Plumbing ----------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        _raise_for_error(response)
        return response.json() if response.content else None

    def list_all(
        self, path: str, params: dict[str, Any] | None = None, *, at_most: int | None = None
    ) -> list:
        """The rows of a paginated list, following ``Link: rel="next"`` until the end or ``at_most``."""
        rows: list[Any] = []
        url: str | None = path
        while url is not None and (at_most is None or len(rows) < at_most):
            response = self.http.get(url, params=params if url == path else None)
            _raise_for_error(response)
            rows.extend(response.json())
            url = response.links.get("next", {}).get("url")
        return rows if at_most is None else rows[:at_most]

    @staticmethod
    def repo_path(repo: RepoName) -> str:
        return f"/api/v1/repos/{repo.namespace}/{repo.name}"

    @staticmethod
    def ref_segment(ref: Ref) -> str:
        return quote(str(ref), safe=":")

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(
            total=total,
            desc=desc,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            leave=False,
            disable=not self.progress,
        )

    # Blobs ---------------------------------------------------------------------------------------

    def missing_blobs(self, blobs: dict[str, int]) -> list[dict[str, Any]]:
        body = {"blobs": [{"digest": f"sha256:{d}", "size": s} for d, s in blobs.items()]}
        return self.request("POST", "/api/v1/blobs/batch", json=body)["missing"]

    def resolve(self, target: RepoRef, base_sha: str | None = None) -> dict[str, Any]:
        """The version ``target`` names (refused with a 409 ApiError when made for another base)."""
        params = {"base": base_sha} if base_sha else None
        return self.request(
            "GET", f"{self.repo_path(target.repo)}/resolve/{self.ref_segment(target.ref)}", params=params
        )

    def fetch_version(self, version: dict[str, Any], directory: Path, *, cache: BlobCache) -> int:
        """Write a resolved version's files into ``directory`` through the cache; return how many were
        fetched from the server."""
        fetched = 0
        for entry in version["files"]:
            dest = directory / entry["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            fetched += self.download(
                entry["url"],
                dest,
                digest=entry["digest"].removeprefix("sha256:"),
                size=entry["size"],
                cache=cache,
            )
        return fetched

    def upload_files(self, files: dict[str, Path]) -> tuple[list[dict[str, Any]], Uploaded]:
        """Hash ``files`` (name → path), upload the blobs the server lacks (one batch check), and return
        the file list a commit takes and what was uploaded."""
        entries = [
            {"path": name, "digest": sha256_file(path), "size": path.stat().st_size}
            for name, path in files.items()
        ]
        missing = self.missing_blobs({e["digest"]: e["size"] for e in entries})
        by_digest = {e["digest"]: files[e["path"]] for e in entries}
        for target in missing:
            self.upload(target, by_digest[target["digest"].removeprefix("sha256:")])
        entries = [{**e, "digest": f"sha256:{e['digest']}"} for e in entries]
        return entries, Uploaded(files=len(missing), bytes=sum(t["size"] for t in missing))

    def upload(self, target: dict[str, Any], path: Path) -> None:
        """Upload one file to the target the batch call returned: this API, or a presigned URL on object
        storage (sent none of our credentials, then verified by the server through ``verify_url``)."""
        direct = not target["url"].startswith("/")
        sender = httpx.Client() if direct else self.http
        try:
            with path.open("rb") as handle, self.bar(target["size"], path.name) as bar:
                response = sender.request(
                    target["method"],
                    target["url"],
                    content=_read_chunks(handle, bar),
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(target["size"]),
                        **target.get("headers", {}),
                    },
                    timeout=httpx.Timeout(None, connect=10.0),
                )
        finally:
            if direct:
                sender.close()
        _raise_for_error(response)
        if target.get("verify_url"):
            self.request("POST", target["verify_url"])

    def download(
        self, url: str, dest: Path, *, digest: str, size: int, cache: BlobCache | None = None
    ) -> bool:
        """Put the blob ``digest`` at ``dest``, verifying size and sha256; raise ApiError on a mismatch.

        With a ``cache``, a blob already cached is not fetched at all, and a fetched one is verified
        into the cache first; ``dest`` is then a hard link to the cached (read-only) blob, or a copy
        across filesystems. Return whether any bytes came from the server.
        """
        if cache is not None:
            blob = cache.get(digest, size)
            fetched = blob is None
            if blob is None:
                try:
                    blob = cache.store(digest, self._stream_blob(url, dest.name, size))
                except DigestMismatch as exc:
                    raise ApiError(
                        502,
                        "digest_mismatch",
                        f"downloaded {dest.name} hashes to sha256:{exc.actual}, expected sha256:{digest}",
                    ) from None
            cache.place(blob, dest)
            return fetched
        hasher = hashlib.sha256()
        with dest.open("wb") as out:
            for chunk in self._stream_blob(url, dest.name, size):
                hasher.update(chunk)
                out.write(chunk)
        actual = hasher.hexdigest()
        if actual != digest:
            raise ApiError(
                502,
                "digest_mismatch",
                f"downloaded {dest.name} hashes to sha256:{actual}, expected sha256:{digest}",
            )
        return True

    def _stream_blob(self, url: str, label: str, size: int) -> Iterator[bytes]:
        with (
            self.http.stream(
                "GET", url, timeout=httpx.Timeout(None, connect=10.0), follow_redirects=True
            ) as response,
            self.bar(size, label) as bar,
        ):
            if response.is_error:
                response.read()
                _raise_for_error(response)
            for chunk in response.iter_bytes():  # as received: re-chunking only copies
                bar.update(len(chunk))
                yield chunk


def _read_chunks(handle: BinaryIO, bar: tqdm) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        bar.update(len(chunk))
        yield chunk


def _raise_for_error(response: httpx.Response) -> None:
    if not response.is_error:
        return
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = (
            "http_error",
            f"{response.status_code} {response.reason_phrase}: {response.text[:500]}",
        )
    raise ApiError(response.status_code, code, message)


def sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()
