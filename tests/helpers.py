"""Talking to a live server the way a client does: hash, batch-check, upload, commit."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx

from registry.adapters.base_manifest import read_base_manifest


def file_entries(directory: Path) -> list[dict[str, Any]]:
    return [
        {
            "path": p.relative_to(directory).as_posix(),
            "digest": "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest(),
            "size": p.stat().st_size,
        }
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    ]


def upload_directory(http: httpx.Client, directory: Path) -> list[dict[str, Any]]:
    """Upload the files of ``directory`` the server is missing; return the commit's file list."""
    files = file_entries(directory)
    missing = http.post(
        "/api/v1/blobs/batch", json={"blobs": [{"digest": f["digest"], "size": f["size"]} for f in files]}
    )
    assert missing.status_code == 200, missing.text
    by_digest = {f["digest"]: directory / f["path"] for f in files}
    for target in missing.json()["missing"]:
        response = http.put(target["url"], content=by_digest[target["digest"]].read_bytes())
        assert response.status_code == 201, response.text
    return files


def register_base(
    http: httpx.Client, directory: Path, name: str = "tiny-llama", revision: str | None = None
) -> dict[str, Any]:
    response = http.post(
        "/api/v1/bases",
        json={"name": name, "revision": revision, "manifest": read_base_manifest(directory).to_json()},
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def push(http: httpx.Client, repo: str, directory: Path, **body: Any) -> httpx.Response:
    """Upload and commit ``directory`` as a version of ``repo``; return the commit response."""
    files = upload_directory(http, directory)
    return http.post(f"/api/v1/repos/{repo}/versions", json={"files": files, **body})


def every_page(http: httpx.Client, path: str, **params: Any) -> list[Any]:
    """Every row of a paginated list, following its ``Link: rel="next"`` headers."""
    rows: list[Any] = []
    response = http.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        rows += response.json()
        if "next" not in response.links:
            return rows
        response = http.get(response.links["next"]["url"])
