"""Shared fixtures: database backends (SQLite, PostgreSQL), a live server, tiny models and adapters.

Service-backed tests skip with a reason on a machine without the service, but under ``CI=true``
a missing service is a failure, never a skip.
"""

from __future__ import annotations

import copy
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["LOREG_CACHE"] = tempfile.mkdtemp(prefix="lorareg-test-cache-")  # never the user's cache
# Every test server may deliver webhooks to the loopback receivers the tests run: servers on one
# database all dispatch its deliveries, and one refusing loopback targets would fail the others'.
os.environ["LOREG_WEBHOOK_ALLOW_PRIVATE"] = "true"

from make_tiny_adapter import make_adapter, make_base

from registry.adapters.base_manifest import read_base_manifest
from registry.api.app import create_app
from registry.config import Settings
from registry.db import migrate
from tests.s3_servers import moto_s3, rclone_s3
from tests.service_checks import POSTGRES_URL, fresh_postgres_database, postgres_reachable, require

__all__ = ["POSTGRES_URL", "moto_s3", "postgres_reachable", "rclone_s3", "require"]


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database shared by the session's servers: a SQLite file, or a PostgreSQL
    database of this test process."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'lorareg.db'}"
        migrate.upgrade(url)
        yield url
        return
    with fresh_postgres_database("lorareg_test") as url:
        migrate.upgrade(url)
        yield url


@dataclass
class LiveServer:
    url: str
    settings: Settings
    http: httpx.Client


def start_server(settings: Settings) -> Iterator[str]:
    """Run the real app under uvicorn on a free loopback port in a thread; yield its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live lorareg server on the parametrized database and a fresh blob directory."""
    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home, database_url=database_url, max_blob_size=8 * 1024 * 1024)
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url=url, settings=settings, http=http)


@pytest.fixture
def repo() -> str:
    """A repository name no other test uses."""
    return f"t{uuid.uuid4().hex[:8]}/adapter"


# Tiny models and adapters -----------------------------------------------------------------------


@dataclass
class TinyBase:
    path: Path
    model: object
    content_digest: str


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> TinyBase:
    path = tmp_path_factory.mktemp("base")
    model = make_base(path, seed=0)
    return TinyBase(path=path, model=model, content_digest=read_base_manifest(path).content_digest)


@pytest.fixture(scope="session")
def other_base(tmp_path_factory: pytest.TempPathFactory) -> TinyBase:
    """A second, different base (wider hidden size) for mismatch tests."""
    path = tmp_path_factory.mktemp("other-base")
    model = make_base(path, seed=7, hidden=96)
    return TinyBase(path=path, model=model, content_digest=read_base_manifest(path).content_digest)


@pytest.fixture(scope="session")
def adapter_factory(tiny_base: TinyBase, tmp_path_factory: pytest.TempPathFactory):
    """``adapter_factory(seed=…, r=…)`` → a saved PEFT adapter directory for ``tiny_base`` (cached)."""
    made: dict[tuple, Path] = {}

    def build(seed: int = 1, r: int = 8, **options: object) -> Path:
        key = (seed, r, repr(sorted(options.items())))
        if key not in made:
            path = tmp_path_factory.mktemp(f"adapter-{seed}-{r}")
            make_adapter(copy.deepcopy(tiny_base.model), path, seed=seed, r=r, **options)
            made[key] = path
        return made[key]

    return build
