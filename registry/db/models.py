"""SQLAlchemy 2 models of the registry's metadata.

Versions are immutable; only ``yanked_at``/``yank_reason`` may be set later. Tags are movable names
whose every move is appended to ``tag_events``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
HEX64 = "length({col}) = 64"


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time the registry stores is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


VISIBILITIES = ("private", "public")


class Repository(Base):
    """``namespace/name``. ``private`` ones are read only by tokens of their namespace; ``public`` ones by
    anyone, anonymous callers included."""

    __tablename__ = "repositories"
    __table_args__ = (
        UniqueConstraint("namespace", "name"),
        CheckConstraint("visibility IN ('private', 'public')", name="visibility_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    visibility: Mapped[str] = mapped_column(String(16), default="private", server_default="private")
    description: Mapped[str | None] = mapped_column(String(1024))  # a line for `ls` and search
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


class Blob(Base):
    """A stored blob the registry knows about (written by uploads, read by gc and fsck)."""

    __tablename__ = "blobs"
    __table_args__ = (CheckConstraint(HEX64.format(col="digest"), name="digest_hex64"),)

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BlobUpload(Base):
    """A token proved it holds a blob's bytes by uploading them: it may commit versions that reference
    the blob even when no repository it can read does yet (knowing a digest is not enough)."""

    __tablename__ = "blob_uploads"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BaseModel(Base):
    """A base model: its shape manifest, and the SHAs it answers to (``base_model_shas``). A quantized
    base (``quantization``: how its weights are stored, e.g. bnb-nf4) may be linked to the full-precision
    base it was quantized from: adapters of either fit both."""

    __tablename__ = "base_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), index=True)
    content_digest: Mapped[str] = mapped_column(String(64), unique=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(deferred=True)  # every weight's shape: large
    stored_files: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # for merge-into-base jobs
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    quantization: Mapped[str | None] = mapped_column(String(32))  # the manifest's (null: full precision)
    quantized_from_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id"), index=True)

    shas: Mapped[list[BaseModelSha]] = relationship(
        back_populates="base", order_by="BaseModelSha.kind", lazy="selectin"
    )
    quantized_from: Mapped[BaseModel | None] = relationship(remote_side=[id])


class BaseModelSha(Base):
    """One SHA a base model answers to: its content digest, or a Hugging Face commit SHA."""

    __tablename__ = "base_model_shas"
    __table_args__ = (CheckConstraint("kind IN ('content', 'hf')", name="kind_known"),)

    sha: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id", ondelete="CASCADE"), index=True)

    base: Mapped[BaseModel] = relationship(back_populates="shas")


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("repository_id", "number"),
        UniqueConstraint("repository_id", "digest"),
        CheckConstraint(HEX64.format(col="digest"), name="digest_hex64"),
        CheckConstraint("trained_on IN ('quantized', 'full')", name="trained_on_known"),
        Index("ix_versions_digest", "digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column(deferred=True)
    config: Mapped[dict[str, Any]]
    # The files as lookups serve them ({path, digest, size}), kept on the row so that a resolve is one
    # indexed query; version_files holds the same rows for the blob references (gc, fsck).
    file_list: Mapped[list[dict[str, Any]]] = mapped_column(JSON, server_default="[]")
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    base_sha: Mapped[str] = mapped_column(String(64))
    author: Mapped[str | None] = mapped_column(String(256))  # as the client claims it
    pushed_by: Mapped[str | None] = mapped_column(String(256))  # the token's name (null before 0008)
    message: Mapped[str | None] = mapped_column(Text)
    provenance: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    yanked_at: Mapped[datetime | None]
    yank_reason: Mapped[str | None] = mapped_column(Text)
    # whether the adapter was trained on a quantized base or a full-precision one (its base, or the other
    # of a quantized pair: both fit it)
    trained_on: Mapped[str] = mapped_column(String(16), default="full", server_default="full")

    repository: Mapped[Repository] = relationship(lazy="joined", innerjoin=True)
    base: Mapped[BaseModel] = relationship(lazy="joined", innerjoin=True)
    files: Mapped[list[VersionFile]] = relationship(order_by="VersionFile.path", lazy="selectin")
    parent_links: Mapped[list[VersionParent]] = relationship(
        foreign_keys="VersionParent.version_id", order_by="VersionParent.position", lazy="selectin"
    )


class VersionParent(Base):
    __tablename__ = "version_parents"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)

    parent: Mapped[Version] = relationship(foreign_keys=[parent_id], lazy="joined", innerjoin=True)


class VersionFile(Base):
    __tablename__ = "version_files"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    blob_digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("repository_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(96))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    version: Mapped[Version] = relationship(lazy="joined", innerjoin=True)


class TagEvent(Base):
    """One move of a tag (like git's reflog): from ``old`` to ``new``; either may be null."""

    __tablename__ = "tag_events"
    __table_args__ = (Index("ix_tag_events_repository_id_tag", "repository_id", "tag"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(96))
    old_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id", ondelete="SET NULL"))
    new_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id", ondelete="SET NULL"))
    actor: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    old_version: Mapped[Version | None] = relationship(foreign_keys=[old_version_id], lazy="joined")
    new_version: Mapped[Version | None] = relationship(foreign_keys=[new_version_id], lazy="joined")


class Token(Base):
    """A bearer token: only the sha256 of the secret is stored, with its scope and namespaces."""

    __tablename__ = "tokens"
    __table_args__ = (CheckConstraint("scope IN ('read', 'write', 'admin')", name="scope_known"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(96))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    namespaces: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Job(Base):
    """A server-side computation (merge, diff, …): the truth about it, whatever executor runs it.

    ``inputs`` are version digests resolved at submission, so a tag moving later changes nothing;
    ``key`` is the hash of kind + inputs + params + output, so an identical job is found, not rerun.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status_known"
        ),
        Index("ix_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(64), index=True)
    inputs: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    queue: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(256))
    device: Mapped[str | None] = mapped_column(String(64))
    progress: Mapped[str | None] = mapped_column(String(256))
    submitted_by: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Webhook(Base):
    """A URL told about events (versions pushed, tags moved, yanks, finished jobs), signed with its secret."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(JSON)
    namespace: Mapped[str | None] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook: written in the transaction that caused it (an outbox), then sent."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class AuditEvent(Base):
    """One mutating call: who (the authenticated token, never a client-supplied author), what, on what,
    and how it ended (``ok`` or the error code)."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_namespace_id", "namespace", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(256))
    token_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str | None] = mapped_column(String(96))
    target: Mapped[str] = mapped_column(String(512))
    result: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class VersionCard(Base):
    """A version's model card: the metadata parsed from its ``README.md`` front matter (the Hugging Face
    model card format) and its Markdown, or a card the registry generated (no README, job outputs).
    Written once, with the version; the README file itself is stored unchanged among its files."""

    __tablename__ = "version_cards"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    card_data: Mapped[dict[str, Any]]  # the front matter's known fields (base_model, license, tags, …)
    markdown: Mapped[str] = mapped_column(Text)
    generated: Mapped[bool] = mapped_column(Boolean)
    warnings: Mapped[list[str]] = mapped_column(JSON)  # what could not be read (invalid YAML, …)


class RepositoryLabel(Base):
    """A key-value label on a repository (mutable; every change is in ``label_events``)."""

    __tablename__ = "repository_labels"
    __table_args__ = (Index("ix_repository_labels_key_value", "key", "value"),)

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(256))


class VersionLabel(Base):
    """A key-value label on an immutable version, e.g. ``validation=approved`` set by CI after its checks."""

    __tablename__ = "version_labels"
    __table_args__ = (Index("ix_version_labels_key_value", "key", "value"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(1024))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(256))


class LabelEvent(Base):
    """One label change: set (``old_value`` null when new) or removed (``new_value`` null), on a
    repository (``version_id`` null) or one of its versions."""

    __tablename__ = "label_events"
    __table_args__ = (Index("ix_label_events_target", "repository_id", "version_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(128))
    old_value: Mapped[str | None] = mapped_column(String(1024))
    new_value: Mapped[str | None] = mapped_column(String(1024))
    actor: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalMetric(Base):
    """A numeric eval result of a version: from its card's ``model-index`` (``source='card'``, at push)
    or attached later (``source='eval'``: lm-evaluation-harness ``results.json`` or a flat file).
    ``name`` is ``task/metric``, or ``metric`` alone when there is no task: what search filters on."""

    __tablename__ = "eval_metrics"
    __table_args__ = (
        UniqueConstraint("version_id", "source", "name"),
        CheckConstraint("source IN ('card', 'eval')", name="source_known"),
        Index("ix_eval_metrics_name_value", "name", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(256))  # "" when the result names none
    metric: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(513))
    value: Mapped[float] = mapped_column(Float)
    stderr: Mapped[float | None] = mapped_column(Float)
    dataset: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(256))


class SearchDocument(Base):
    """What search reads of a repository, kept current by ``registry.services.search_index``: its latest
    version (the one ``latest`` points at; without that tag, the newest unyanked one), that version's base
    and card license, when it last changed, and the text matched (name, description, the card's Markdown
    and metadata strings). The full-text index over ``text`` is the database's own, made by migration 0010
    outside the models (see :func:`described_by_models`)."""

    __tablename__ = "search_documents"
    __table_args__ = (
        Index("ix_search_documents_updated_at", "updated_at", "repository_id"),
        Index("ix_search_documents_base_id", "base_id", "updated_at", "repository_id"),
        Index("ix_search_documents_license", "license", "updated_at", "repository_id"),
        Index("ix_search_documents_latest_version_id", "latest_version_id"),
    )

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    latest_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id", ondelete="SET NULL"))
    base_id: Mapped[int | None] = mapped_column(ForeignKey("base_models.id"))
    license: Mapped[str | None] = mapped_column(String(256))  # lowercased
    updated_at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)


class Generation(Base):
    """A change counter (see :mod:`registry.db.generations`): ``search`` counts what search can see."""

    __tablename__ = "generations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class WebSession(Base):
    """A browser's login to the web UI: the cookie holds a random secret, of which only the sha256 is kept
    here, tied to the token it was opened with (revoking the token ends it; logging out deletes it)."""

    __tablename__ = "web_sessions"

    secret_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Deployment(Base):
    """``namespace/name``: the adapters a pool of inference servers should serve on one base, as named
    entries whose every change (and every move of a tag an entry follows) makes a generation.
    ``current_generation`` is the number of the applied generation replicas converge to."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("namespace", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(96))
    name: Mapped[str] = mapped_column(String(96))
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id"), index=True)
    current_generation: Mapped[int] = mapped_column(Integer)
    latest_generation: Mapped[int] = mapped_column(Integer)  # refused ones included
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the rollout policy: new generations go first to the replicas whose labels match canary_selector
    canary_selector: Mapped[str | None] = mapped_column(String(320))
    auto_promote_after: Mapped[int | None] = mapped_column(Integer)  # seconds
    # the generation being tried on the canary replicas (status "canary"), since canary_started_at
    canary_generation: Mapped[int | None] = mapped_column(Integer)
    canary_started_at: Mapped[datetime | None] = mapped_column()

    base: Mapped[BaseModel] = relationship(lazy="joined", innerjoin=True)
    entries: Mapped[list[DeploymentEntry]] = relationship(
        order_by="DeploymentEntry.id", lazy="selectin", cascade="all, delete-orphan"
    )

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


class DeploymentEntry(Base):
    """One adapter of a deployment, loaded under ``name`` in the engine: ``ref`` as given; a ``tag`` ref
    follows the tag, a ``digest`` (stored whole) or ``number`` ref is pinned."""

    __tablename__ = "deployment_entries"
    __table_args__ = (
        UniqueConstraint("deployment_id", "name"),
        CheckConstraint("ref_kind IN ('tag', 'digest', 'number')", name="ref_kind_known"),
        Index("ix_deployment_entries_repo_ref_value", "repo", "ref_value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    ref: Mapped[str] = mapped_column(String(512))
    repo: Mapped[str] = mapped_column(String(193))
    ref_kind: Mapped[str] = mapped_column(String(16))
    ref_value: Mapped[str] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


GENERATION_STATUSES = ("applied", "refused", "canary", "promoted", "superseded", "rolled_back")


class DeploymentGeneration(Base):
    """One state of a deployment: every entry resolved (``[{name, repo, ref, digest, number}]``), why it
    was made, and what became of it: ``applied`` (current for every replica outside a canary), ``refused``
    (with ``reason``), ``canary`` (being tried on the canary replicas), then ``promoted`` (a new applied
    generation carries it), ``superseded`` (a newer canary replaced it) or ``rolled_back``."""

    __tablename__ = "deployment_generations"
    __table_args__ = (
        UniqueConstraint("deployment_id", "number"),
        CheckConstraint(
            f"status IN ({', '.join(repr(s) for s in GENERATION_STATUSES)})", name="status_known"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    cause: Mapped[str] = mapped_column(String(512))  # "create", "add NAME", "rm NAME", "tag REPO:TAG"
    state: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    actor: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentReplica(Base):
    """One inference replica's last heartbeat, as its agent reported it: the engine, the replica's labels,
    the generation it fully serves, what the engine serves (engine name → ``sha256:…``) and its last
    error. It is stale once no heartbeat came for three of its ``interval``s."""

    __tablename__ = "deployment_replicas"
    __table_args__ = (
        UniqueConstraint("deployment_id", "replica"),
        CheckConstraint("engine IN ('vllm', 'sglang')", name="engine_known"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    replica: Mapped[str] = mapped_column(String(128))
    engine: Mapped[str] = mapped_column(String(16))
    engine_url: Mapped[str] = mapped_column(String(2048))
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    generation: Mapped[int | None] = mapped_column(Integer)
    loaded: Mapped[dict[str, str]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    interval: Mapped[float] = mapped_column(Float)  # seconds between its heartbeats
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


# The full-text index of search_documents, which no model describes: on SQLite an FTS5 table (with its
# shadow tables, named after it); on PostgreSQL a generated tsvector column and its GIN index.
SEARCH_FTS_TABLE = "search_documents_fts"
SEARCH_VECTOR = "search_vector"
_DATABASE_ONLY = {("column", SEARCH_VECTOR), ("index", f"ix_search_documents_{SEARCH_VECTOR}")}


def described_by_models(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic's ``include_object`` hook: False for the full-text index's objects in the database."""
    if not reflected or compare_to is not None or name is None:
        return True
    return not (name.startswith(SEARCH_FTS_TABLE) if type_ == "table" else (type_, name) in _DATABASE_ONLY)
