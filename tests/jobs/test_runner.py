"""The runner's data path on the embedded default (SQLite): outputs are uploaded with no write transaction
open, then recorded in one; a crash in between leaves only unreferenced blobs, which gc removes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from registry.config import Settings
from registry.db import migrate
from registry.db.session import Database
from registry.jobs import runner
from registry.principal import REGISTRY
from registry.runtime import Runtime
from registry.services import jobs
from registry.services.maintenance import fsck, gc
from registry.storage import BlobStore, open_blob_store
from registry.storage.filesystem import FilesystemBlobStore
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry

LOCK_TIMEOUT = 2.0  # s: how long the probe waits for SQLite's write lock


class ProbingStore:
    """The real store; halfway through each upload, another connection takes SQLite's write lock and
    commits, which it can only do if no write transaction is open meanwhile."""

    def __init__(self, store: BlobStore, database: Path) -> None:
        self._store = store
        self._database = database
        self.probes: list[str | None] = []  # per upload: None, or the error the probe met

    def ingest(self, digest: str, chunks: Iterable[bytes], *, max_size: int) -> int:
        return self._store.ingest(digest, self._probing(chunks), max_size=max_size)

    def _probing(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for i, chunk in enumerate(chunks):
            if i == 0:
                self.probes.append(self._probe())
            yield chunk

    def _probe(self) -> str | None:
        connection = sqlite3.connect(self._database, timeout=LOCK_TIMEOUT, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("COMMIT")
            return None
        except sqlite3.OperationalError as err:
            return str(err)
        finally:
            connection.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass
class Setup:
    runtime: Runtime
    store: ProbingStore
    local: LocalRegistry
    job_id: str


@pytest.fixture
def merge_job(tmp_path: Path, tiny_base: TinyBase, adapter_factory) -> Iterator[Setup]:
    """Two adapters in a fresh SQLite registry, and a queued merge job of them into acme/blend."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'lorareg.db'}"
    migrate.upgrade(url)
    db = Database.connect(url)
    files = open_blob_store(f"file://{home}")
    assert isinstance(files, FilesystemBlobStore)
    local = LocalRegistry(home=home, url=url, db=db, store=files)
    local.register(tiny_base)
    first = local.push("acme/a", adapter_factory(seed=61, r=4), tiny_base)
    second = local.push("acme/b", adapter_factory(seed=62, r=4), tiny_base)
    store = ProbingStore(files, home / "lorareg.db")
    settings = Settings(home=home, database_url=url, job_heartbeat=60)
    with db.transaction() as session:
        job, _ = jobs.submit_job(
            session,
            kind="merge",
            inputs=[f"acme/a@sha256:{first.digest}", f"acme/b@sha256:{second.digest}"],
            params={"method": "cat", "weights": [0.5, 0.5]},
            principal=REGISTRY,
            into="acme/blend",
        )
        job_id = job.id
    try:
        yield Setup(Runtime(settings=settings, db=db, store=store), store, local, job_id)
    finally:
        db.dispose()


def output_rows(local: LocalRegistry) -> tuple[int, list[str]]:
    with local.db.engine.connect() as connection:
        versions = connection.execute(
            text(
                "SELECT count(*) FROM versions v JOIN repositories r ON r.id = v.repository_id "
                "WHERE r.name = 'blend'"
            )
        ).scalar_one()
        blobs = connection.execute(text("SELECT digest FROM blobs")).scalars().all()
    return versions, list(blobs)


def test_outputs_are_uploaded_with_no_write_transaction_open(merge_job: Setup) -> None:
    assert runner.run_job(merge_job.runtime, merge_job.job_id) == "succeeded"

    assert len(merge_job.store.probes) >= 2  # the adapter's config and weights, at least
    assert merge_job.store.probes == [None] * len(merge_job.store.probes)  # each upload: lock free
    with merge_job.local.db.transaction(write=False) as session:
        job = jobs.get_job(session, merge_job.job_id)
        assert job.result is not None
        version = job.result["version"]
        assert (version["repo"], version["number"], version["created"]) == ("acme/blend", 1, True)
        report = fsck(session, merge_job.local.store)
    assert report.ok, report.to_json()  # every output recorded, referenced, and stored


def test_a_crash_before_the_commit_leaves_only_blobs_that_gc_removes(
    merge_job: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {info.digest for info in merge_job.local.store.iter_blobs()}
    _, rows_before = output_rows(merge_job.local)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the worker died before committing")

    monkeypatch.setattr(runner, "push_version", crash)
    assert runner.run_job(merge_job.runtime, merge_job.job_id) == "failed"

    uploaded = {info.digest for info in merge_job.local.store.iter_blobs()} - before
    assert len(uploaded) >= 2
    versions, rows = output_rows(merge_job.local)
    assert versions == 0 and sorted(rows) == sorted(rows_before)  # the transaction left nothing behind
    report = gc(
        merge_job.local.db,
        merge_job.local.store,
        grace=timedelta(0),
        dry_run=False,
        now=datetime.now(UTC) + timedelta(days=1),
    )
    assert {blob.digest for blob in report.removed} == uploaded
    assert {info.digest for info in merge_job.local.store.iter_blobs()} == before
