"""Base models: registration from a shape manifest, and the one resolver of every way a caller names a
base (``registry.refs.BASE_FORMS``: NAME, NAME@SHA, a whole SHA or a prefix of one), for every route.

A quantized base (bitsandbytes 4-bit or 8-bit weights, recorded at their logical shapes) may be linked to
the full-precision base it was quantized from: the pair has the same shapes, so an adapter of one fits the
other, and its version records which it was trained on (``trained_on``)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from registry.adapters.base_manifest import BaseManifest
from registry.db import queries
from registry.db.lookups import Lookups
from registry.db.models import BaseModel, BaseModelSha, Version
from registry.errors import Conflict, InvalidInput, UnknownBase
from registry.principal import Principal
from registry.refs import BaseSpec, RepoName, validate_base_name
from registry.services import audit, search_index
from registry.services.blobs import FileEntry, check_files
from registry.services.pages import Page, check_limit, numeric_cursor, page_of
from registry.storage import BlobStore

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_CANDIDATES = 10  # bases listed in a message that asks the caller to pick one


@dataclass(frozen=True)
class Registration:
    """What registering a base did: ``added`` is what is new of "base", "revision" and "files" (its
    uploaded files, now stored); empty when the registry had it all."""

    base: BaseModel
    added: list[str]


def register_base(
    session: Session,
    principal: Principal,
    *,
    name: str,
    manifest: BaseManifest,
    revision: str | None = None,
    files: list[FileEntry] | None = None,
    store: BlobStore | None = None,
    quantized_from: str | None = None,
) -> Registration:
    """Record a base model, or add an HF revision or its uploaded files to a known one. Base models are
    shared by every namespace, so this is an unrestricted admin's. ``files`` are the base directory's
    uploaded files (weights, config, tokenizer), which merge-into-base jobs need; their weight files must
    be the ones the manifest was read from, and a base's files, once stored, are not replaced by others.
    ``quantized_from`` names the full-precision base a quantized one was made from (any of BASE_FORMS)."""
    principal.require_unrestricted("admin", "registering a base model")
    validate_base_name(name)
    if revision is not None:
        revision = revision.lower()
        if not _COMMIT_SHA.match(revision):
            raise InvalidInput(f"--revision must be a 40-hex Hugging Face commit SHA, got {revision!r}")
    digest = manifest.content_digest
    created = queries.ensure_base(session, name=name, content_digest=digest, manifest=manifest.to_json())
    added = ["base"] if created else []
    search_index.changed(session)  # a base= filter naming it, or its revision, now finds it
    base = queries.get_base_by_digest(session, digest)
    assert base is not None
    if created:
        base.quantization = manifest.quantization
    elif manifest.quantization is not None and base.quantization is None:
        # registered before quantized weights were read at their logical shapes: read them so now
        base.manifest, base.quantization = manifest.to_json(), manifest.quantization
        added.append("quantization")
    queries.ensure_base_sha(session, sha=digest, kind="content", base_id=base.id)
    if quantized_from is not None and _link(session, base, manifest, quantized_from):
        added.append("quantized_from")
    if files is not None:
        assert store is not None
        stored = _stored_files(session, store, manifest, files, principal)
        if base.stored_files is None:
            base.stored_files = stored
            added.append("files")
        elif base.stored_files != stored:
            raise Conflict(
                f"base model sha256:{digest} ({base.name}) already has other files stored; a base's "
                "files are not replaced (register the directory they came from, unchanged)"
            )
    if revision is not None:
        if queries.ensure_base_sha(session, sha=revision, kind="hf", base_id=base.id):
            added.append("revision")
        elif (known := queries.get_base_sha(session, revision)) is not None and known.base_id != base.id:
            raise Conflict(
                f"revision {revision} is already registered for another base model "
                f"({known.base.name}, content sha256:{known.base.content_digest})"
            )
    session.flush()
    session.refresh(base)
    audit.record(
        session,
        principal,
        "base.register",
        target=f"{base.name}@{digest}",
        detail={
            "created": created,
            "added": added,
            "revision": revision,
            "files": files is not None,
            "quantized_from": quantized_from,
        },
    )
    return Registration(base, added)


def _link(session: Session, base: BaseModel, manifest: BaseManifest, spec: str) -> bool:
    """Link the quantized ``base`` to the full-precision base ``spec`` names; whether the link is new.
    The two must have the same weights at the same (logical) shapes."""
    full = get_base(session, spec)
    if base.quantization is None:
        raise InvalidInput(
            f"--quantized-from links a quantized base to its full-precision one, but {base.name} "
            f"(sha256:{base.content_digest}) has no bitsandbytes-quantized weights"
        )
    if full.quantization is not None:
        raise InvalidInput(
            f"--quantized-from must name a full-precision base; {full.name} (sha256:{full.content_digest}) "
            f"is quantized too ({full.quantization})"
            + (
                f": name the base it was quantized from, {full.quantized_from.name}"
                if full.quantized_from
                else ""
            )
        )
    if base.quantized_from_id is not None:
        if base.quantized_from_id == full.id:
            return False
        assert base.quantized_from is not None
        raise Conflict(
            f"{base.name} (sha256:{base.content_digest}) is linked to {base.quantized_from.name} "
            f"(sha256:{base.quantized_from.content_digest}) already; a quantized base has one full base"
        )
    ours = {name: w.shape for name, w in manifest.weights.items()}
    theirs = {name: w.shape for name, w in BaseManifest.from_json(full.manifest).weights.items()}
    if ours != theirs:
        differ = sorted(name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name))
        listed = ", ".join(f"{n} ({_shape(ours.get(n))} vs {_shape(theirs.get(n))})" for n in differ[:5])
        raise InvalidInput(
            f"{base.name} cannot be a quantization of {full.name}: {len(differ)} weights differ in name or "
            f"(logical) shape, e.g. {listed}; name the base these weights were quantized from"
        )
    base.quantized_from_id = full.id
    session.flush()
    session.refresh(base)
    return True


def _shape(shape: tuple[int, ...] | None) -> str:
    return "missing" if shape is None else "×".join(map(str, shape))


def pair_of(base: BaseModel) -> int:
    """The id of the full-precision base of ``base``'s pair (its own if it is not quantized from one)."""
    return base.quantized_from_id if base.quantized_from_id is not None else base.id


