"""Replicas: what each inference replica's agent reports it serves, and the rollout status built on it.

An agent heartbeats its replica's real state (``PUT …/replicas/{replica}``): labels, the generation it
fully serves, what its engine serves (engine name → digest) and its last error. The status view says,
per replica, which generation it should serve (the canary's when its labels match the selector), whether
it has converged to it, and whether it is stale (no heartbeat for three of its intervals). A heartbeat
is also when a canary due for auto-promotion is promoted: every fresh canary replica has converged
without an error once ``auto_promote_after`` has passed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from registry.db.models import Deployment, DeploymentGeneration, DeploymentReplica, as_utc, utcnow
from registry.db.queries import deployments as queries
from registry.errors import InvalidInput
from registry.principal import Principal
from registry.selectors import check_label, matches
from registry.services import deployments

ENGINES = ("vllm", "sglang")
REPLICA_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
STALE_AFTER = 3  # intervals without a heartbeat
FORGET_AFTER = timedelta(days=1)  # a replica silent this long is dropped from the status
MAX_LABELS = 32
MAX_LOADED = 1024
MAX_ERROR = 4096
MIN_INTERVAL, MAX_INTERVAL = 0.1, 3600.0


@dataclass(frozen=True, slots=True)
class Report:
    """One heartbeat, as the agent sends it."""

    engine: str
    engine_url: str
    labels: Mapping[str, str]
    generation: int | None
    loaded: Mapping[str, str]
    error: str | None
    interval: float


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """A replica as the status view shows it."""

    replica: DeploymentReplica
    target_generation: int
    converged: bool
    stale: bool


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    deployment: Deployment
    current: DeploymentGeneration
    canary: DeploymentGeneration | None
    replicas: list[ReplicaStatus]


def heartbeat(
    session: Session, namespace: str, name: str, replica_id: str, report: Report, principal: Principal
) -> ReplicaStatus:
    """Record ``replica_id``'s state (a token of the namespace, read scope, may report), then promote a
    canary that is due; the replica as the status view shows it."""
    principal.require("read", namespace)
    deployment = deployments.get_deployment(session, namespace, name, principal)
    _check(replica_id, report)
    now = utcnow()
    replica = queries.get_replica(session, deployment, replica_id)
    if replica is None:
        replica = DeploymentReplica(deployment_id=deployment.id, replica=replica_id, first_seen_at=now)
        session.add(replica)
    replica.engine, replica.engine_url = report.engine, report.engine_url
    replica.labels, replica.loaded = dict(report.labels), dict(report.loaded)
    replica.generation, replica.interval = report.generation, report.interval
    replica.error = _clipped(report.error)
    replica.heartbeat_at = now
    session.flush()
    if _due_for_promotion(session, deployment, now):
        # again under the row's lock: another heartbeat may have promoted it, or a rollback ended it
        deployment = deployments.get_deployment(session, namespace, name, principal, lock=True)
        if _due_for_promotion(session, deployment, now):
            deployments.promote(session, namespace, name, principal, automatic=True)
    return next(r for r in rollout_status(session, deployment, now).replicas if r.replica is replica)


def status(session: Session, namespace: str, name: str, principal: Principal) -> RolloutStatus:
    """The deployment's generations and every replica heard from in the last day."""
    return rollout_status(session, deployments.get_deployment(session, namespace, name, principal), utcnow())


def rollout_status(session: Session, deployment: Deployment, now: datetime) -> RolloutStatus:
    current = deployments.current_generation(session, deployment)
    canary = deployments.canary_generation(session, deployment)
    shown = []
    for replica in queries.replicas(session, deployment):
        if now - as_utc(replica.heartbeat_at) > FORGET_AFTER:
            continue
        target = canary if canary is not None and _is_canary(deployment, replica) else current
        shown.append(
            ReplicaStatus(
                replica=replica,
                target_generation=target.number,
                converged=replica.error is None and serves(replica.loaded, target.state),
                stale=is_stale(replica, now),
            )
        )
    return RolloutStatus(deployment, current, canary, shown)


def serves(loaded: Mapping[str, str], state: Sequence[Mapping[str, Any]]) -> bool:
    """Whether an engine serving ``loaded`` (name → digest) serves ``state``: every adapter under its name,
    and nothing else (extra names — digest-qualified ones — only with the digests of ``state``)."""
    wanted = {item["name"]: item["digest"] for item in state}
    return all(loaded.get(n) == d for n, d in wanted.items()) and set(loaded.values()) <= set(wanted.values())


def is_stale(replica: DeploymentReplica, now: datetime) -> bool:
    return now - as_utc(replica.heartbeat_at) > timedelta(seconds=STALE_AFTER * replica.interval)


def _is_canary(deployment: Deployment, replica: DeploymentReplica) -> bool:
    return deployment.canary_selector is not None and matches(deployment.canary_selector, replica.labels)


def _due_for_promotion(session: Session, deployment: Deployment, now: datetime) -> bool:
    due = deployments.promote_at(deployment)
    if due is None or now < due:
        return False
    canaries = [
        r
        for r in rollout_status(session, deployment, now).replicas
        if r.target_generation == deployment.canary_generation
    ]
    fresh = [r for r in canaries if not r.stale]
    return bool(fresh) and all(r.converged for r in fresh)


def _check(replica_id: str, report: Report) -> None:
    if not REPLICA_ID.fullmatch(replica_id):
        raise InvalidInput(f"invalid replica id {replica_id!r}: 1 to 128 of [A-Za-z0-9._:-]")
    if report.engine not in ENGINES:
        raise InvalidInput(f"unknown engine {report.engine!r}: expected one of {', '.join(ENGINES)}")
    if not report.engine_url.startswith(("http://", "https://")) or len(report.engine_url) > 2048:
        raise InvalidInput(
            f"invalid engine URL {report.engine_url[:100]!r}: expected http(s)://…, ≤ 2048 characters"
        )
    if len(report.labels) > MAX_LABELS:
        raise InvalidInput(f"a replica has at most {MAX_LABELS} labels, not {len(report.labels)}")
    for key, value in report.labels.items():
        check_label(key, value)
    if len(report.loaded) > MAX_LOADED:
        raise InvalidInput(
            f"a replica reports at most {MAX_LOADED} loaded adapters, not {len(report.loaded)}"
        )
    for engine_name, digest in report.loaded.items():
        if not DIGEST.fullmatch(digest):
            raise InvalidInput(
                f"loaded adapter {engine_name[:100]!r}: {digest[:80]!r} is not sha256:<64 hex>"
            )
    if report.generation is not None and report.generation < 1:
        raise InvalidInput(f"generation {report.generation}: generations are numbered from 1")
    if not MIN_INTERVAL <= report.interval <= MAX_INTERVAL:
        raise InvalidInput(f"heartbeat interval {report.interval}: {MIN_INTERVAL} to {MAX_INTERVAL} seconds")


def _clipped(error: str | None) -> str | None:
    return error if error is None or len(error) <= MAX_ERROR else error[: MAX_ERROR - 1] + "…"
