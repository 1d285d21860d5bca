"""Deployments: desired state for pools of inference servers (see registry.services.deployments)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.orm import Session

from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.schemas_deployments import (
    AdapterIn,
    DeploymentIn,
    DeploymentOut,
    DeploymentSummary,
    GenerationOut,
    HeartbeatIn,
    ReplicaOut,
    RollbackIn,
    RolloutIn,
    StatusOut,
    deployment_out,
    deployment_summary,
    generation_out,
    replica_out,
    status_out,
)
from registry.api.watch import WATCH_MAX_TIMEOUT, long_poll
from registry.db.models import Deployment
from registry.services import deployments, replicas

router = APIRouter(prefix="/deployments", tags=["deployments"])

HISTORY = 100  # generations a show lists


def _shown(session: Session, deployment: Deployment) -> DeploymentOut:
    return deployment_out(
        deployment,
        deployments.current_generation(session, deployment),
        deployments.canary_generation(session, deployment),
        deployments.history(session, deployment, limit=HISTORY),
    )


@router.get("")
def list_deployments(
    session: ReadSession,
    principal: Caller,
    namespace: str | None = None,
    limit: int = Query(100, ge=1, le=500),
) -> list[DeploymentSummary]:
    """The deployments the caller may read, by name, optionally of one namespace."""
    found = deployments.list_deployments(session, principal, namespace=namespace, limit=limit)
    return [deployment_summary(d) for d in found]


@router.post("", status_code=status.HTTP_201_CREATED, name="deployment.create")
def create_deployment(body: DeploymentIn, session: WriteSession, principal: Caller) -> DeploymentOut:
    """Create an empty deployment for one base model (generation 1)."""
    deployment = deployments.create_deployment(session, body.namespace, body.name, body.base, principal)
    return _shown(session, deployment)


@router.get("/{namespace}/{name}")
def get_deployment(namespace: str, name: str, session: ReadSession, principal: Caller) -> DeploymentOut:
    """Its entries, current generation and history (newest first)."""
    return _shown(session, deployments.get_deployment(session, namespace, name, principal))


@router.post("/{namespace}/{name}/adapters", status_code=status.HTTP_201_CREATED, name="deployment.add")
def add_adapter(
    namespace: str, name: str, body: AdapterIn, session: WriteSession, principal: Caller
) -> GenerationOut:
    """Add an adapter (409 when made for another base, or its name is taken): the new generation."""
    return generation_out(deployments.add_adapter(session, namespace, name, body.ref, body.as_, principal))


@router.delete("/{namespace}/{name}/adapters/{alias:path}", name="deployment.remove")
def remove_adapter(
    namespace: str, name: str, alias: str, session: WriteSession, principal: Caller
) -> GenerationOut:
    """Remove the adapter served under ``alias``: the new generation."""
    return generation_out(deployments.remove_adapter(session, namespace, name, alias, principal))


@router.post("/{namespace}/{name}/rollout", name="deployment.rollout")
def set_rollout(
    namespace: str, name: str, body: RolloutIn, session: WriteSession, principal: Caller
) -> DeploymentOut:
    """How new generations roll out: first to the replicas matching a canary selector, or to all at once
    (409 while a canary is being tried)."""
    deployment = deployments.set_rollout(
        session, namespace, name, body.canary, body.auto_promote_after, principal
    )
    return _shown(session, deployment)


@router.post("/{namespace}/{name}/promote", name="deployment.promote")
def promote(namespace: str, name: str, session: WriteSession, principal: Caller) -> GenerationOut:
    """Serve the canary generation on every replica: the new applied generation (409 without a canary)."""
    return generation_out(deployments.promote(session, namespace, name, principal))


@router.post("/{namespace}/{name}/rollback", name="deployment.rollback")
def rollback(
    namespace: str, name: str, body: RollbackIn, session: WriteSession, principal: Caller
) -> GenerationOut:
    """Serve an earlier applied generation on every replica (abandoning a canary): the new generation."""
    return generation_out(deployments.rollback(session, namespace, name, body.to, principal))


@router.put("/{namespace}/{name}/replicas/{replica}", name="deployment.heartbeat")
def heartbeat(
    namespace: str, name: str, replica: str, body: HeartbeatIn, session: WriteSession, principal: Caller
) -> ReplicaOut:
    """An agent's heartbeat: its replica's real state (a read token of the namespace may send it)."""
    return replica_out(replicas.heartbeat(session, namespace, name, replica, body.report(), principal))


@router.get("/{namespace}/{name}/status")
def rollout_status(namespace: str, name: str, session: ReadSession, principal: Caller) -> StatusOut:
    """Per replica: the generation it should serve, what it serves, converged, stale."""
    return status_out(replicas.status(session, namespace, name, principal))


@router.get(
    "/{namespace}/{name}/watch",
    response_model=DeploymentOut,
    responses={304: {"description": "the current generation is still `since` when the timeout ran out"}},
)
async def watch_deployment(
    namespace: str,
    name: str,
    request: Request,
    registry: RegistryDep,
    principal: Caller,
    since: int | None = Query(
        None, ge=0, description="the generation the caller has; answer once a later one is current or canary"
    ),
    timeout: float = Query(30.0, ge=0, le=WATCH_MAX_TIMEOUT, description="seconds to wait before a 304"),
) -> DeploymentOut | Response:
    """Long-poll, as a tag watch does: the deployment as soon as its current or canary generation is
    past ``since`` (at once without it), 304 when ``timeout`` passes first, 404 once it is gone.
    Each check is a short read transaction in a worker thread."""

    def check() -> DeploymentOut | None:
        with registry.db.transaction(write=False) as session:
            found = deployments.changed_deployment(session, namespace, name, since, principal)
            return _shown(session, found) if found is not None else None

    return await long_poll(request, check, timeout)
