"""Request and response bodies of the v1 API, and the functions that build them from the models."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, Field, TypeAdapter, model_validator
from pydantic import BaseModel as Schema

from registry.adapters.model_card import Card
from registry.db import models
from registry.db.models import as_utc
from registry.services.search import Hit
from registry.services.versions import Resolved
from registry.services.yank import YankResult

Timestamp = Annotated[datetime, AfterValidator(as_utc)]  # SQLite hands back naive UTC times

# Bounds on request bodies, each above the services' own rules (which answer a more specific 400).
MAX_JSON_FIELD = 64 * 1024  # bytes of a free-form object (provenance, job params), as compact JSON
MAX_FILES = 1000  # registry.services.blobs.MAX_FILES
MAX_SIZE = 2**63 - 1  # a BIGINT
MAX_LIFETIME = 100 * 365 * 86400  # seconds
MAX_DEPTH = 32  # nesting of lists and objects, well below the recursion limits of what stores them
Name = Annotated[str, Field(max_length=256)]  # namespaces, repositories, tags, base names and SHAs
Ref = Annotated[str, Field(max_length=512)]  # ns/name[:tag], ns/name@sha256:…, ns/name#N
Digest = Annotated[str, Field(max_length=128, description="sha256:<hex>")]


def _compact_json(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    except ValueError as exc:
        raise ValueError(f"not storable as JSON: {exc}") from None
    if size > MAX_JSON_FIELD:
        raise ValueError(f"at most {MAX_JSON_FIELD} bytes as JSON, got {size}")
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(_compact_json)]


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in children]
    return deepest


# A NUL in a string or key, as json.dumps writes it (and not a literal backslash followed by "u0000").
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _nul_at(data: Any) -> str | None:
    """Where in ``data`` (parsed JSON) a string or key holds a NUL character, if anywhere."""
    stack: list[tuple[str, Any]] = [("body", data)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return where
        if isinstance(value, dict):
            stack += [(f"{where} (a key)", key) for key in value]
            stack += [(f"{where}.{key}", item) for key, item in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    return None


class Input(Schema):
    """A request body (nested models need not be): no NUL character anywhere, PostgreSQL text cannot
    hold one."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        try:
            found = _ESCAPED_NUL.search(json.dumps(data, default=str))  # fast; then look where
        except RecursionError:
            raise ValueError("the body is nested too deeply") from None
        if found and (where := _nul_at(data)):
            raise ValueError(f"{where} contains a NUL character (\\x00)")
        return data


class ErrorDetail(Schema):
    code: str
    message: str


class ErrorBody(Schema):
    error: ErrorDetail


class RepoOut(Schema):
    namespace: str
    name: str
    id: str = Field(description="namespace/name")
    visibility: str = Field(description="private (its namespace's tokens) or public (anyone)")
    description: str | None = Field(default=None, description="one line (`lorareg repo describe`)")
    created_at: Timestamp
    versions: int | None = None


class RepoIn(Input):
    namespace: Name
    name: Name


class BaseRefOut(Schema):
    name: str
    sha: str = Field(description="the SHA the adapter named")
    content_digest: str


class FileOut(Schema):
    path: str
    digest: str
    size: int
    url: str


class VersionOut(Schema):
    repo: str
    number: int
    digest: str
    parents: list[str]
    tags: list[str]
    author: str | None = Field(description="who the client says wrote it (descriptive)")
    pushed_by: str | None = Field(description="the token that pushed it, as the audit trail names it")
    message: str | None
    provenance: dict[str, Any]
    created_at: Timestamp
    yanked: bool
    yank_reason: str | None
    base: BaseRefOut
    trained_on: str = Field(default="full", description="quantized or full: the base it was trained on")
    config: dict[str, Any]
    files: list[FileOut]


class FileIn(Schema):
    path: str = Field(max_length=1024)
    digest: Digest
    size: int = Field(ge=0, le=MAX_SIZE)


class PushIn(Input):
    kind: str = Field(
        default="adapter", max_length=32, description="adapter (PEFT LoRA) or model (full weights)"
    )
    files: list[FileIn] = Field(max_length=MAX_FILES)
    base: Name | None = Field(
        default=None,
        description="the base model: NAME, NAME@SHA, a SHA or a 12+ hex prefix (default: from "
        "adapter_config.json)",
    )
    message: str | None = Field(default=None, max_length=65536)
    author: str | None = Field(default=None, max_length=256)
    provenance: JSONObject = Field(default_factory=dict, description="free-form, at most 64 KiB as JSON")
    tags: list[Name] = Field(default_factory=list, max_length=64)
    update_latest: bool = True
    parents: list[Ref] | None = Field(default=None, max_length=64)


