"""``lorareg import hf://REPO[@REV] TARGET``: a mirror from one lorareg's /hf routes into another, and
the refusals, each leaving nothing behind."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveServer, TinyBase
from tests.hub.conftest import Cli, Source, adapter_copy, commit_of, push_version
from tests.test_dependencies import import_without

ADAPTER_FILES = {"README.md", "adapter_config.json", "adapter_model.safetensors"}


def push_bot(source: Source, adapter: Path, tiny_base: TinyBase, tmp_path: Path, *, pinned: bool) -> dict:
    """``{namespace}/bot:prod`` on the source: ``adapter`` with a config naming the source's base repository
    (and, if ``pinned``, its commit SHA in ``revision``)."""
    config = {"base_model_name_or_path": source.base_repo, "revision": source.base_commit if pinned else None}
    copy = adapter_copy(adapter, tmp_path / "bot", **config)
    return push_version(
        source.server, f"{source.namespace}/bot", copy, base=tiny_base.content_digest, tags=["prod"]
    )


@pytest.fixture
def bot(source: Source, adapter_factory, tiny_base: TinyBase, tmp_path: Path) -> str:
    push_bot(source, adapter_factory(seed=5), tiny_base, tmp_path, pinned=False)
    return f"{source.namespace}/bot"


def import_(
    lorareg: Cli, source: Source, destination: LiveServer, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    return lorareg(destination, "--json", "import", *args, "--endpoint", source.endpoint, check=check)


@pytest.mark.parametrize("pinned", [False, True], ids=["base-revision-absent", "base-revision-in-config"])
def test_import_mirrors_a_version_between_registries(
    source: Source,
    destination: LiveServer,
    adapter_factory,
    tiny_base: TinyBase,
    lorareg: Cli,
    tmp_path: Path,
    pinned: bool,
) -> None:
    pushed = push_bot(source, adapter_factory(seed=5), tiny_base, tmp_path, pinned=pinned)
    repo = pushed["repo"]
    assert (
        lorareg.register_hf(destination, source.base_repo, source.endpoint)["hf"]["commit"]
        == source.base_commit
    )

    done = import_(lorareg, source, destination, f"hf://{repo}@prod", f"{repo}:prod")
    imported = json.loads(done.stdout)
    assert imported["digest"] == pushed["digest"] and imported["created"] is True
    assert set(imported["tags"]) == {"latest", "prod"}
    resolved = f"resolved main to {source.base_commit}"
    assert (resolved in done.stderr) is not pinned, done.stderr

    version = destination.http.get(f"/api/v1/repos/{repo}/versions/prod").json()
    assert version["provenance"]["source"] == f"hf://{repo}@{commit_of(pushed)}"
    assert re.fullmatch(rf"hf://{repo}@[0-9a-f]{{40}}", version["provenance"]["source"])
    assert version["provenance"]["hf_endpoint"] == source.endpoint
    assert version["base"]["sha"] == source.base_commit
    assert {f["path"] for f in version["files"]} == ADAPTER_FILES

    again = json.loads(import_(lorareg, source, destination, f"hf://{repo}@prod", f"{repo}:prod").stdout)
    assert again["created"] is False and again["digest"] == pushed["digest"]
    assert not any(lorareg.scratch.iterdir())  # the downloads are gone, and the HF cache was never used
    assert not lorareg.hf_cache.exists() and not (lorareg.root / "hf-home").exists()


def test_import_refuses_an_unregistered_base_saying_how_to_register_it(
    source: Source, destination: LiveServer, bot: str, lorareg: Cli
) -> None:
    refused = import_(lorareg, source, destination, f"hf://{bot}@prod", bot, check=1)
    command = f"lorareg base register --hf {source.base_repo} --revision {source.base_commit}"
    assert f"{command} --endpoint {source.endpoint}" in refused.stderr
    assert destination.http.get(f"/api/v1/repos/{bot}").status_code == 404
    assert not any(lorareg.scratch.iterdir())

    lorareg(destination, *command.split()[1:], "--endpoint", source.endpoint)
    import_(lorareg, source, destination, f"hf://{bot}@prod", bot)  # the suggested command was enough


def test_import_errors_say_what_to_fix(
    source: Source, destination: LiveServer, bot: str, lorareg: Cli
) -> None:
    target = f"{source.namespace}/imported"
    for uri, message in [
        ("not-a-uri/x", "hf://ORG/NAME[@REVISION]"),
        ("hf://not a repo!", "is not a Hub repository id"),
        ("hf://nobody/nothing", "no repository nobody/nothing"),
        (f"hf://{bot}@v9", "has no revision 'v9'"),
        (f"hf://{source.base_repo}", "has no adapter_config.json"),
    ]:
        refused = import_(lorareg, source, destination, uri, target, check=1)
        assert message in json.loads(refused.stderr)["error"]["message"], (uri, refused.stderr)
    down = lorareg(
        destination, "import", f"hf://{bot}", target, "--endpoint", "http://127.0.0.1:9/hf", check=3
    )
    assert "cannot reach http://127.0.0.1:9/hf" in down.stderr
    assert destination.http.get("/api/v1/repos").json() == []
    assert not any(lorareg.scratch.iterdir())


def test_base_register_errors_say_what_to_fix(source: Source, destination: LiveServer, lorareg: Cli) -> None:
    hub = ("--endpoint", source.endpoint)
    for args, message in [
        (("--hf", "bad//id", *hub), "is not a Hub repository id"),
        (("--hf", "nobody/nothing", *hub), "no repository nobody/nothing"),
        (("--hf", source.base_repo, "--revision", "v9", *hub), "has no revision 'v9'"),
    ]:
        refused = lorareg(destination, "base", "register", *args, check=1)
        assert message in refused.stderr, (args, refused.stderr)
    usage = lorareg(destination, "base", "register", str(lorareg.root), "--hf", source.base_repo, check=2)
    assert "DIRECTORY or --hf" in usage.stderr
    assert destination.http.get("/api/v1/bases").json() == []


def test_other_commands_do_not_import_huggingface_hub() -> None:
    """huggingface_hub adds ~0.3 s to a start: only ``import`` and ``base register --hf`` load it."""
    code = (
        "import cli.main\nprint([m for m in sys.modules if m.split('.')[0] in ('huggingface_hub', 'httpx2')])"
    )
    done = import_without((), code)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
