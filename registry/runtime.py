"""What a process that serves or works holds for its lifetime: settings, database, blob store."""

from __future__ import annotations

from dataclasses import dataclass

from registry.config import Settings
from registry.db.session import Database
from registry.storage import BlobStore, open_blob_store


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    store: BlobStore

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            db=Database.connect(settings.resolved_database_url),
            store=open_blob_store(settings.resolved_blob_url, settings),
        )

    def close(self) -> None:
        self.db.dispose()