class PushOut(VersionOut):
    created: bool
    tags_moved: list[str]
    warnings: list[str] = Field(
        default_factory=list, description="what of README.md's model card could not be read (never refused)"
    )


class CardOut(Schema):
    """A version's model card: README.md's front matter fields and Markdown, or a generated card."""

    card_data: dict[str, Any] = Field(
        description="base_model, base_model_relation, license, datasets, language, tags, library_name, "
        "pipeline_tag, model-index (as the Hub reads them)"
    )
    markdown: str = Field(description="the card's text after its front matter")
    generated: bool = Field(description="written by the registry: no readable README.md, or a job's output")
    warnings: list[str]


class YankIn(Input):
    reason: str | None = Field(default=None, max_length=4096)


class TagMovedOut(Schema):
    tag: str
    number: int | None = Field(description="where it points now; null: removed (no unyanked version left)")
    digest: str | None


class YankOut(VersionOut):
    """The version after a yank or unyank; ``tags`` are the tags that (still) point at it."""

    changed: bool = Field(description="false: it already was (or, for unyank, was not) yanked")
    tags_moved: list[TagMovedOut]


class TagOut(Schema):
    name: str
    number: int
    digest: str
    yanked: bool = Field(description="it points at a yanked version: it resolves to nothing (410)")
    updated_at: Timestamp


class TagMoveIn(Input):
    target: Ref = Field(
        description="the version to point at: tag, sha256:<hex>, @<hex>, #<number>, or a full ref of this "
        "repository (ns/name:tag, ns/name@…, ns/name#N)"
    )
    expected: Ref | None = Field(
        default=None, description="compare-and-set: where the tag must point now (the same forms)"
    )
    expect_absent: bool = Field(default=False, description="compare-and-set: the tag must not exist yet")
    allow_yanked: bool = Field(default=False, description="point the tag at a yanked version anyway")


class TagEventOut(Schema):
    tag: str
    old: str | None
    new: str | None
    old_number: int | None
    new_number: int | None
    actor: str | None
    created_at: Timestamp


class BlobRef(Schema):
    digest: Digest
    size: int = Field(ge=0, le=MAX_SIZE)


class BlobBatchIn(Input):
    blobs: list[BlobRef] = Field(max_length=1000)  # registry.services.blobs.MAX_BATCH


class UploadTarget(Schema):
    digest: str
    size: int
    method: str
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    verify_url: str | None = Field(
        default=None, description="POST here after a direct (presigned) upload, before committing"
    )


class BlobBatchOut(Schema):
    missing: list[UploadTarget]


class WeightShapeIn(Schema):
    shape: list[int] = Field(max_length=16)
    dtype: str = Field(max_length=32)
    quantized: str | None = Field(
        default=None, max_length=32, description="bnb-nf4, bnb-fp4 or bnb-int8: shape and dtype are logical"
    )


class BaseManifestIn(Schema):
    weights: dict[str, WeightShapeIn] = Field(max_length=200_000, description="tensor name → shape")
    files: dict[str, str] = Field(max_length=10_000)
    content_digest: Digest
    quantization: str | None = Field(default=None, max_length=100, description="its weights' kinds, +-joined")


class BaseIn(Input):
    name: Name
    revision: Name | None = None
    manifest: BaseManifestIn
    files: list[FileIn] | None = Field(
        default=None,
        max_length=MAX_FILES,
        description="the base directory's uploaded files, for merge-into-base jobs",
    )
    quantized_from: Name | None = Field(
        default=None,
        description="a quantized base: the full-precision base it was made from (NAME, NAME@SHA…)",
    )


class BaseOut(Schema):
    name: str
    content_digest: str
    shas: list[str]
    hf_revisions: list[str]
    weights: int
    stored_files: int = Field(description="files of the base stored in the registry (0: shapes only)")
    created_at: Timestamp
    quantization: str | None = Field(default=None, description="how its weights are stored: bnb-nf4, …")
    quantized_from: BaseRefOut | None = Field(default=None, description="the full base it was quantized from")
    created: bool | None = None
    added: list[str] | None = Field(
        default=None,
        description="registration: what it added of base, revision, files, quantized_from ([]: nothing new)",
    )


class CompatibleAdapterOut(Schema):
    repo: str
    number: int
    digest: str
    tags: list[str]


