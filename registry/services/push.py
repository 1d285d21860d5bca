"""Committing a pushed adapter: validate against its base, then insert the version in one transaction.

The blobs were uploaded (and verified) before; here the server re-reads what it needs from the blob
store — the adapter config and the safetensors header, never the tensor data — checks the adapter
against the base model's shape manifest, and inserts the version, its files, its parents, its model card
(README.md's front matter, or one the registry writes) and its tag moves. Pushing content the repository
already has returns the existing version.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.adapters.base_manifest import BaseManifest
from registry.adapters.compatibility import AdapterCheck, check, check_adapter
from registry.adapters.config import LoraConfig, parse_adapter_config
from registry.adapters.model_card import Lineage
from registry.adapters.safetensors_header import SafetensorsHeader, parse_header
from registry.db import queries
from registry.db.models import BaseModel, Repository, Version, VersionParent
from registry.errors import InvalidAdapter, InvalidInput
from registry.principal import Principal
from registry.refs import DEFAULT_TAG, Ref, RepoName, RepoRef, validate_name
from registry.services import audit, cards, deployments, repos, search_index, webhooks
from registry.services.bases import find_adapter_base, resolve_base, trained_on
from registry.services.blobs import FileEntry, check_files
from registry.services.tags import set_tag
from registry.services.versions import find_version
from registry.storage import BlobStore

MANIFEST_SCHEMAS = {"adapter": "lorareg.adapter.v1", "model": "lorareg.model.v1"}
MODEL_CONFIG_FILE = "config.json"
_COMMIT_SHA = re.compile(r"^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})$")


@dataclass(frozen=True)
class PushRequest:
    files: list[FileEntry]
    base_sha: str | None = None
    message: str | None = None
    author: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    update_latest: bool = True
    parents: list[str] | None = None  # "ns/name@sha256:…" refs; default: the repository's latest
    kind: str = "adapter"  # "adapter" (PEFT LoRA, checked against its base) or "model" (full weights)
    lineage: Lineage | None = None  # a job's output: the job that made it (its card says so)


@dataclass(frozen=True)
class PushResult:
    version: Version
    created: bool
    tags_moved: list[str]
    warnings: list[str]  # what of its model card could not be read (README.md)


def push_version(
    session: Session,
    store: BlobStore,
    repo: RepoName,
    request: PushRequest,
    *,
    principal: Principal,
    max_config_size: int,
) -> PushResult:
    """Validate the pushed files and commit them as a version of ``repo`` (idempotent). Content that is
    already a yanked version comes back as that version, and no tag moves onto it."""
    principal.require("write", repo.namespace)
    files = check_files(session, store, request.files, principal)
    tags = ([DEFAULT_TAG] if request.update_latest else []) + [validate_name(t, "tag") for t in request.tags]
    if request.kind == "model":
        base, base_sha, summary = _check_model(session, store, files, request.base_sha)
    elif request.kind == "adapter":
        base, base_sha, summary = _check_adapter(session, store, files, request.base_sha, max_config_size)
    else:
        raise InvalidInput(f"unknown version kind {request.kind!r}: adapter or model")

    manifest = {
        "schema": MANIFEST_SCHEMAS[request.kind],
        "files": [
            {"path": f.path, "digest": f.digest, "size": f.size}
            for f in sorted(files.values(), key=lambda f: f.path)
        ],
        "base": {"digest": base.content_digest},
    }
    digest = hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    repository = repos.create_repository(session, repo, principal)
    version = next(iter(queries.find_versions(session, repository, Ref.digest(digest))), None)
    created = version is None
    if version is None:
        parents = _parents(session, repository, request.parents, principal)
        version = Version(
            repository_id=repository.id,
            number=queries.next_version_number(session, repository),
            digest=digest,
            manifest=manifest,
            config=summary,
            base_id=base.id,
            base_sha=base_sha,
            trained_on=trained_on(session, base, summary.get("base_model_name_or_path")),
            author=request.author,
            pushed_by=principal.name,
            message=request.message,
            provenance=request.provenance,
            file_list=manifest["files"],
        )
        session.add(version)
        session.flush()
        queries.add_files(session, version, [(f.path, f.digest, f.size) for f in files.values()])
        session.add_all(
            VersionParent(version_id=version.id, position=i, parent_id=p.id) for i, p in enumerate(parents)
        )
        session.flush()
        session.refresh(version)
        card = cards.write_card(session, store, version, files, lineage=request.lineage, actor=principal.name)
        webhooks.emit(
            session,
            "version.pushed",
            {"repo": str(repo), "number": version.number, "digest": f"sha256:{digest}", "kind": request.kind},
            namespace=repo.namespace,
        )
    else:
        card = cards.card_of(session, version)
    if version.yanked_at is not None:
        tags = []  # the content was yanked: pushing it again must not bring it back under a tag
    moved = [t for t in dict.fromkeys(tags) if set_tag(session, repository, t, version, actor=principal.name)]
    if created or moved:
        search_index.refresh(session, repository)
    for moved_tag in moved:
        deployments.follow_tag(session, repository, moved_tag, principal)
    audit.record(
        session,
        principal,
        "version.push",
        target=f"{repo}@sha256:{digest}",
        namespace=repo.namespace,
        detail={"number": version.number, "created": created, "tags_moved": moved},
    )
    return PushResult(version=version, created=created, tags_moved=moved, warnings=card.warnings)


def _check_adapter(
    session: Session,
    store: BlobStore,
    files: dict[str, FileEntry],
    base_sha: str | None,
    max_config_size: int,
) -> tuple[BaseModel, str, dict[str, Any]]:
    """A PEFT LoRA adapter: its config and tensors fit the base model it names."""
    for required in (CONFIG_FILE, WEIGHTS_FILE):
        if required not in files:
            raise InvalidAdapter(
                f"the adapter has no {required}; a PEFT LoRA adapter directory holds {CONFIG_FILE} and "
                f"{WEIGHTS_FILE} (save it with model.save_pretrained(dir))"
            )
    config = _read_config(store, files[CONFIG_FILE], max_config_size)
    header = _header(store, files[WEIGHTS_FILE])
    base, sha = find_adapter_base(
        session,
        spec=base_sha if base_sha is not None else _config_revision(config),
        config_name=config.base_model_name_or_path,
        fits=lambda manifest: _fits(config, header, manifest),
    )
    found = check(config, header, BaseManifest.from_json(base.manifest))
    return base, sha, _config_summary(config, found, base)


def _check_model(
    session: Session, store: BlobStore, files: dict[str, FileEntry], base_sha: str | None
) -> tuple[BaseModel, str, dict[str, Any]]:
    """Full model weights (a merge into the base, a fine-tune): readable safetensors and a config.json;
    ``base_sha`` names the base model they derive from."""
    shards = [f for path, f in sorted(files.items()) if path.endswith(".safetensors")]
    if not shards or MODEL_CONFIG_FILE not in files:
        raise InvalidInput(
            f"a model version needs {MODEL_CONFIG_FILE} and *.safetensors weights (save it with "
            "model.save_pretrained(dir, safe_serialization=True))"
        )
    if base_sha is None:
        raise InvalidInput("a model version names the base model it derives from: pass --base NAME@SHA")
    base, sha = resolve_base(session, base_sha)
    tensors = {name: info for shard in shards for name, info in _header(store, shard).tensors.items()}
    return (
        base,
        sha,
        {
            "kind": "model",
            "tensors": len(tensors),
            "parameters": sum(math.prod(info.shape) for info in tensors.values()),
            "safetensors_files": len(shards),
            "base_name": base.name,
        },
    )


def _header(store: BlobStore, entry: FileEntry) -> SafetensorsHeader:
    return parse_header(
        lambda offset, length: store.read_at(entry.digest, offset, length), entry.size, filename=entry.path
    )


def _read_config(store: BlobStore, entry: FileEntry, max_size: int) -> LoraConfig:
    if entry.size > max_size:
        raise InvalidAdapter(f"{CONFIG_FILE} is {entry.size} bytes; the limit is {max_size}")
    return parse_adapter_config(store.read_at(entry.digest, 0, entry.size))


def _config_revision(config: LoraConfig) -> str | None:
    """The base SHA the adapter's config names in ``revision``: a whole commit SHA or content digest."""
    if config.revision and not _COMMIT_SHA.match(config.revision):
        raise InvalidAdapter(
            f"{CONFIG_FILE} names base revision {config.revision!r}, which is not a commit SHA; "
            "pass --base NAME@SHA with the base model's commit SHA or content digest"
        )
    return config.revision or None


