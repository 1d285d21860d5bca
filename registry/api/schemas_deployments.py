"""Request and response bodies of the deployment routes, and the functions that build them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel as Schema
from pydantic import Field

from registry.api.schemas import Input, Name, Ref, Timestamp
from registry.db import models
from registry.services import deployments, replicas


class DeploymentIn(Input):
    namespace: Name
    name: Name
    base: Name = Field(description="the base model: NAME, NAME@SHA, a SHA or a 12+ hex prefix")


class AdapterIn(Input):
    ref: Ref = Field(description="ns/name[:tag] follows the tag; ns/name@sha256:… or ns/name#N is pinned")
    as_: Name | None = Field(
        default=None, alias="as", description="the name the engine serves it under (default: ref)"
    )


class EntryOut(Schema):
    name: str
    ref: str
    repo: str
    follows: str | None = Field(description="the tag this entry follows; null when pinned")


class GenerationOut(Schema):
    number: int
    status: str = Field(
        description="applied; refused (with reason: the current generation stays); canary (on the canary "
        "replicas), then promoted, superseded or rolled_back"
    )
    reason: str | None
    cause: str
    state: list[dict[str, Any]] = Field(description="[{name, repo, ref, digest, number}]")
    actor: str | None
    created_at: Timestamp


class RolloutIn(Input):
    canary: Annotated[str, Field(max_length=320)] | None = Field(
        description="key=value: new generations go first to the replicas with this label; null: all at once"
    )
    auto_promote_after: int | None = Field(
        default=None,
        ge=0,
        description="seconds after which a canary whose replicas converged without errors is promoted",
    )


class RollbackIn(Input):
    to: int | None = Field(
        default=None,
        ge=1,
        description="an applied generation; default: the canary's start, else the one before",
    )


class HeartbeatIn(Input):
    engine: Annotated[str, Field(max_length=16)] = Field(description="vllm or sglang")
    engine_url: Annotated[str, Field(max_length=2048)]
    labels: dict[str, str] = Field(default_factory=dict)
    generation: int | None = Field(
        description="the generation the replica fully serves; null before its first"
    )
    loaded: dict[str, str] = Field(description="what the engine serves: engine name → sha256:<hex>")
    error: str | None = Field(
        default=None, description="the agent's last error; null when its last pass was clean"
    )
    interval: float = Field(description="seconds between this agent's heartbeats")

    def report(self) -> replicas.Report:
        return replicas.Report(**self.model_dump())


class ReplicaOut(Schema):
    replica: str
    engine: str
    engine_url: str
    labels: dict[str, str]
    target_generation: int = Field(description="what it should serve: the canary's when its labels match")
    generation: int | None = Field(description="what it reports it fully serves")
    loaded: dict[str, str] = Field(description="engine name → sha256:<hex>, as the engine serves them")
    converged: bool = Field(description="it serves the target generation's adapters and reports no error")
    error: str | None
    stale: bool = Field(description="no heartbeat for three of its intervals")
    interval: float
    heartbeat_at: Timestamp
    first_seen_at: Timestamp


class BaseOut(Schema):
    name: str
    content_digest: str


class CanaryOut(Schema):
    generation: GenerationOut
    selector: str = Field(description="key=value: the replicas that serve it")
    started_at: Timestamp
    promote_at: Timestamp | None = Field(
        description="when it is promoted if its replicas converged without errors"
    )


class RolloutOut(Schema):
    canary: str | None = Field(
        description="the canary selector new generations go to first; null: all at once"
    )
    auto_promote_after: int | None


class DeploymentOut(Schema):
    namespace: str
    name: str
    base: BaseOut
    entries: list[EntryOut]
    rollout: RolloutOut
    current_generation: GenerationOut
    canary: CanaryOut | None = Field(description="the generation being tried on the canary replicas, if any")
    history: list[GenerationOut] = Field(description="every generation, refused ones too, newest first")
    created_by: str
    created_at: Timestamp


class DeploymentSummary(Schema):
    namespace: str
    name: str
    base: BaseOut
    adapters: int
    current_generation: int
    created_at: Timestamp


def generation_out(generation: models.DeploymentGeneration) -> GenerationOut:
    return GenerationOut(
        number=generation.number,
        status=generation.status,
        reason=generation.reason,
        cause=generation.cause,
        state=generation.state,
        actor=generation.actor,
        created_at=generation.created_at,
    )


def _base_out(base: models.BaseModel) -> BaseOut:
    return BaseOut(name=base.name, content_digest=f"sha256:{base.content_digest}")


class StatusOut(Schema):
    namespace: str
    name: str
    current_generation: GenerationOut
    canary: CanaryOut | None
    replicas: list[ReplicaOut] = Field(description="every replica heard from in the last day, by id")


def _canary_out(
    deployment: models.Deployment, canary: models.DeploymentGeneration | None
) -> CanaryOut | None:
    if canary is None:
        return None
    assert deployment.canary_selector is not None and deployment.canary_started_at is not None
    return CanaryOut(
        generation=generation_out(canary),
        selector=deployment.canary_selector,
        started_at=deployment.canary_started_at,
        promote_at=deployments.promote_at(deployment),
    )


def replica_out(found: replicas.ReplicaStatus) -> ReplicaOut:
    r = found.replica
    return ReplicaOut(
        replica=r.replica,
        engine=r.engine,
        engine_url=r.engine_url,
        labels=r.labels,
        target_generation=found.target_generation,
        generation=r.generation,
        loaded=r.loaded,
        converged=found.converged,
        error=r.error,
        stale=found.stale,
        interval=r.interval,
        heartbeat_at=r.heartbeat_at,
        first_seen_at=r.first_seen_at,
    )


def status_out(found: replicas.RolloutStatus) -> StatusOut:
    return StatusOut(
        namespace=found.deployment.namespace,
        name=found.deployment.name,
        current_generation=generation_out(found.current),
        canary=_canary_out(found.deployment, found.canary),
        replicas=[replica_out(r) for r in found.replicas],
    )


def deployment_out(
    deployment: models.Deployment,
    current: models.DeploymentGeneration,
    canary: models.DeploymentGeneration | None,
    history: Sequence[models.DeploymentGeneration],
) -> DeploymentOut:
    return DeploymentOut(
        namespace=deployment.namespace,
        name=deployment.name,
        base=_base_out(deployment.base),
        entries=[
            EntryOut(
                name=e.name,
                ref=e.ref,
                repo=e.repo,
                follows=e.ref_value if e.ref_kind == "tag" else None,
            )
            for e in deployment.entries
        ],
        rollout=RolloutOut(
            canary=deployment.canary_selector, auto_promote_after=deployment.auto_promote_after
        ),
        current_generation=generation_out(current),
        canary=_canary_out(deployment, canary),
        history=[generation_out(g) for g in history],
        created_by=deployment.created_by,
        created_at=deployment.created_at,
    )


def deployment_summary(deployment: models.Deployment) -> DeploymentSummary:
    return DeploymentSummary(
        namespace=deployment.namespace,
        name=deployment.name,
        base=_base_out(deployment.base),
        adapters=len(deployment.entries),
        current_generation=deployment.current_generation,
        created_at=deployment.created_at,
    )
