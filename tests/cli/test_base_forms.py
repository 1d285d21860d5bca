"""``--base`` takes the same forms in push, pull, ls and base show (the server owns the rule); a push that
needs ``--base`` says which bases fit; ``base register`` says what it did; and push refuses a broken
safetensors file before uploading a byte, with the server's message. The real CLI against a live server."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer, TinyBase
from tests.helpers import push as api_push


@dataclass(frozen=True)
class Twin:
    """A base of its own name, with the tiny base's shapes (its adapters fit) but other weight bytes."""

    name: str
    path: Path
    digest: str
    revision: str


def twin_directory(tiny_base: TinyBase, directory: Path) -> Path:
    shutil.copytree(tiny_base.path, directory)
    weights = directory / "model.safetensors"
    save_file(load_file(weights), weights, metadata={"format": "pt", "twin": uuid.uuid4().hex})
    return directory


@pytest.fixture
def make_twin(server: LiveServer, tiny_base: TinyBase, tmp_path: Path) -> Callable[..., Twin]:
    def make(name: str | None = None, revision: str | None = None) -> Twin:
        name = name or f"twin-{uuid.uuid4().hex[:8]}"
        revision = revision or uuid.uuid4().hex + uuid.uuid4().hex[:8]
        path = twin_directory(tiny_base, tmp_path / uuid.uuid4().hex)
        registered = run_json(server, "base", "register", str(path), "--name", name, "--revision", revision)
        return Twin(name, path, registered["content_digest"], revision)

    return make


def adapter_naming(adapter: Path, base_name: str, directory: Path) -> Path:
    """A copy of ``adapter`` whose adapter_config.json names ``base_name`` (and no revision)."""
    shutil.copytree(adapter, directory)
    config = json.loads((directory / "adapter_config.json").read_text())
    (directory / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": base_name})
    )
    return directory


def stored_blobs(server: LiveServer) -> int:
    return sum(1 for path in (server.settings.home / "blobs").rglob("*") if path.is_file())


def test_every_form_names_the_base_in_push_pull_ls_and_show(
    server: LiveServer, make_twin: Callable[..., Twin], adapter_factory, repo: str, tmp_path: Path
) -> None:
    twin = make_twin()
    adapter = adapter_naming(adapter_factory(seed=41), twin.name, tmp_path / "adapter")
    pushed = run_json(server, "push", str(adapter), repo)  # no --base: the config names one base
    assert run_json(server, "show", repo)["base"]["content_digest"] == twin.digest
    forms = [
        twin.name,
        f"{twin.name}@{twin.revision}",
        f"{twin.name}@{twin.digest[:12]}",
        twin.revision,
        twin.digest,
        f"sha256:{twin.digest}",
        twin.digest[:12],
        twin.revision[:12].upper(),
    ]
    for i, form in enumerate(forms):  # every form in pull; push, ls and base show take turns
        pulled = run_json(server, "pull", repo, "-o", str(tmp_path / "pulled"), "--base", form)
        assert pulled["digest"] == pushed["digest"], form
        if i % 3 == 0:
            again = run_json(server, "push", str(adapter), repo, "--base", form)
            assert (again["created"], again["digest"]) == (False, pushed["digest"]), form
        elif i % 3 == 1:
            assert repo in [r["id"] for r in run_json(server, "ls", "--base", form)], form
        else:
            assert run_json(server, "base", "show", form)["content_digest"] == twin.digest, form
    listed = next(
        line for line in run(server, "base", "ls").stdout.splitlines() if f"  {twin.name}  " in line
    )
    assert run_json(server, "base", "show", listed.split()[0])["content_digest"] == twin.digest


def test_a_name_that_is_not_the_bases_is_refused(
    server: LiveServer, make_twin: Callable[..., Twin], adapter_factory, repo: str, tmp_path: Path
) -> None:
    twin = make_twin()
    wrong = f"tiny-llama@{twin.revision}"
    refused = run(server, "push", str(adapter_factory(seed=41)), repo, "--base", wrong, check=1)
    assert f"is named '{twin.name}', not 'tiny-llama'" in refused.stderr
    assert f"--base {twin.name}@{twin.revision}" in refused.stderr
    assert "does not exist" in run(server, "show", repo, check=1).stderr  # nothing recorded
    pulled = run(server, "pull", "acme/anything", "-o", str(tmp_path / "x"), "--base", wrong, check=1)
    assert f"is named '{twin.name}', not 'tiny-llama'" in pulled.stderr