def repo_out(repository: models.Repository, versions: int | None = None) -> RepoOut:
    return RepoOut(
        namespace=repository.namespace,
        name=repository.name,
        id=repository.full_name,
        visibility=repository.visibility,
        description=repository.description,
        created_at=repository.created_at,
        versions=versions,
    )


def version_out(version: models.Version, tags: list[str]) -> VersionOut:
    return VersionOut(**_version_fields(version, tags))


def push_out(
    version: models.Version, tags: list[str], *, created: bool, tags_moved: list[str], warnings: list[str]
) -> PushOut:
    return PushOut(
        **_version_fields(version, tags), created=created, tags_moved=tags_moved, warnings=warnings
    )


def card_out(card: Card) -> CardOut:
    return CardOut(
        card_data=card.data, markdown=card.markdown, generated=card.generated, warnings=card.warnings
    )


def yank_out(result: YankResult, tags: list[str]) -> YankOut:
    return YankOut(
        **_version_fields(result.version, tags),
        changed=result.changed,
        tags_moved=[
            TagMovedOut(
                tag=move.tag,
                number=move.to.number if move.to else None,
                digest=f"sha256:{move.to.digest}" if move.to else None,
            )
            for move in result.tags_moved
        ],
    )


def _version_fields(version: models.Version, tags: list[str]) -> dict[str, Any]:
    return {
        "repo": version.repository.full_name,
        "number": version.number,
        "digest": f"sha256:{version.digest}",
        "parents": [_qualified(link.parent) for link in version.parent_links],
        "tags": tags,
        "author": version.author,
        "pushed_by": version.pushed_by,
        "message": version.message,
        "provenance": version.provenance,
        "created_at": version.created_at,
        "yanked": version.yanked_at is not None,
        "yank_reason": version.yank_reason,
        "base": BaseRefOut(
            name=version.base.name, sha=version.base_sha, content_digest=version.base.content_digest
        ),
        "trained_on": version.trained_on,
        "config": version.config,
        "files": [_file_out(f.path, f.blob_digest, f.size) for f in version.files],
    }


def resolved_out(resolved: Resolved) -> ResolvedVersionOut:
    return ResolvedVersionOut(
        repo=resolved.repo,
        number=resolved.number,
        digest=f"sha256:{resolved.digest}",
        yanked=resolved.yanked,
        created_at=resolved.created_at,
        provenance=resolved.provenance,
        base=BaseRefOut(
            name=resolved.base_name, sha=resolved.base_sha, content_digest=resolved.base_content_digest
        ),
        trained_on=resolved.trained_on,
        config=resolved.config,
        files=[_file_out(f["path"], f["digest"], f["size"]) for f in resolved.files],
    )


def _file_out(path: str, digest: str, size: int) -> FileOut:
    return FileOut(path=path, digest=f"sha256:{digest}", size=size, url=f"/api/v1/blobs/sha256:{digest}")


def _qualified(version: models.Version) -> str:
    return f"{version.repository.full_name}@sha256:{version.digest}"


def tag_out(tag: models.Tag) -> TagOut:
    return TagOut(
        name=tag.name,
        number=tag.version.number,
        digest=f"sha256:{tag.version.digest}",
        yanked=tag.version.yanked_at is not None,
        updated_at=tag.updated_at,
    )


def tag_event_out(event: models.TagEvent) -> TagEventOut:
    return TagEventOut(
        tag=event.tag,
        old=f"sha256:{event.old_version.digest}" if event.old_version else None,
        new=f"sha256:{event.new_version.digest}" if event.new_version else None,
        old_number=event.old_version.number if event.old_version else None,
        new_number=event.new_version.number if event.new_version else None,
        actor=event.actor,
        created_at=event.created_at,
    )


def base_out(base: models.BaseModel, *, added: list[str] | None = None) -> BaseOut:
    return BaseOut(
        name=base.name,
        content_digest=base.content_digest,
        shas=[s.sha for s in base.shas],
        hf_revisions=[s.sha for s in base.shas if s.kind == "hf"],
        weights=len(base.manifest.get("weights", {})),
        stored_files=len(base.stored_files or []),
        created_at=base.created_at,
        quantization=base.quantization,
        quantized_from=BaseRefOut(
            name=base.quantized_from.name,
            sha=base.quantized_from.content_digest,
            content_digest=base.quantized_from.content_digest,
        )
        if base.quantized_from is not None
        else None,
        created=None if added is None else "base" in added,
        added=added,
    )


