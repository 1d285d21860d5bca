"""Queries on deployments, their entries and their generations."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.models import (
    Deployment,
    DeploymentEntry,
    DeploymentGeneration,
    DeploymentReplica,
    Version,
)


def get_deployment(session: Session, namespace: str, name: str, *, lock: bool = False) -> Deployment | None:
    query = select(Deployment).where(Deployment.namespace == namespace, Deployment.name == name)
    if lock:  # and reread: the row another transaction changed before we waited for it
        query = query.with_for_update(of=Deployment).execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def list_deployments(
    session: Session, *, readable_in: tuple[str, ...] | None, namespace: str | None, limit: int
) -> Sequence[Deployment]:
    """Deployments by name, of ``readable_in``'s namespaces (None: all), optionally of one namespace."""
    query = select(Deployment).order_by(Deployment.namespace, Deployment.name).limit(limit)
    if readable_in is not None:
        query = query.where(Deployment.namespace.in_(readable_in))
    if namespace is not None:
        query = query.where(Deployment.namespace == namespace)
    return session.scalars(query).all()


def following(session: Session, repo: str, tag: str) -> Sequence[Deployment]:
    """The deployments with an entry following ``repo:tag``, locked, in id order."""
    query = (
        select(Deployment)
        .where(
            Deployment.id.in_(
                select(DeploymentEntry.deployment_id).where(
                    DeploymentEntry.repo == repo,
                    DeploymentEntry.ref_value == tag,
                    DeploymentEntry.ref_kind == "tag",
                )
            )
        )
        .order_by(Deployment.id)
        .with_for_update(of=Deployment)
    )
    return session.scalars(query).all()


def get_generation(session: Session, deployment: Deployment, number: int) -> DeploymentGeneration | None:
    query = select(DeploymentGeneration).where(
        DeploymentGeneration.deployment_id == deployment.id, DeploymentGeneration.number == number
    )
    return session.scalars(query).one_or_none()


def generations(session: Session, deployment: Deployment, *, limit: int) -> Sequence[DeploymentGeneration]:
    """The deployment's generations, newest first."""
    query = (
        select(DeploymentGeneration)
        .where(DeploymentGeneration.deployment_id == deployment.id)
        .order_by(DeploymentGeneration.number.desc())
        .limit(limit)
    )
    return session.scalars(query).all()


def previous_applied(session: Session, deployment: Deployment, before: int) -> DeploymentGeneration | None:
    """The newest ``applied`` generation numbered below ``before``: the one current before it."""
    query = (
        select(DeploymentGeneration)
        .where(
            DeploymentGeneration.deployment_id == deployment.id,
            DeploymentGeneration.number < before,
            DeploymentGeneration.status == "applied",
        )
        .order_by(DeploymentGeneration.number.desc())
        .limit(1)
    )
    return session.scalars(query).one_or_none()


def get_replica(session: Session, deployment: Deployment, replica: str) -> DeploymentReplica | None:
    query = select(DeploymentReplica).where(
        DeploymentReplica.deployment_id == deployment.id, DeploymentReplica.replica == replica
    )
    return session.scalars(query).one_or_none()


def replicas(session: Session, deployment: Deployment) -> Sequence[DeploymentReplica]:
    """Every replica that ever sent the deployment a heartbeat, by replica id."""
    query = (
        select(DeploymentReplica)
        .where(DeploymentReplica.deployment_id == deployment.id)
        .order_by(DeploymentReplica.replica)
        .execution_options(populate_existing=True)  # as other replicas' heartbeats left them
    )
    return session.scalars(query).all()


def version_states(session: Session, digests: Collection[str]) -> dict[str, bool]:
    """Of the versions with these digests (64 hex), whether each is yanked; a missing digest is absent."""
    query = select(Version.digest, Version.yanked_at.is_not(None)).where(Version.digest.in_(digests))
    return {digest: bool(yanked) for digest, yanked in session.execute(query)}