def trained_on(session: Session, base: BaseModel, config_name: str | None) -> str:
    """``quantized`` for an adapter pushed for a quantized base, or for its full base when the adapter's
    config names a quantized base of the pair (trained in 4-bit, pushed for the base it will be merged
    into); else ``full``."""
    if base.quantization is not None:
        return "quantized"
    named = queries.get_bases_by_name(session, config_name) if config_name else []
    return "quantized" if any(b.quantization and pair_of(b) == base.id for b in named) else "full"


def same_pair(one: BaseModel, other: BaseModel) -> bool:
    """Whether an adapter made for ``one`` fits ``other``: the same base, or the two of a quantized pair."""
    return pair_of(one) == pair_of(other)


def _stored_files(
    session: Session, store: BlobStore, manifest: BaseManifest, files: list[FileEntry], principal: Principal
) -> list[dict[str, object]]:
    checked = check_files(session, store, files, principal)
    for name, digest in manifest.files.items():
        if name not in checked or checked[name].digest != digest:
            raise InvalidInput(
                f"the uploaded files lack weight file {name} with sha256:{digest} from the manifest; "
                "upload the same directory the manifest was read from"
            )
    return [
        {"path": f.path, "digest": f.digest, "size": f.size}
        for f in sorted(checked.values(), key=lambda f: f.path)
    ]


def resolve_base(session: Session, spec: str | BaseSpec) -> tuple[BaseModel, str]:
    """The base ``spec`` names (any of ``BASE_FORMS``) and the whole SHA it matched: its content digest
    when named by NAME alone. In NAME@SHA, the SHA's base must be named NAME."""
    parsed = BaseSpec.parse(spec) if isinstance(spec, str) else spec
    if parsed.sha is None:
        assert parsed.name is not None
        base = _named(session, parsed.name)
        return base, base.content_digest
    found = _answering(session, parsed)
    if parsed.name is not None and parsed.name != found.base.name:
        raise InvalidInput(
            f"base {found.sha} is named {found.base.name!r}, not {parsed.name!r}: pass "
            f"{_options([(found.base.name, found.sha)])}, or the SHA alone",
            code="base_name_mismatch",
        )
    return found.base, found.sha


def get_base(session: Session, spec: str | BaseSpec) -> BaseModel:
    """The base ``spec`` names (:func:`resolve_base`)."""
    return resolve_base(session, spec)[0]


async def base_sha_for(lookups: Lookups, spec: str) -> str:
    """A whole SHA that the base ``spec`` names answers to, for a resolve query to check a version's base
    against. A whole SHA alone costs no statement of its own (the resolve query checks it; an unknown SHA
    fits no version); any other form, one lookup."""
    parsed = BaseSpec.parse(spec)
    if parsed.name is None and parsed.exact:
        assert parsed.sha is not None
        return parsed.sha
    return await lookups.run(lambda connection: _resolved_sha(connection, parsed))


def _resolved_sha(connection: Connection, spec: BaseSpec) -> str:
    with Session(connection) as session:
        return resolve_base(session, spec)[1]