def _fits(config: LoraConfig, header: SafetensorsHeader, manifest: BaseManifest) -> bool:
    try:
        check_adapter(config, header, manifest)
    except InvalidAdapter:
        return False
    return True


def _parents(
    session: Session, repository: Repository, refs: list[str] | None, principal: Principal
) -> list[Version]:
    if refs is None:
        latest = queries.get_tag(session, repository, DEFAULT_TAG)
        return [latest.version] if latest is not None else []
    parents = []
    for value in refs:
        ref = RepoRef.parse(value)
        if ref.ref.kind != "digest":
            raise InvalidInput(f"parent {value!r} must name a version by digest: ns/name@sha256:<hex>")
        parents.append(find_version(session, ref, principal, allow_yanked=True))
    return parents


def _config_summary(config: LoraConfig, found: AdapterCheck, base: BaseModel) -> dict[str, Any]:
    modules = found.modules
    return {
        **found.summary(),  # peft_type, use_dora, per-module fan_in_fan_out, modules_to_save, resized
        "kind": "adapter",
        "peft_type": config.peft_type,
        "r": config.r,
        "lora_alpha": config.lora_alpha,
        "use_rslora": config.use_rslora,
        "fan_in_fan_out": config.fan_in_fan_out,
        "target_modules": sorted({m.name.rsplit(".", 1)[-1] for m in modules}),
        "modules": len(modules),
        "ranks": sorted({m.rank for m in modules}),
        "base_model_name_or_path": config.base_model_name_or_path,
        "base_name": base.name,
    }
