"""Readiness: whether this process can serve — its database answers and is migrated to the head this
code expects, and its blob store is usable. Each check says what failed and what to do, never which
URL or credentials it used."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from alembic.runtime.migration import MigrationContext

from registry.db import migrate
from registry.db.session import Database
from registry.storage import BlobStore


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@cache
def _head(url: str) -> str | None:
    """The newest revision this code has (the URL only configures Alembic)."""
    return migrate.head_revision(url)


def readiness(db: Database, store: BlobStore) -> list[Check]:
    """The database, migrations and blob store checks, in that order."""
    return [*_database(db), _blob_store(store)]


def _database(db: Database) -> list[Check]:
    try:
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # whatever the driver raises, the answer is "not ready"
        reason = _reason(exc, db.engine.url.password)
        return [
            Check("database", False, f"cannot query the database: {reason}"),
            Check("migrations", False, "unknown: the database cannot be queried"),
        ]
    head = _head(str(db.engine.url))
    if current == head:
        migrations = Check("migrations", True, f"at head {head}")
    else:
        migrations = Check(
            "migrations",
            False,
            f"database at revision {current or '(empty)'}, this server expects {head}: run "
            "`lorareg db upgrade` with this server's LOREG_DATABASE_URL (or restart `lorareg serve`)",
        )
    return [Check("database", True, f"{db.engine.dialect.name} answers"), migrations]


def _blob_store(store: BlobStore) -> Check:
    try:
        store.check()
    except Exception as exc:  # a backend's own error (S3, file system): not ready, with why
        return Check("blob_store", False, f"the blob store cannot be used: {_reason(exc, None)}")
    return Check("blob_store", True, "reachable")


def _reason(exc: Exception, secret: str | None) -> str:
    """The first line of ``exc``'s message (a driver's carries the failed SQL and a link after it), with
    ``secret`` masked."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = f"{type(exc).__name__}: {text[0] if text else 'no message'}"
    return reason.replace(secret, "***") if secret else reason
