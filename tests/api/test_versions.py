"""Push, resolve, log, tags and yank over the real HTTP API."""

from __future__ import annotations

import pytest

from tests.conftest import LiveServer, TinyBase
from tests.helpers import every_page, file_entries, push, register_base


@pytest.fixture
def pushed(server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> list[dict]:
    """Two versions of ``repo``: #1 tagged v1, #2 tagged v2."""
    register_base(server.http, tiny_base.path)
    first = push(
        server.http,
        repo,
        adapter_factory(seed=1),
        base=tiny_base.content_digest,
        tags=["v1"],
        message="first",
        author="ada",
    )
    second = push(
        server.http,
        repo,
        adapter_factory(seed=2),
        base=tiny_base.content_digest,
        tags=["v2"],
        message="second",
        author="bob",
    )
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    return [first.json(), second.json()]


def test_push_numbers_parents_and_latest(server: LiveServer, pushed: list[dict], repo: str) -> None:
    first, second = pushed
    assert (first["number"], second["number"]) == (1, 2)
    assert first["parents"] == []
    assert second["parents"] == [f"{repo}@{first['digest']}"]
    assert first["created"] and second["created"]
    assert set(second["tags"]) == {"latest", "v2"}
    assert second["config"]["r"] == 8 and second["config"]["modules"] == 14
    tags = {t["name"]: t["number"] for t in server.http.get(f"/api/v1/repos/{repo}/tags").json()}
    assert tags == {"latest": 2, "v1": 1, "v2": 2}


def test_same_content_again_returns_the_existing_version(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, pushed: list[dict], repo: str
) -> None:
    again = push(server.http, repo, adapter_factory(seed=2), base=tiny_base.content_digest, tags=["v2"])
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["digest"] == pushed[1]["digest"] and again.json()["number"] == 2
    assert len(server.http.get(f"/api/v1/repos/{repo}/versions").json()) == 2
    missing = server.http.post(
        "/api/v1/blobs/batch",
        json={
            "blobs": [
                {"digest": f["digest"], "size": f["size"]} for f in file_entries(adapter_factory(seed=2))
            ]
        },
    )
    assert missing.json()["missing"] == []


def test_pushing_old_content_moves_latest_back(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, pushed: list[dict], repo: str
) -> None:
    again = push(server.http, repo, adapter_factory(seed=1), base=tiny_base.content_digest)
    assert again.status_code == 200 and again.json()["number"] == 1
    assert again.json()["tags_moved"] == ["latest"]
    history = server.http.get(f"/api/v1/repos/{repo}/tags/latest/history").json()
    assert [(e["old_number"], e["new_number"]) for e in history] == [(2, 1), (1, 2), (None, 1)]


def test_refs_by_tag_digest_prefix_and_number(server: LiveServer, pushed: list[dict], repo: str) -> None:
    first = pushed[0]
    digest = first["digest"].removeprefix("sha256:")
    for ref in ("v1", f"sha256:{digest}", f"sha256:{digest[:12]}", "%231"):
        response = server.http.get(f"/api/v1/repos/{repo}/resolve/{ref}")
        assert response.status_code == 200, (ref, response.text)
        assert response.json()["number"] == 1
        assert response.headers["etag"] == f'"{digest}"'
    assert server.http.get(f"/api/v1/repos/{repo}/resolve/sha256:{digest[:11]}").status_code == 400
    assert server.http.get(f"/api/v1/repos/{repo}/resolve/nope").json()["error"]["code"] == "not_found"
    assert server.http.get(f"/api/v1/repos/{repo}/resolve/%2399").status_code == 404


def test_resolve_checks_the_callers_base(
    server: LiveServer, tiny_base: TinyBase, other_base: TinyBase, pushed: list[dict], repo: str
) -> None:
    register_base(server.http, other_base.path, name="other-llama")
    ok = server.http.get(f"/api/v1/repos/{repo}/resolve/latest", params={"base": tiny_base.content_digest})
    assert ok.status_code == 200
    refused = server.http.get(
        f"/api/v1/repos/{repo}/resolve/latest", params={"base": other_base.content_digest}
    )
    assert refused.status_code == 409
    message = refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "base_mismatch"
    assert tiny_base.content_digest in message and other_base.content_digest in message


def test_log_is_newest_first_with_authors(server: LiveServer, pushed: list[dict], repo: str) -> None:
    log = server.http.get(f"/api/v1/repos/{repo}/versions").json()
    assert [(v["number"], v["author"], v["message"]) for v in log] == [
        (2, "bob", "second"),
        (1, "ada", "first"),
    ]
    assert (
        server.http.get(f"/api/v1/repos/{repo}/versions", params={"limit": 1, "offset": 1}).json()[0][
            "number"
        ]
        == 1
    )


def test_tag_compare_and_set(server: LiveServer, pushed: list[dict], repo: str) -> None:
    moved = server.http.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": "v1", "expect_absent": True})
    assert moved.status_code == 200 and moved.json()["number"] == 1
    stale = server.http.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": "v2", "expected": "v2"})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "stale_expectation"
    assert "#1" in stale.json()["error"]["message"]
    ok = server.http.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": "v2", "expected": "v1"})
    assert ok.status_code == 200 and ok.json()["number"] == 2
    history = server.http.get(f"/api/v1/repos/{repo}/tags/prod/history").json()
    assert [(e["old_number"], e["new_number"]) for e in history] == [(1, 2), (None, 1)]
    assert server.http.delete(f"/api/v1/repos/{repo}/tags/prod").status_code == 204
    assert server.http.get(f"/api/v1/repos/{repo}/resolve/prod").status_code == 404
    assert server.http.get(f"/api/v1/repos/{repo}/tags/prod/history").json()[0]["new"] is None


def test_yank_hides_from_tags_but_not_digest(server: LiveServer, pushed: list[dict], repo: str) -> None:
    second = pushed[1]
    yanked = server.http.post(f"/api/v1/repos/{repo}/versions/%232/yank", json={"reason": "bad eval"})
    assert yanked.status_code == 200 and yanked.json()["yanked"] is True
    assert server.http.get(f"/api/v1/repos/{repo}/resolve/latest").json()["number"] == 1
    gone = server.http.get(f"/api/v1/repos/{repo}/resolve/v2")
    assert gone.status_code == 410 and "bad eval" in gone.json()["error"]["message"]
    by_digest = server.http.get(f"/api/v1/repos/{repo}/resolve/{second['digest']}")
    assert by_digest.status_code == 200 and by_digest.json()["yanked"] is True


def test_blob_download_range_and_cache_headers(server: LiveServer, pushed: list[dict]) -> None:
    entry = next(f for f in pushed[0]["files"] if f["path"] == "adapter_model.safetensors")
    full = server.http.get(entry["url"])
    assert full.status_code == 200 and len(full.content) == entry["size"]
    assert full.headers["etag"] == f'"{entry["digest"].removeprefix("sha256:")}"'
    assert "immutable" in full.headers["cache-control"]
    part = server.http.get(entry["url"], headers={"Range": "bytes=8-15"})
    assert part.status_code == 206 and part.content == full.content[8:16]
    assert part.headers["content-range"] == f"bytes 8-15/{entry['size']}"
    tail = server.http.get(entry["url"], headers={"Range": "bytes=-10"})
    assert tail.content == full.content[-10:]
    assert server.http.get(entry["url"], headers={"Range": f"bytes={entry['size']}-"}).status_code == 416
    assert server.http.get(entry["url"], headers={"If-None-Match": full.headers["etag"]}).status_code == 304
    head = server.http.head(entry["url"])
    assert (
        head.status_code == 200
        and head.headers["content-length"] == str(entry["size"])
        and head.content == b""
    )


def test_bases_list_their_adapters(
    server: LiveServer, tiny_base: TinyBase, pushed: list[dict], repo: str
) -> None:
    listed = every_page(server.http, f"/api/v1/bases/{tiny_base.content_digest}/adapters")
    mine = [a for a in listed if a["repo"] == repo]
    assert [a["number"] for a in mine] == [2, 1]
    assert server.http.get("/api/v1/repos", params={"base": tiny_base.content_digest}).json()
    base = server.http.get(f"/api/v1/bases/{tiny_base.content_digest}").json()
    assert base["weights"] > 0 and base["name"] == "tiny-llama"


def test_base_answers_to_its_hf_revision(server: LiveServer, tiny_base: TinyBase) -> None:
    revision = "a" * 40
    registered = register_base(server.http, tiny_base.path, revision=revision)
    assert revision in registered["hf_revisions"]
    assert server.http.get(f"/api/v1/bases/{revision}").json()["content_digest"] == tiny_base.content_digest
    unknown = server.http.get(f"/api/v1/bases/{'b' * 40}")
    assert unknown.status_code == 404 and "lorareg base register" in unknown.json()["error"]["message"]


def test_delete_repository(server: LiveServer, pushed: list[dict], repo: str) -> None:
    assert server.http.delete(f"/api/v1/repos/{repo}").status_code == 204
    assert server.http.get(f"/api/v1/repos/{repo}").status_code == 404


def test_openapi_documents_the_routes(server: LiveServer) -> None:
    paths = server.http.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/repos/{namespace}/{name}/resolve/{ref}",
        "/api/v1/blobs/batch",
        "/api/v1/bases",
        "/api/v1/repos/{namespace}/{name}/tags/{tag}/history",
    ):
        assert path in paths
    # the resolve route reads its own parameters (see routers/resolve.py), and still documents them
    resolve = paths["/api/v1/repos/{namespace}/{name}/resolve/{ref}"]["get"]
    documented = {(p["name"], p["in"], p["required"]) for p in resolve["parameters"]}
    assert documented == {
        ("namespace", "path", True),
        ("name", "path", True),
        ("ref", "path", True),
        ("base", "query", False),
    }
    assert (
        "ResolvedVersionOut" in resolve["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    )
    assert server.http.get("/docs").status_code == 200


def test_resolve_revalidates_with_if_none_match(server: LiveServer, pushed: list[dict], repo: str) -> None:
    first = server.http.get(f"/api/v1/repos/{repo}/resolve/latest")
    assert first.headers["cache-control"] == "no-cache"
    again = server.http.get(
        f"/api/v1/repos/{repo}/resolve/latest", headers={"If-None-Match": first.headers["etag"]}
    )
    assert (
        again.status_code == 304 and again.content == b"" and again.headers["etag"] == first.headers["etag"]
    )
    server.http.put(f"/api/v1/repos/{repo}/tags/latest", json={"target": "#1"}).raise_for_status()
    moved = server.http.get(
        f"/api/v1/repos/{repo}/resolve/latest", headers={"If-None-Match": first.headers["etag"]}
    )
    assert moved.status_code == 200 and moved.json()["number"] == 1


def test_batch_resolve_answers_each_ref(
    server: LiveServer, tiny_base: TinyBase, other_base: TinyBase, pushed: list[dict], repo: str
) -> None:
    refs = [
        f"{repo}:v1",
        f"{repo}#2",
        f"{repo}@{pushed[0]['digest']}",
        f"{repo}:nope",
        "Bad/Name",
        f"{repo}:v2",
    ]
    answered = server.http.post("/api/v1/resolve", json={"refs": refs, "base": tiny_base.content_digest})
    assert answered.status_code == 200
    results = answered.json()["results"]
    assert [r["ref"] for r in results] == refs
    assert [r["version"]["number"] if r["version"] else None for r in results] == [1, 2, 1, None, None, 2]
    assert [r["error"]["code"] if r["error"] else None for r in results] == [
        None,
        None,
        None,
        "not_found",
        "invalid_input",
        None,
    ]
    register_base(server.http, other_base.path, name="other-llama")
    mismatch = server.http.post("/api/v1/resolve", json={"refs": refs[:1], "base": other_base.content_digest})
    assert mismatch.json()["results"][0]["error"]["code"] == "base_mismatch"
