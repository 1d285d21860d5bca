"""Every bad push gets a 4xx JSON error naming the problem, and leaves nothing behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from registry.db.models import VersionFile
from registry.refs import RepoName
from tests.bad_inputs import BAD_PUSHES, BadPush, prepare
from tests.conftest import LiveServer, TinyBase
from tests.helpers import every_page, file_entries, push, register_base


def referenced(server: LiveServer, digests: list[str]) -> int:
    engine = create_engine(server.settings.resolved_database_url)
    with engine.connect() as connection:
        count = connection.scalar(
            select(func.count()).select_from(VersionFile).where(VersionFile.blob_digest.in_(digests))
        )
    engine.dispose()
    return count or 0


@pytest.mark.parametrize("case", BAD_PUSHES, ids=lambda c: c.name)
def test_bad_push_is_refused_and_leaves_nothing(
    case: BadPush, server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    register_base(server.http, tiny_base.path)
    directory = prepare(case, adapter_factory(), tmp_path)
    body = {"base": tiny_base.content_digest, "tags": ["v1"], **case.push}

    response = push(server.http, repo, directory, **body)

    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert error["code"] == case.code
    assert case.says.lower() in error["message"].lower()
    assert server.http.get(f"/api/v1/repos/{repo}").status_code == 404
    good = {f["digest"] for f in file_entries(adapter_factory())}
    damaged = [
        f["digest"].removeprefix("sha256:") for f in file_entries(directory) if f["digest"] not in good
    ]
    assert referenced(server, damaged) == 0


@pytest.mark.parametrize(
    "bad_repo", ["Acme/bot", "acme/a..b", "acme/a/b", "acme/" + "x" * 97, "acme/.hidden", "acme/bо t"]
)
def test_bad_repository_name(server: LiveServer, tiny_base: TinyBase, adapter_factory, bad_repo: str) -> None:
    register_base(server.http, tiny_base.path)
    response = push(server.http, bad_repo, adapter_factory(), base=tiny_base.content_digest)
    assert response.status_code in (400, 404), response.text
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "invalid_input"
        assert "name" in response.json()["error"]["message"]
    for listed in every_page(server.http, "/api/v1/repos", limit=500):
        RepoName.parse(listed["id"])  # nothing with an invalid name was ever created


@pytest.mark.parametrize("bad_tag", ["..", "V1", "a/b", "x" * 97, "-lead"])
def test_bad_tag_name(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, bad_tag: str
) -> None:
    register_base(server.http, tiny_base.path)
    response = push(server.http, repo, adapter_factory(), base=tiny_base.content_digest, tags=[bad_tag])
    assert response.status_code == 400, response.text
    assert "tag name" in response.json()["error"]["message"]
    assert server.http.get(f"/api/v1/repos/{repo}").status_code == 404


def test_upload_with_wrong_digest_is_refused(server: LiveServer) -> None:
    claimed = hashlib.sha256(b"the real content").hexdigest()
    response = server.http.put(f"/api/v1/blobs/sha256:{claimed}", content=b"tampered content")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "digest_mismatch"
    assert server.http.head(f"/api/v1/blobs/sha256:{claimed}").status_code == 404
    missing = server.http.post(
        "/api/v1/blobs/batch", json={"blobs": [{"digest": f"sha256:{claimed}", "size": 16}]}
    )
    assert [m["digest"] for m in missing.json()["missing"]] == [f"sha256:{claimed}"]


def test_oversize_upload_is_refused(server: LiveServer) -> None:
    data = b"x" * (server.settings.max_blob_size + 1)
    digest = hashlib.sha256(data).hexdigest()
    response = server.http.put(f"/api/v1/blobs/sha256:{digest}", content=data)
    assert response.status_code == 413
    assert "LOREG_MAX_BLOB_SIZE" in response.json()["error"]["message"]
    assert server.http.head(f"/api/v1/blobs/sha256:{digest}").status_code == 404


def test_commit_referencing_a_blob_never_uploaded(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    register_base(server.http, tiny_base.path)
    directory = adapter_factory()
    files = file_entries(directory)
    files.append(
        {"path": "README.extra", "digest": "sha256:" + hashlib.sha256(b"never sent").hexdigest(), "size": 10}
    )
    server.http.post("/api/v1/blobs/batch", json={"blobs": []})
    for entry in files[:-1]:
        server.http.put(f"/api/v1/blobs/{entry['digest']}", content=(directory / entry["path"]).read_bytes())
    response = server.http.post(
        f"/api/v1/repos/{repo}/versions", json={"files": files, "base": tiny_base.content_digest}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "blob_unknown"
    assert "README.extra" in response.json()["error"]["message"]
    assert server.http.get(f"/api/v1/repos/{repo}").status_code == 404


def test_commit_with_path_traversal(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    register_base(server.http, tiny_base.path)
    files = file_entries(adapter_factory())
    files[0]["path"] = "../escape"
    response = server.http.post(
        f"/api/v1/repos/{repo}/versions", json={"files": files, "base": tiny_base.content_digest}
    )
    assert response.status_code == 400
    assert "invalid file path" in response.json()["error"]["message"]
