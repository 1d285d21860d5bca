"""Every way a caller names a base model (``BaseSpec``), parsed and resolved by the one resolver that every
route uses: NAME, NAME@SHA, a Hugging Face commit, the content digest, or a 12+ hex prefix of either."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from registry.adapters.base_manifest import BaseManifest, content_digest, read_base_manifest
from registry.db.lookups import Lookups
from registry.errors import BaseMismatch, InvalidInput, UnknownBase
from registry.principal import REGISTRY
from registry.refs import BaseSpec, RepoRef
from registry.services import versions
from registry.services.bases import register_base, resolve_base
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry
from tests.services.test_resolve import SentStatements

HF = "0123456789abcdef0123456789abcdef01234567"


def twin(manifest: BaseManifest, seed: str) -> BaseManifest:
    """A manifest of the same shapes with other weight files: another base that fits the same adapters."""
    files = {
        name: hashlib.sha256(f"{seed}{digest}".encode()).hexdigest()
        for name, digest in manifest.files.items()
    }
    return BaseManifest(weights=manifest.weights, files=files, content_digest=content_digest(files))


def register(registry: LocalRegistry, manifest: BaseManifest, name: str, revision: str | None = None) -> None:
    with registry.db.transaction() as session:
        register_base(session, REGISTRY, name=name, manifest=manifest, revision=revision)


def resolved(registry: LocalRegistry, spec: str) -> tuple[str, str]:
    """(content digest, matched SHA) of the base ``spec`` names."""
    with registry.db.transaction() as session:
        base, sha = resolve_base(session, spec)
        return base.content_digest, sha


@pytest.mark.parametrize(
    ("value", "name", "sha", "content_only", "exact"),
    [
        ("tiny-llama", "tiny-llama", None, False, False),
        ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B", None, False, False),
        (f"tiny-llama@{HF}", "tiny-llama", HF, False, True),
        (HF.upper(), None, HF, False, True),
        ("ab" * 32, None, "ab" * 32, False, True),
        (f"sha256:{'ab' * 32}", None, "ab" * 32, True, True),
        (HF[:12], None, HF[:12], False, False),
        (f"sha256:{HF}", None, HF, True, False),  # 40 hex of a content digest: a prefix
        (f"org/base@sha256:{HF[:20]}", "org/base", HF[:20], True, False),
        ("abc123", "abc123", None, False, False),  # too short to be a SHA: a name
    ],
)
def test_every_form_parses(
    value: str, name: str | None, sha: str | None, content_only: bool, exact: bool
) -> None:
    spec = BaseSpec.parse(value)
    assert (spec.name, spec.sha, spec.content_only, spec.exact) == (name, sha, content_only, exact)
    assert BaseSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "invalid base model name ''"),
        ("tiny-llama@", "NAME@SHA ends in a SHA"),
        ("tiny-llama@main", "NAME@SHA ends in a SHA"),
        (f"@{HF}", "invalid base model name ''"),
        ("sha256:xyz", "expected 12 to 64 hex"),
        ("a" * 65, "expected 12 to 64 hex"),
        ("tiny\x00llama", "printable"),
        (f"a@b@{HF}", "without '@'"),
        ("x" * 257, "1 to 256"),
    ],
)
def test_impossible_forms_are_refused_with_the_forms(value: str, says: str) -> None:
    with pytest.raises(InvalidInput, match="NAME@SHA") as refused:
        BaseSpec.parse(value)
    assert says in refused.value.message


def test_every_form_resolves_to_the_same_base(registry: LocalRegistry, tiny_base: TinyBase) -> None:
    register(registry, read_base_manifest(tiny_base.path), "tiny-llama", revision=HF)
    digest = tiny_base.content_digest
    for spec, matched in [
        ("tiny-llama", digest),
        (f"tiny-llama@{HF}", HF),
        (f"tiny-llama@{digest}", digest),
        (f"tiny-llama@{digest[:12]}", digest),
        (HF, HF),
        (digest, digest),
        (f"sha256:{digest}", digest),
        (digest[:12], digest),
        (HF[:12].upper(), HF),
        (f"sha256:{digest[:16]}", digest),
    ]:
        assert resolved(registry, spec) == (digest, matched), spec


def test_a_name_that_is_not_the_bases_is_refused(registry: LocalRegistry, tiny_base: TinyBase) -> None:
    with pytest.raises(InvalidInput) as refused:
        resolved(registry, f"other-llama@{tiny_base.content_digest}")
    assert refused.value.code == "base_name_mismatch"
    assert "named 'tiny-llama', not 'other-llama'" in refused.value.message
    assert f"--base tiny-llama@{tiny_base.content_digest}" in refused.value.message


def test_an_ambiguous_prefix_or_name_lists_the_candidates(
    registry: LocalRegistry, tiny_base: TinyBase
) -> None:
    prefix = uuid.uuid4().hex[:12]
    first, second = prefix + "1" * 28, prefix + "2" * 28
    one, two = (twin(read_base_manifest(tiny_base.path), seed) for seed in ("one", "two"))
    register(registry, one, "twin", revision=first)
    register(registry, two, "twin", revision=second)
    by_prefix = ambiguity(registry, prefix)
    assert f"--base twin@{first}" in by_prefix and f"--base twin@{second}" in by_prefix
    by_name = ambiguity(registry, "twin")
    assert f"--base twin@{one.content_digest}" in by_name and f"--base twin@{two.content_digest}" in by_name
    assert resolved(registry, first[:13]) == (one.content_digest, first)  # one more character


def ambiguity(registry: LocalRegistry, spec: str) -> str:
    with pytest.raises(InvalidInput) as refused:
        resolved(registry, spec)
    assert refused.value.code == "ambiguous_base"
    return refused.value.message


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("nobody", "no base model named 'nobody' is registered"),
        ("fe" * 20, f"--revision {'fe' * 20}"),
        ("fedcba987654", "no registered base model answers to a SHA starting with fedcba987654"),
    ],
)
def test_unknown_bases_say_how_to_register_or_list_them(
    registry: LocalRegistry, spec: str, says: str
) -> None:
    with pytest.raises(UnknownBase, match="lorareg base") as refused:
        resolved(registry, spec)
    assert says in refused.value.message


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def lookups(registry: LocalRegistry, runner: asyncio.Runner) -> Iterator[Lookups]:
    lookups = Lookups.open(registry.url)
    yield lookups
    runner.run(lookups.close())


def test_resolve_takes_every_form_and_a_whole_sha_stays_one_statement(
    registry: LocalRegistry,
    runner: asyncio.Runner,
    lookups: Lookups,
    tiny_base: TinyBase,
    adapter_factory: Callable[..., Path],
    tmp_path: Path,
) -> None:
    registry.push("acme/bot", adapter_factory(seed=1), tiny_base)
    register(registry, twin(read_base_manifest(tiny_base.path), "other"), "other-llama")
    sent = SentStatements(lookups, tmp_path / "libpq.trace")

    def resolve(base: str) -> versions.Resolved:
        return runner.run(versions.resolve(lookups, RepoRef.parse("acme/bot"), REGISTRY, base_sha=base))

    with sent.counted() as statements:
        assert resolve(tiny_base.content_digest).number == 1
    assert len(statements) == 1, statements
    with sent.counted() as statements:
        assert resolve("tiny-llama").number == 1
    assert len(statements) == 2, statements  # the base by name, then the version
    with sent.counted() as statements:
        assert resolve(f"tiny-llama@{tiny_base.content_digest[:12]}").number == 1
    assert len(statements) == 2, statements
    with pytest.raises(BaseMismatch, match="not for base other-llama"):
        resolve("other-llama")
    with pytest.raises(InvalidInput, match="named 'tiny-llama', not 'other-llama'"):
        resolve(f"other-llama@{tiny_base.content_digest}")
