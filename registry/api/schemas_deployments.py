"""Request and response bodies of the deployment routes, and the functions that build them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel as Schema
from pydantic import Field

from registry.api.schemas import Input, Name, Ref, Timestamp
from registry.db import models


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
    status: str = Field(description="applied, or refused (with reason): the current generation stays")
    reason: str | None
    cause: str
    state: list[dict[str, Any]] = Field(description="[{name, repo, ref, digest, number}]")
    actor: str | None
    created_at: Timestamp


class BaseOut(Schema):
    name: str
    content_digest: str


class DeploymentOut(Schema):
    namespace: str
    name: str
    base: BaseOut
    entries: list[EntryOut]
    current_generation: GenerationOut
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


def deployment_out(
    deployment: models.Deployment,
    current: models.DeploymentGeneration,
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
        current_generation=generation_out(current),
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
