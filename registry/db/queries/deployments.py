"""Queries on deployments, their entries and their generations."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.models import Deployment, DeploymentEntry, DeploymentGeneration


def get_deployment(session: Session, namespace: str, name: str, *, lock: bool = False) -> Deployment | None:
    query = select(Deployment).where(Deployment.namespace == namespace, Deployment.name == name)
    if lock:
        query = query.with_for_update(of=Deployment)
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
