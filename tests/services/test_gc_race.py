"""gc racing pushes of the same content: no committed version ever loses a blob, on every store and database.

Each round, two pushers commit the same adapter to repositories of their own (a batch check, the
uploads it asks for, the commit: the API's three steps) while gc runs back to back with grace 0 and
its clock a minute ahead, so every unreferenced blob, however fresh, is fair game: only gc's protocol
protects a push. A push that gc beat is refused and retried, as a client retries. Between rounds the
repositories are deleted, which makes the blobs old orphans again for the next round to race over.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import SQLAlchemyError

from registry.adapters.base_manifest import read_base_manifest
from registry.config import Settings
from registry.db import migrate
from registry.db.session import Database
from registry.errors import RegistryError
from registry.principal import REGISTRY
from registry.refs import RepoName
from registry.services import repos, versions
from registry.services.bases import register_base
from registry.services.blobs import missing_blobs, upload_blob
from registry.services.maintenance import fsck, gc
from registry.storage import BlobStore, open_blob_store
from tests.conftest import TinyBase
from tests.helpers import file_entries
from tests.service_checks import fresh_postgres_database
from tests.services.conftest import commit

MAX_SIZE = 8 * 1024 * 1024
ROUNDS = 4
PUSHERS = 2
GC_RUNS = 6  # per round, while the pushes run; then the pushes that gc beat get through
ATTEMPTS = 100  # per push
DELETE_LATENCY = 0.05  # s: an object store's round trip, which widens every window gc leaves open


class SlowDeletes:
    """The real store, with each ``delete`` taking as long as a remote store's would."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.deleting = threading.Event()  # gc has begun deleting bytes

    def delete(self, digest: str) -> None:
        self.deleting.set()
        time.sleep(DELETE_LATENCY)
        self._store.delete(digest)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class Race:
    db: Database
    store: BlobStore
    directory: Path
    base: str
    committed: list[tuple[str, str]] = field(default_factory=list)  # (repo, digest) of every commit
    refused: int = 0
    bytes_deleted: int = 0  # blobs whose bytes gc deleted while pushes ran
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, repo: str) -> None:
        """Push until it commits (or ATTEMPTS run out), as a client that retries refused pushes."""
        entries = file_entries(self.directory)
        for _ in range(ATTEMPTS):
            try:
                digest = self._push_once(repo, entries)
            except (RegistryError, SQLAlchemyError, OSError):  # gc won this time: blob_unknown and kin
                with self.lock:
                    self.refused += 1
                continue
            with self.lock:
                self.committed.append((repo, digest))
            return

    def _push_once(self, repo: str, entries: list[dict]) -> str:
        wanted = {e["digest"][7:]: e["size"] for e in entries}
        with self.db.transaction() as session:
            missing = set(missing_blobs(session, self.store, wanted, REGISTRY))
        for entry in entries:
            if entry["digest"][7:] in missing:
                data = (self.directory / entry["path"]).read_bytes()
                with self.db.transaction() as session:
                    upload_blob(session, self.store, entry["digest"][7:], [data], max_size=MAX_SIZE)
        return commit(self.db, self.store, repo, entries, self.base)[1]


def collect(race: Race) -> None:
    """Run gc GC_RUNS times back to back, every unreferenced blob older than its clock (all of them)."""
    for _ in range(GC_RUNS):
        ahead = datetime.now(UTC) + timedelta(minutes=1)
        report = gc(race.db, race.store, grace=timedelta(0), dry_run=False, now=ahead)
        with race.lock:
            race.bytes_deleted += sum(blob.stored for blob in report.removed)
        time.sleep(random.uniform(0, 0.01))


def assert_pulls(race: Race, repo: str, digest: str) -> None:
    """Every file of the version reads back from the store with its digest and size."""
    with race.db.transaction(write=False) as session:
        version = versions.get_by_digest(session, repo, f"sha256:{digest}")
        files = [(f.path, f.blob_digest, f.size) for f in version.files]
        listed = sorted((f["path"], f["digest"], f["size"]) for f in version.file_list)
    assert listed == files and files
    for path, blob, size in files:
        data = b"".join(race.store.read_range(blob))  # BlobNotFound here: gc deleted a committed blob
        assert (hashlib.sha256(data).hexdigest(), len(data)) == (blob, size), f"{repo}@{digest}: {path}"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'lorareg.db'}"
        else:
            url = stack.enter_context(fresh_postgres_database(f"lorareg_gc_race_{uuid.uuid4().hex[:12]}"))
        migrate.upgrade(url)
        db = Database.connect(url)
        stack.callback(db.dispose)
        yield db


@pytest.fixture(params=["filesystem", "moto", "rclone"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "filesystem":
        return open_blob_store(f"file://{tmp_path / 'blobs'}")
    server = request.getfixturevalue(f"{request.param}_s3")
    return open_blob_store(server.blob_url("race"), Settings(**server.settings_overrides()))


def test_gc_racing_pushes_never_deletes_a_committed_blob(
    database: Database, store: BlobStore, tiny_base: TinyBase, adapter_factory
) -> None:
    with database.transaction() as session:
        register_base(session, REGISTRY, name="tiny-llama", manifest=read_base_manifest(tiny_base.path))
    slow = SlowDeletes(store)
    race = Race(database, slow, adapter_factory(seed=3), tiny_base.content_digest)

    for number in range(ROUNDS):
        collector = threading.Thread(target=collect, args=(race,))
        pushers = [threading.Thread(target=race.push, args=(f"race/r{number}-{j}",)) for j in range(PUSHERS)]
        slow.deleting.clear()
        collector.start()
        if number > 0:  # the last round's blobs are orphans now: push them while gc is deleting them
            assert slow.deleting.wait(30), "gc never began deleting the orphans"
        for thread in pushers:
            thread.start()
        for thread in [collector, *pushers]:
            thread.join()

        committed = [(repo, digest) for repo, digest in race.committed if repo.startswith(f"race/r{number}-")]
        assert committed, f"round {number}: no push committed in {ATTEMPTS} attempts each"
        for repo, digest in committed:
            assert_pulls(race, repo, digest)
        with database.transaction() as session:  # the blobs become orphans for the next round
            for repo, _ in committed:
                repos.delete_repository(session, RepoName.parse(repo), REGISTRY)

    assert race.bytes_deleted > 0  # gc deleted bytes while pushes of them ran: the race was real
    with database.transaction(write=False) as session:
        report = fsck(session, store)
    assert report.missing == [] and report.corrupt == [] and report.drift == []
