"""Concurrency: numbers stay dense and distinct, compare-and-set has exactly one winner, and more readers
than database connections and worker threads are all answered."""

from __future__ import annotations

import asyncio
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from registry.db.session import MAX_CONNECTIONS
from tests.conftest import LiveServer, TinyBase
from tests.helpers import file_entries, push, register_base, upload_directory
from tests.server_process import drive, running_server

WRITERS = 16
READERS = 200  # connections at once: far more than the pool's connections and the server's 40 threads
ROUNDS = 200  # requests per path


def variants(adapter: Path, workdir: Path, count: int) -> list[Path]:
    """``count`` adapters with different content (a different README each), all valid."""
    made = []
    for i in range(count):
        target = workdir / f"variant-{i}"
        shutil.copytree(adapter, target)
        (target / "README.md").write_text(f"variant {i}\n")
        made.append(target)
    return made


def all_at_once(calls: list) -> list[httpx.Response]:
    """Run the calls in threads released together by a barrier."""
    barrier = threading.Barrier(len(calls))

    def call(fn):
        barrier.wait()
        return fn()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(call, calls))


def test_concurrent_pushes_get_distinct_consecutive_numbers(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    register_base(server.http, tiny_base.path)
    directories = variants(adapter_factory(seed=31), tmp_path, WRITERS)
    bodies = []
    for directory in directories:
        upload_directory(server.http, directory)
        bodies.append({"files": file_entries(directory), "base": tiny_base.content_digest})

    def commit(body):
        return lambda: httpx.post(f"{server.url}/api/v1/repos/{repo}/versions", json=body, timeout=60)

    responses = all_at_once([commit(body) for body in bodies])

    assert [r.status_code for r in responses] == [201] * WRITERS, [r.text for r in responses if r.is_error]
    numbers = sorted(r.json()["number"] for r in responses)
    assert numbers == list(range(1, WRITERS + 1))
    log = server.http.get(f"/api/v1/repos/{repo}/versions", params={"limit": 100}).json()
    by_number = {v["number"]: v for v in log}
    for number in range(2, WRITERS + 1):  # each push saw the previous one as latest: one chain
        assert by_number[number]["parents"] == [f"{repo}@{by_number[number - 1]['digest']}"]
    assert server.http.get(f"/api/v1/repos/{repo}/resolve/latest").json()["number"] == WRITERS


def test_concurrent_compare_and_set_has_one_winner(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    register_base(server.http, tiny_base.path)
    for directory in variants(adapter_factory(seed=32), tmp_path, 3):
        upload_directory(server.http, directory)
        response = server.http.post(
            f"/api/v1/repos/{repo}/versions",
            json={"files": file_entries(directory), "base": tiny_base.content_digest},
        )
        assert response.status_code == 201
    server.http.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": "#1"}).raise_for_status()

    def move(target: int):
        return lambda: httpx.put(
            f"{server.url}/api/v1/repos/{repo}/tags/prod",
            json={"target": f"#{target}", "expected": "#1"},
            timeout=60,
        )

    responses = all_at_once([move(2 + i % 2) for i in range(WRITERS)])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (WRITERS - 1), [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()
    history = server.http.get(f"/api/v1/repos/{repo}/tags/prod/history").json()
    assert [(e["old_number"], e["new_number"]) for e in history] == [(1, winner["number"]), (None, 1)]


def test_more_readers_than_connections_are_all_answered(
    tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    """A request holds its connection from its first query until its transaction ends, after the handler
    returns. With more requests in flight than connections and worker threads, the worker threads once all
    waited for a connection while the requests holding the connections waited for a thread: nothing moved
    until the pool timed out (500s after 30 s). ``lorareg serve`` in its own process, so that the load is
    real; the reads hit a session-per-request route, resolve and blob bytes."""
    assert READERS > MAX_CONNECTIONS
    with running_server(tmp_path / "home", {}) as url, httpx.Client(base_url=url, timeout=60) as http:
        register_base(http, tiny_base.path)
        assert push(http, repo, adapter_factory(seed=33)).status_code == 201
        blob = http.get(f"/api/v1/repos/{repo}/resolve/latest").json()["files"][0]["url"]
        paths = [f"/api/v1/repos/{repo}/versions/latest", f"/api/v1/repos/{repo}/resolve/latest", blob]

        load = asyncio.run(drive(url, paths * ROUNDS, READERS, time_limit=120))

    assert (load.requests, load.errors) == (len(paths) * ROUNDS, 0)
