"""Health: liveness (no database) at ``/api/v1/health``, ``/health`` and ``/healthz``; readiness at
``/readyz``. All public: a load balancer or an orchestrator's probe has no token."""

from __future__ import annotations

from importlib.metadata import version
from typing import Literal

import anyio
from fastapi import APIRouter, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from registry.api.deps import RegistryDep
from registry.services import health as service

VERSION = version("lorareg")

router = APIRouter(tags=["health"])  # under /api/v1
probes = APIRouter(tags=["health"])  # at the root, where probes look


class LivenessOut(BaseModel):
    status: Literal["ok"]
    version: str


class CheckOut(BaseModel):
    name: str
    ok: bool
    detail: str


class ReadinessOut(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: list[CheckOut]


@router.get("/health")
@probes.get("/health")
@probes.get("/healthz")
def health() -> LivenessOut:
    """Liveness: answers without touching the database."""
    return LivenessOut(status="ok", version=VERSION)


@probes.get(
    "/readyz",
    response_model=ReadinessOut,
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": ReadinessOut}},
)
async def readyz(registry: RegistryDep) -> JSONResponse:
    """Readiness: the database answers and is at the migrations' head, and the blob store is usable; 503
    with the failed checks and why otherwise."""
    async with registry.session_slots:  # it takes a pooled connection, as a request's session does
        checks = await anyio.to_thread.run_sync(service.readiness, registry.db, registry.store)
    ready = all(check.ok for check in checks)
    body = ReadinessOut(
        status="ready" if ready else "not_ready",
        checks=[CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in checks],
    )
    return JSONResponse(
        body.model_dump(),
        status_code=status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Cache-Control": "no-store"},
    )
