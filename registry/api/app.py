"""The FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from registry.api import errors
from registry.api.deps import Registry
from registry.api.routers import bases, blobs, health, repos, tags, tokens, versions
from registry.api.schemas import ErrorBody
from registry.config import Settings
from registry.db.session import Database
from registry.storage import open_blob_store

logger = logging.getLogger("lorareg")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database must already be migrated (``lorareg serve`` does it)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.connect(settings.resolved_database_url)
        app.state.registry = Registry(
            settings=settings, db=db, store=open_blob_store(settings.resolved_blob_url, settings)
        )
        yield
        db.dispose()

    app = FastAPI(
        title="lorareg",
        version="1",
        summary="A registry for LoRA adapters",
        lifespan=lifespan,
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    )
    errors.install(app)
    for router in (
        health.router,
        repos.router,
        versions.router,
        tags.router,
        blobs.router,
        bases.router,
        tokens.router,
    ):
        app.include_router(router, prefix="/api/v1")
    return app
