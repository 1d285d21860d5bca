"""Slow uploads do not starve the API: a blob's body streams with no database session held, so more
uploads in flight than the server has session slots leave every other route answering."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from registry.api.deps import RESERVED_CONNECTIONS
from registry.config import Settings
from registry.db.session import MAX_CONNECTIONS
from tests.conftest import start_server

UPLOADS = MAX_CONNECTIONS - RESERVED_CONNECTIONS + 4  # more than the session slots
FIRST, REST = b"a" * 1024, b"b" * 1024


def test_uploads_in_flight_hold_no_session(database_url: str, tmp_path: Path) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)
    digest = hashlib.sha256(FIRST + REST).hexdigest()

    def body() -> Iterator[bytes]:
        yield FIRST
        started.release()
        release.wait(60)
        yield REST

    settings = Settings(home=tmp_path, database_url=database_url)
    for url in start_server(settings):
        with ThreadPoolExecutor(UPLOADS) as pool, httpx.Client(base_url=url, timeout=60) as http:
            uploads = [
                pool.submit(httpx.put, f"{url}/api/v1/blobs/sha256:{digest}", content=body(), timeout=60)
                for _ in range(UPLOADS)
            ]
            for _ in range(UPLOADS):
                assert started.acquire(timeout=30), "an upload did not start"
            time.sleep(0.5)  # every upload is now inside the server, streaming
            before = time.monotonic()
            listed = http.get("/api/v1/repos", timeout=10)
            tags = http.put("/api/v1/repos/acme/nothing/tags/x", json={"target": "latest"}, timeout=10)
            waited = time.monotonic() - before
            release.set()
            answers = [u.result().status_code for u in uploads]
        assert listed.status_code == 200 and tags.status_code == 404, (listed.text, tags.text)
        assert waited < 5, f"other routes waited {waited:.1f}s behind the uploads"
        assert answers == [201] * UPLOADS
