"""Long-polling a tag: ``GET /repos/{ns}/{name}/tags/{tag}/watch``."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import LiveServer, TinyBase
from tests.helpers import push, register_base


@pytest.fixture
def pushed(server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> list[dict]:
    """Two versions of ``repo``; tag ``prod`` on #1."""
    register_base(server.http, tiny_base.path)
    first = push(server.http, repo, adapter_factory(seed=1), base=tiny_base.content_digest, tags=["prod"])
    second = push(server.http, repo, adapter_factory(seed=2), base=tiny_base.content_digest)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    return [first.json(), second.json()]


def watch(server: LiveServer, repo: str, tag: str, **params: object):
    return server.http.get(f"/api/v1/repos/{repo}/tags/{tag}/watch", params=params, timeout=70)


def test_answers_at_once_when_since_differs(server: LiveServer, pushed: list[dict], repo: str) -> None:
    started = time.monotonic()
    response = watch(server, repo, "prod", since=pushed[1]["digest"], timeout=10)
    assert time.monotonic() - started < 5
    assert response.status_code == 200, response.text
    assert response.json()["digest"] == pushed[0]["digest"] and response.json()["number"] == 1
    assert response.json()["name"] == "prod" and response.json()["updated_at"]
    unconditional = watch(server, repo, "prod", timeout=10)
    assert unconditional.status_code == 200 and unconditional.json()["number"] == 1


def test_answers_when_the_tag_moves_during_the_poll(
    server: LiveServer, pushed: list[dict], repo: str
) -> None:
    def move() -> None:
        time.sleep(0.5)
        moved = server.http.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": pushed[1]["digest"]})
        assert moved.status_code == 200, moved.text

    mover = threading.Thread(target=move)
    started = time.monotonic()
    mover.start()
    response = watch(server, repo, "prod", since=pushed[0]["digest"], timeout=20)
    elapsed = time.monotonic() - started
    mover.join()
    assert response.status_code == 200, response.text
    assert response.json()["digest"] == pushed[1]["digest"] and response.json()["number"] == 2
    assert 0.4 < elapsed < 10


def test_not_modified_at_timeout(server: LiveServer, pushed: list[dict], repo: str) -> None:
    started = time.monotonic()
    response = watch(server, repo, "prod", since=pushed[0]["digest"], timeout=0.6)
    elapsed = time.monotonic() - started
    assert response.status_code == 304
    assert 0.5 < elapsed < 5
    bare = watch(server, repo, "prod", since=pushed[0]["digest"].removeprefix("sha256:"), timeout=0.3)
    assert bare.status_code == 304


def test_deleted_tag_is_not_found(server: LiveServer, pushed: list[dict], repo: str) -> None:
    deleted = server.http.delete(f"/api/v1/repos/{repo}/tags/prod")
    assert deleted.status_code == 204
    response = watch(server, repo, "prod", since=pushed[0]["digest"], timeout=5)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_deleted_during_the_poll_is_not_found(server: LiveServer, pushed: list[dict], repo: str) -> None:
    timer = threading.Timer(0.5, lambda: server.http.delete(f"/api/v1/repos/{repo}/tags/prod"))
    timer.start()
    response = watch(server, repo, "prod", since=pushed[0]["digest"], timeout=20)
    timer.join()
    assert response.status_code == 404


def test_timeout_is_capped(server: LiveServer, pushed: list[dict], repo: str) -> None:
    assert watch(server, repo, "prod", timeout=61).status_code == 422
