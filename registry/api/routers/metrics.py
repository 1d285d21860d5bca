"""``GET /metrics``: Prometheus' text format (docs/monitoring.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from registry.api.deps import RegistryDep, in_transaction
from registry.api.schemas import ErrorBody
from registry.metrics import exposition

router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"model": ErrorBody, "description": "LOREG_METRICS_TOKEN is set and was not sent"},
    },
)
async def metrics(request: Request, registry: RegistryDep) -> Response:
    """Requests, lookups, pushes, pulls, blob bytes, jobs, webhook deliveries and database connections.
    Open unless ``LOREG_METRICS_TOKEN`` is set (then ``Authorization: Bearer <it>``); no label holds a
    repository name."""
    exposition.authorize(registry.settings, request.headers.get("authorization"))
    body = await in_transaction(registry, exposition.render, write=False)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