class TokenIn(Input):
    name: str = Field(min_length=1, max_length=96)
    scope: str = Field(max_length=32, description="read, write or admin")
    namespaces: list[Name] | None = Field(
        default=None, max_length=256, description="limit the token to these namespaces"
    )
    expires_in: int | None = Field(
        default=None, gt=0, le=MAX_LIFETIME, description="lifetime in seconds; none = no expiry"
    )


class TokenOut(Schema):
    id: int
    name: str
    scope: str
    namespaces: list[str] | None
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None
    revoked: bool


class TokenCreatedOut(TokenOut):
    secret: str = Field(description="shown once; only its hash is stored")


class WhoAmIOut(Schema):
    name: str
    scope: str
    namespaces: list[str] | None
    auth: str
    expires_at: datetime | None = None


def token_out(token: models.Token) -> TokenOut:
    return TokenOut(**_token_fields(token))


def token_created_out(token: models.Token, secret: str) -> TokenCreatedOut:
    return TokenCreatedOut(**_token_fields(token), secret=secret)


def _token_fields(token: models.Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "scope": token.scope,
        "namespaces": token.namespaces,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "revoked": token.revoked_at is not None,
    }


class JobIn(Input):
    kind: str = Field(max_length=32, description="merge, diff, merge_base or extract")
    inputs: list[Ref] = Field(
        max_length=100, description="versions: ns/name[:tag], ns/name@sha256:…, ns/name#N"
    )
    params: JSONObject = Field(
        default_factory=dict,
        description="merge: method, weights, density, …; diff: scale, max (default) or fixed (0..√2); "
        "extract: rank or energy",
    )
    into: Ref | None = Field(default=None, description="merge output: ns/name[:tag]")
    device: str = Field(
        default="auto", max_length=32, description="auto (a GPU worker when one exists), gpu or cpu"
    )


class JobOut(Schema):
    id: str
    kind: str
    status: str
    inputs: list[dict[str, Any]]
    params: dict[str, Any]
    output: dict[str, Any] | None
    queue: str
    attempts: int
    worker: str | None
    device: str | None
    progress: str | None
    submitted_by: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    error: str | None
    result: dict[str, Any] | None
    created: bool | None = None


def job_out(job: models.Job, *, created: bool | None = None) -> JobOut:
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        inputs=job.inputs["versions"],
        params=job.params,
        output=job.output,
        queue=job.queue,
        attempts=job.attempts,
        worker=job.worker,
        device=job.device,
        progress=job.progress,
        submitted_by=job.submitted_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=job.error,
        result=job.result,
        created=created,
    )


class ResolveBatchIn(Input):
    refs: list[Ref] = Field(max_length=500, description="ns/name[:tag], ns/name@sha256:…, ns/name#N")
    base: Name | None = Field(
        default=None, description="the base model the caller runs (NAME, NAME@SHA, a SHA or a 12+ hex prefix)"
    )


class ResolvedVersionOut(Schema):
    """What a loader needs: the files to fetch and the base they fit (no lineage, no tags)."""

    repo: str
    number: int
    digest: str
    yanked: bool = Field(description="only a digest reference resolves a yanked version")
    created_at: Timestamp
    provenance: dict[str, Any]
    base: BaseRefOut
    trained_on: str = Field(
        default="full", description="quantized or full: the base it was trained on (either of a pair fits)"
    )
    config: dict[str, Any] = Field(description="summary: kind, r, lora_alpha, target_modules, …")
    files: list[FileOut]


class ResolvedOut(Schema):
    ref: str
    version: ResolvedVersionOut | None = None
    error: ErrorDetail | None = None


class ResolveBatchOut(Schema):
    results: list[ResolvedOut]


class WebhookIn(Input):
    url: str = Field(max_length=2048)
    events: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        max_length=16,
        description="version.pushed, tag.moved, version.yanked, version.unyanked, job.finished",
    )
    namespace: Name | None = Field(default=None, description="only events of this namespace")


class WebhookOut(Schema):
    id: int
    url: str
    events: list[str]
    namespace: str | None
    created_at: Timestamp
    secret: str | None = Field(default=None, description="HMAC-SHA256 key; shown once, at creation")


class DeliveryOut(Schema):
    id: int
    event: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: Timestamp
    delivered_at: Timestamp | None


def webhook_out(hook: models.Webhook, *, with_secret: bool = False) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        events=hook.events,
        namespace=hook.namespace,
        created_at=hook.created_at,
        secret=hook.secret if with_secret else None,
    )


def delivery_out(delivery: models.WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        event=delivery.event,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
    )


class VisibilityIn(Input):
    visibility: str = Field(max_length=16, description="private or public")


