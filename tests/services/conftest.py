"""A registry of the test's own: a migrated database and a blob directory, filled through the services."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from registry.adapters.base_manifest import read_base_manifest
from registry.db import migrate
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.refs import RepoName
from registry.services.bases import register_base
from registry.services.blobs import FileEntry, upload_blob
from registry.services.push import PushRequest, push_version
from registry.storage import BlobStore, open_blob_store
from registry.storage.filesystem import FilesystemBlobStore
from tests.conftest import TinyBase
from tests.helpers import file_entries
from tests.service_checks import fresh_postgres_database

MAX_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True)
class Pushed:
    repo: str
    number: int
    digest: str
    files: dict[str, str]  # path → blob digest (hex)


def commit(db: Database, store: BlobStore, repo: str, entries: list[dict], base_sha: str) -> tuple[int, str]:
    """Commit uploaded files as a version of ``repo`` (the registry's own push); its number and digest."""
    request = PushRequest(
        files=[FileEntry(e["path"], e["digest"], e["size"]) for e in entries], base_sha=base_sha
    )
    with db.transaction() as session:
        result = push_version(
            session, store, RepoName.parse(repo), request, principal=REGISTRY, max_config_size=MAX_SIZE
        )
        return result.version.number, result.version.digest


@dataclass
class LocalRegistry:
    home: Path
    url: str
    db: Database
    store: FilesystemBlobStore

    def blob_path(self, digest: str) -> Path:
        return self.store.path(digest)

    def register(self, base: TinyBase) -> None:
        with self.db.transaction() as session:
            register_base(session, REGISTRY, name="tiny-llama", manifest=read_base_manifest(base.path))

    def push(self, repo: str, directory: Path, base: TinyBase) -> Pushed:
        """Upload the directory's blobs, then commit them, as the API does (two transactions)."""
        entries = file_entries(directory)
        with self.db.transaction() as session:
            for entry in entries:
                data = (directory / entry["path"]).read_bytes()
                upload_blob(session, self.store, entry["digest"][7:], [data], max_size=MAX_SIZE)
        number, digest = commit(self.db, self.store, repo, entries, base.content_digest)
        return Pushed(repo, number, digest, {e["path"]: e["digest"][7:] for e in entries})

    def upload(self, data: bytes) -> str:
        """Upload bytes no version references (an upload whose push never committed)."""
        digest = hashlib.sha256(data).hexdigest()
        with self.db.transaction() as session:
            upload_blob(session, self.store, digest, [data], max_size=MAX_SIZE)
        return digest

    def has_row(self, digest: str) -> bool:
        with self.db.engine.connect() as connection:
            found = connection.execute(text("SELECT 1 FROM blobs WHERE digest = :d"), {"d": digest})
            return found.first() is not None


def _open(home: Path, url: str) -> Iterator[LocalRegistry]:
    migrate.upgrade(url)
    db = Database.connect(url)
    store = open_blob_store(f"file://{home}")
    assert isinstance(store, FilesystemBlobStore)
    try:
        yield LocalRegistry(home=home, url=url, db=db, store=store)
    finally:
        db.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def registry(request: pytest.FixtureRequest, tmp_path: Path, tiny_base: TinyBase) -> Iterator[LocalRegistry]:
    """An empty registry (SQLite file or a PostgreSQL database of its own) with ``tiny_base`` registered."""
    home = tmp_path / "home"
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{home / 'lorareg.db'}"
        else:  # a database of this test's own: test sessions may run side by side
            url = stack.enter_context(fresh_postgres_database(f"lorareg_maintenance_{uuid.uuid4().hex[:12]}"))
        for local in _open(home, url):
            local.register(tiny_base)
            yield local


@pytest.fixture
def sqlite_registry(tmp_path: Path, tiny_base: TinyBase) -> Iterator[LocalRegistry]:
    """The embedded default layout: ``$LOREG_HOME/lorareg.db`` and blobs under ``$LOREG_HOME``."""
    home = tmp_path / "home"
    for local in _open(home, f"sqlite:///{home / 'lorareg.db'}"):
        local.register(tiny_base)
        yield local