def _answering(session: Session, spec: BaseSpec) -> BaseModelSha:
    assert spec.sha is not None
    if spec.exact:
        found = queries.get_base_sha(session, spec.sha)
        candidates: Sequence[BaseModelSha] = [found] if found is not None else []
    else:
        candidates = queries.find_base_shas(
            session, spec.sha, content_only=spec.content_only, limit=MAX_CANDIDATES + 1
        )
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise InvalidInput(
            f"base SHA prefix {spec.sha} is ambiguous; give more characters, or pick one: "
            + _options((c.base.name, c.sha) for c in candidates),
            code="ambiguous_base",
        )
    if not spec.exact:
        raise UnknownBase(
            f"no registered base model answers to a SHA starting with {spec.sha}; `lorareg base ls` lists "
            "the registered ones"
        )
    revision = f" --revision {spec.sha}" if len(spec.sha) == 40 else ""
    raise UnknownBase(
        f"base model {spec.sha} is not registered; register it with "
        f"`lorareg base register DIR --name {shlex.quote(spec.name or 'NAME')}{revision}`"
    )


def _named(session: Session, name: str) -> BaseModel:
    candidates = queries.get_bases_by_name(session, name)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UnknownBase(
            f"no base model named {name!r} is registered; `lorareg base ls` lists the registered ones, "
            f"`lorareg base register DIR --name {shlex.quote(name)}` adds it"
        )
    raise InvalidInput(
        f"{len(candidates)} base models are named {name!r}; pick one: "
        + _options((b.name, b.content_digest) for b in candidates),
        code="ambiguous_base",
    )


def find_adapter_base(
    session: Session, *, spec: str | None, config_name: str | None, fits: Callable[[BaseManifest], bool]
) -> tuple[BaseModel, str]:
    """The base an adapter is pushed for, and the SHA to record: ``spec`` (``--base``, or the config's
    revision) if given, else the one base named ``config_name`` (the config's base_model_name_or_path).
    Failing both, refuse with the registered bases whose shape manifest ``fits`` the adapter."""
    if spec is not None:
        return resolve_base(session, spec)
    named = queries.get_bases_by_name(session, config_name) if config_name else []
    if len(named) == 1:
        return named[0], named[0].content_digest
    if not config_name:
        problem = "adapter_config.json names no base model (neither revision nor base_model_name_or_path)"
    else:
        named_so = f"{len(named)} base models are named" if named else "no registered base model is named"
        problem = f"adapter_config.json has no revision, and {named_so} {config_name!r}"
    fitting = [
        base
        for base in queries.list_bases(session, with_manifests=True)
        if fits(BaseManifest.from_json(base.manifest))
    ]
    fitting.sort(key=lambda base: base.name != config_name)  # those of the config's name first
    if not fitting:
        raise InvalidInput(
            f"{problem}, and no registered base fits this adapter's tensors: register the base it was "
            "trained on (`lorareg base register DIR --name NAME`), then pass --base NAME@SHA",
            code="base_required",
        )
    raise InvalidInput(
        f"{problem}: pass --base. Registered bases that fit this adapter's tensors: "
        + _options((b.name, b.content_digest) for b in fitting),
        code="base_required",
    )


def _options(candidates: Iterable[tuple[str, str]]) -> str:
    """``--base NAME@SHA`` for each (name, sha), at most ``MAX_CANDIDATES`` of them."""
    listed = [f"--base {shlex.quote(f'{name}@{sha}')}" for name, sha in candidates]
    more = len(listed) - MAX_CANDIDATES
    return ", ".join(listed[:MAX_CANDIDATES]) + (f" (and {more} more: `lorareg base ls`)" if more > 0 else "")


def list_bases(session: Session, principal: Principal) -> Sequence[BaseModel]:
    """Every base model (shared by all namespaces): for any token, not anonymous callers."""
    principal.require("read")
    return queries.list_bases(session)


def show_base(session: Session, spec: str, principal: Principal) -> BaseModel:
    principal.require("read")
    return get_base(session, spec)


def adapters_on_base(
    session: Session, spec: str, principal: Principal, *, limit: int = 100, cursor: str | None = None
) -> Page[Version]:
    """The unyanked versions made for a base model, in repositories ``principal`` may read: by
    repository, newest first. ``cursor`` continues a previous page."""
    principal.require("read")
    after = None
    if cursor is not None:
        repo, _, number = cursor.rpartition("#")
        try:
            parsed = RepoName.parse(repo)
            after = (parsed.namespace, parsed.name, numeric_cursor(number))
        except (InvalidInput, ValueError):
            raise InvalidInput(f"invalid cursor {cursor!r}: pass the one a previous page returned") from None
    found = queries.versions_on_base(
        session,
        get_base(session, spec),
        readable_in=principal.readable_namespaces,
        after=after,
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, lambda version: f"{version.repository.full_name}#{version.number}")