class AuditEventOut(Schema):
    id: int
    created_at: Timestamp
    actor: str = Field(description="the authenticated token's name")
    token_id: int | None
    action: str
    namespace: str | None
    target: str
    result: str = Field(description="ok, or the error code the call was refused with")
    detail: dict[str, Any] | None


def audit_event_out(event: models.AuditEvent) -> AuditEventOut:
    return AuditEventOut.model_validate(event, from_attributes=True)


class DescriptionIn(Input):
    description: str | None = Field(
        max_length=4096, description='one line of at most 1024 characters; null or "" clears it'
    )


LabelKey = Annotated[str, Field(max_length=256)]


class LabelsIn(Input):
    labels: dict[LabelKey, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=256,
        description="key → value to set (keys [a-z0-9][a-z0-9._/-]*, ≤ 128; values ≤ 1 KiB of UTF-8)",
    )
    remove: list[LabelKey] = Field(
        default_factory=list, max_length=256, description="keys to remove (an absent one is no change)"
    )


class LabelOut(Schema):
    key: str
    value: str
    updated_at: Timestamp
    updated_by: str = Field(description="the token that set it")


class LabelsOut(Schema):
    labels: list[LabelOut] = Field(description="every label of the target after the change")
    changed: list[str] = Field(description="the keys this call set or removed ([]: all already were)")


class LabelEventOut(Schema):
    key: str
    old: str | None = Field(description="null: the label was new")
    new: str | None = Field(description="null: the label was removed")
    actor: str
    created_at: Timestamp


class EvalMetricOut(Schema):
    name: str = Field(description="task/metric, or metric alone: what compare and search name it")
    task: str
    metric: str
    value: float
    stderr: float | None
    dataset: str | None
    source: str = Field(description="card (the model card's model-index, at push) or eval (attached)")
    created_by: str
    created_at: Timestamp


class EvalsOut(Schema):
    attached: list[str] = Field(description="the names of the metrics this file attached")
    metrics: list[EvalMetricOut] = Field(description="every metric of the version now, both sources")


def label_out(label: models.RepositoryLabel | models.VersionLabel) -> LabelOut:
    return LabelOut.model_validate(label, from_attributes=True)


def label_event_out(event: models.LabelEvent) -> LabelEventOut:
    return LabelEventOut(
        key=event.key,
        old=event.old_value,
        new=event.new_value,
        actor=event.actor,
        created_at=event.created_at,
    )


def eval_metric_out(metric: models.EvalMetric) -> EvalMetricOut:
    return EvalMetricOut.model_validate(metric, from_attributes=True)


class SearchLatestOut(Schema):
    number: int
    digest: str
    base: BaseRefOut
    created_at: Timestamp
    yanked: bool
    tags: list[str] = Field(description="the tags on this version")
    labels: dict[str, str] = Field(description="this version's labels")
    metrics: dict[str, float] = Field(description="by name; an attached eval result wins over the card's")


class SearchHitOut(Schema):
    repo: str = Field(description="namespace/name")
    visibility: str
    description: str | None
    updated_at: Timestamp = Field(description="its last push, tag move, yank, label or description change")
    license: str | None = Field(description="the latest version's card license (lowercase)")
    labels: dict[str, str] = Field(description="the repository's labels (its latest version's: in latest)")
    latest: SearchLatestOut | None = Field(
        description="the version `latest` points at (without that tag, the newest unyanked one); null: none"
    )


_SEARCH_HITS = TypeAdapter(list[SearchHitOut])


def search_hits_json(hits: Sequence[Hit]) -> bytes:
    """A page of results as the API answers it (``list[SearchHitOut]``), serialized at once. Built without
    validating: a hit's fields have the types they show already (its times in UTC)."""
    return _SEARCH_HITS.dump_json([_search_hit(hit) for hit in hits])


def _search_hit(hit: Hit) -> SearchHitOut:
    latest = hit.latest
    return SearchHitOut.model_construct(
        repo=hit.repo,
        visibility=hit.visibility,
        description=hit.description,
        updated_at=hit.updated_at,
        license=hit.license,
        labels=hit.labels,
        latest=None
        if latest is None
        else SearchLatestOut.model_construct(
            number=latest.number,
            digest=f"sha256:{latest.digest}",
            base=BaseRefOut.model_construct(
                name=latest.base_name, sha=latest.base_sha, content_digest=latest.base_content_digest
            ),
            created_at=latest.created_at,
            yanked=latest.yanked,
            tags=latest.tags,
            labels=latest.labels,
            metrics=latest.metrics,
        ),
    )