def test_an_ambiguous_prefix_lists_the_candidates(server: LiveServer, make_twin: Callable[..., Twin]) -> None:
    prefix = uuid.uuid4().hex[:12]
    first, second = (make_twin(revision=prefix + digit * 28) for digit in "12")
    refused = run(server, "base", "show", prefix, check=1)
    for twin in (first, second):
        assert f"--base {twin.name}@{twin.revision}" in refused.stderr
    assert "ambiguous" in refused.stderr
    assert run_json(server, "base", "show", first.revision[:13])["name"] == first.name


def test_a_missing_base_lists_the_bases_that_fit(
    server: LiveServer,
    make_twin: Callable[..., Twin],
    other_base: TinyBase,
    adapter_factory,
    repo: str,
    tmp_path: Path,
) -> None:
    run(server, "base", "register", str(other_base.path), "--name", "other-llama")  # does not fit
    name = f"twins-{uuid.uuid4().hex[:8]}"
    twins = [make_twin(name=name) for _ in range(2)]
    adapter = adapter_naming(adapter_factory(seed=41), name, tmp_path / "adapter")
    refused = run(server, "push", str(adapter), repo, check=1)
    assert f"adapter_config.json has no revision, and 2 base models are named '{name}'" in refused.stderr
    for twin in twins:
        assert f"--base {name}@{twin.digest}" in refused.stderr
    assert other_base.content_digest not in refused.stderr

    unknown = adapter_naming(adapter_factory(seed=41), "nobody-knows", tmp_path / "unknown")
    refused = run(server, "push", str(unknown), repo, check=1)
    assert "no registered base model is named 'nobody-knows'" in refused.stderr
    assert "Registered bases that fit this adapter's tensors: --base " in refused.stderr
    assert other_base.content_digest not in refused.stderr


def test_register_says_what_it_did(server: LiveServer, tiny_base: TinyBase, tmp_path: Path) -> None:
    path = twin_directory(tiny_base, tmp_path / "twin")
    name = f"twin-{uuid.uuid4().hex[:8]}"
    first = run(server, "base", "register", str(path), "--name", name).stdout
    assert first.startswith(f"registered {name}: ")

    with_weights = run_json(server, "base", "register", str(path), "--name", name, "--with-weights")
    assert with_weights["added"] == ["files"] and with_weights["stored_files"] == 3
    weights_size = (path / "model.safetensors").stat().st_size
    assert with_weights["uploaded"]["files"] >= 1 and with_weights["uploaded"]["bytes"] >= weights_size

    again = run(server, "base", "register", str(path), "--name", name, "--with-weights").stdout
    assert again.startswith(f"nothing new: {name} was registered already with its files")
    revision = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    added = run(server, "base", "register", str(path), "--name", name, "--revision", revision).stdout
    assert added.startswith(f"{name} was registered already: added revision {revision}")
    assert run_json(server, "base", "show", revision)["name"] == name


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def not_json(path: Path) -> None:
    header = b"{not json}"
    path.write_bytes(len(header).to_bytes(8, "little") + header)


@pytest.mark.parametrize("breaking", [truncated, not_json])
def test_push_refuses_broken_safetensors_before_uploading(
    server: LiveServer,
    tiny_base: TinyBase,
    adapter_factory,
    repo: str,
    tmp_path: Path,
    breaking: Callable[[Path], None],
) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(adapter_factory(seed=41), adapter)
    breaking(adapter / "adapter_model.safetensors")
    before = stored_blobs(server)
    refused = run(server, "push", str(adapter), repo, "--base", tiny_base.content_digest, check=1)
    assert stored_blobs(server) == before  # not one byte uploaded
    server_says = api_push(server.http, repo, adapter, base=tiny_base.content_digest)
    assert server_says.status_code == 422 and server_says.json()["error"]["code"] == "invalid_safetensors"
    assert refused.stderr == f"Error: {server_says.json()['error']['message']}\n"


def test_an_impossible_base_is_refused_before_uploading(
    server: LiveServer, adapter_factory, repo: str, tmp_path: Path
) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(adapter_factory(seed=41), adapter)
    (adapter / "README.md").write_text(f"never uploaded {uuid.uuid4()}")
    before = stored_blobs(server)
    refused = run(server, "push", str(adapter), repo, "--base", "tiny-llama@main", check=1)
    assert stored_blobs(server) == before
    server_says = server.http.get("/api/v1/bases/tiny-llama@main")
    assert server_says.status_code == 400
    assert refused.stderr == f"Error: {server_says.json()['error']['message']}\n"
