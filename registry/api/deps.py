"""Request dependencies: the per-request session (committed by the dependency), the blob store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from registry.config import Settings
from registry.db.session import Database
from registry.storage import BlobStore


@dataclass(frozen=True)
class Registry:
    """What the app holds for its lifetime."""

    settings: Settings
    db: Database
    store: BlobStore


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_read_session(registry: RegistryDep) -> Iterator[Session]:
    with registry.db.transaction(write=False) as session:
        yield session


def get_write_session(registry: RegistryDep) -> Iterator[Session]:
    """One write transaction per request: committed when the handler returns, rolled back on error."""
    with registry.db.transaction(write=True) as session:
        yield session


ReadSession = Annotated[Session, Depends(get_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(get_write_session, scope="function")]


def get_store(registry: RegistryDep) -> BlobStore:
    return registry.store


StoreDep = Annotated[BlobStore, Depends(get_store)]
