"""The FastAPI application."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from registry.api import docs, errors, limits
from registry.api.audit_trail import RefusalTrail
from registry.api.deps import Registry
from registry.api.request_id import RequestId
from registry.api.routers import (
    audit,
    bases,
    blobs,
    cards,
    deployments,
    evals,
    health,
    hf,
    jobs,
    labels,
    metrics,
    repos,
    resolve,
    search,
    tags,
    tokens,
    versions,
    webhooks,
)
from registry.api.schemas import ErrorBody
from registry.config import Settings
from registry.db.lookups import Lookups
from registry.db.session import MAX_CONNECTIONS
from registry.jobs.executors import make_executor
from registry.metrics.instruments import count_search_cache, watch_pool
from registry.metrics.middleware import RequestMetrics
from registry.runtime import Runtime
from registry.services import tokens as token_service
from registry.services.search import AnswerCache
from registry.ui import install as install_ui
from registry.webhooks import Dispatcher

logger = logging.getLogger("lorareg")


def _warn_without_admin(runtime: Runtime) -> None:
    """First start with auth required and no admin token: say how to make one."""
    if runtime.settings.auth != "required":
        return
    with runtime.db.transaction(write=False) as session:
        if token_service.has_admin(session):
            return
    message = (
        "LOREG_AUTH=required and no admin token exists yet: create one where this server's "
        "LOREG_DATABASE_URL is set, with `lorareg token create admin --scope admin --bootstrap`"
    )
    logger.warning(message)
    print(f"lorareg: {message}", file=sys.stderr, flush=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database must already be migrated (``lorareg serve`` does it)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.open(settings)
        unwatch_pool = watch_pool(runtime.db.engine, MAX_CONNECTIONS)
        executor = make_executor(runtime)
        lookups = Lookups.open(settings.resolved_database_url)
        app.state.registry = Registry(
            settings=settings,
            db=runtime.db,
            lookups=lookups,
            store=runtime.store,
            executor=executor,
            search_cache=AnswerCache(settings.search_cache_entries, on_lookup=count_search_cache),
        )
        # The engine's URL prints its password masked; a blob URL holds none (S3 keys are settings).
        logger.info("database %s, blobs %s", runtime.db.engine.url, settings.resolved_blob_url)
        _warn_without_admin(runtime)
        dispatcher = Dispatcher(runtime)
        dispatcher.start()
        yield
        dispatcher.close()
        await lookups.close()
        executor.close()
        runtime.close()
        unwatch_pool()

    app = FastAPI(
        title="lorareg",
        version="1",
        summary="A registry for LoRA adapters",
        lifespan=lifespan,
        docs_url=None,  # docs.install serves both pages from the package's own assets
        redoc_url=None,
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    )
    errors.install(app)
    app.add_middleware(RefusalTrail)
    app.add_middleware(limits.BodyLimit, limit=settings.max_json_body)
    app.add_middleware(limits.PrintableUrl)
    app.add_middleware(RequestMetrics)  # outside the refusals, so that they are counted too
    app.add_middleware(RequestId)  # outermost: every answer carries the id, refusals above too
    for router in (
        health.router,
        resolve.router,  # first after health: routes are matched in order, and lookups are the hot path
        repos.router,
        versions.router,
        cards.router,
        tags.router,
        labels.router,
        evals.router,
        blobs.router,
        bases.router,
        tokens.router,
        jobs.router,
        webhooks.router,
        audit.router,
        search.router,
        deployments.router,
    ):
        app.include_router(router, prefix="/api/v1")
    app.include_router(hf.router, prefix="/hf")
    app.include_router(metrics.router)
    app.include_router(health.probes)
    docs.install(app)
    install_ui(app)
    return app


def serving_app() -> FastAPI:
    """The app as ``lorareg serve`` runs it (in each worker): built, then everything made so far (modules,
    routes, templates) frozen out of the cyclic collector's way, so that its full collections do not walk
    them (pauses of 100+ ms in page latencies otherwise)."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app
