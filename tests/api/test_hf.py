"""The Hugging Face Hub protocol under ``/hf``, driven by the real clients: huggingface_hub and PEFT."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.conftest import LiveServer, TinyBase
from tests.helpers import push, register_base


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Let huggingface_hub make requests (the suite runs offline); yield a private cache directory."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    yield tmp_path / "hf-cache"


@pytest.fixture
def pushed(server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> list[dict]:
    """``repo`` with #1 tagged v1 and #2 tagged v2 (and latest)."""
    register_base(server.http, tiny_base.path)
    made = [
        push(server.http, repo, adapter_factory(seed=seed), base=tiny_base.content_digest, tags=[tag])
        for seed, tag in ((1, "v1"), (2, "v2"))
    ]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    return [r.json() for r in made]


def _hashes(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and ".cache" not in p.parts
    }


def _download(server: LiveServer, repo: str, revision: str, cache: Path) -> Path:
    path = huggingface_hub.snapshot_download(
        repo, revision=revision, endpoint=f"{server.url}/hf", cache_dir=cache, token=False
    )
    return Path(path)


def test_model_info_and_tree(server: LiveServer, pushed: list[dict], repo: str, online: Path) -> None:
    api = huggingface_hub.HfApi(endpoint=f"{server.url}/hf", token=False)
    info = api.model_info(repo, revision="v1")
    assert info.id == repo and info.sha == pushed[0]["digest"].removeprefix("sha256:")[:40]
    assert info.private is True  # a repository is private until made public (`lorareg repo visibility`)
    assert {s.rfilename for s in info.siblings} >= {"adapter_config.json", "adapter_model.safetensors"}
    assert api.model_info(repo).sha == pushed[1]["digest"].removeprefix("sha256:")[:40]  # main = latest
    files = {f.path: f for f in api.list_repo_tree(repo, revision=info.sha, recursive=True)}
    weights = files["adapter_model.safetensors"]
    assert weights.lfs is not None and weights.lfs.sha256 == weights.blob_id and weights.size > 0


@pytest.mark.parametrize("which", ["tag", "number", "sha", "digest"])
def test_snapshot_download_is_byte_identical(
    server: LiveServer, pushed: list[dict], adapter_factory, repo: str, online: Path, which: str
) -> None:
    digest = pushed[0]["digest"].removeprefix("sha256:")
    revision = {"tag": "v1", "number": "#1", "sha": digest[:40], "digest": f"sha256:{digest}"}[which]
    path = _download(server, repo, revision, online)
    assert _hashes(path) == _hashes(adapter_factory(seed=1))


def test_hf_hub_download_and_range(
    server: LiveServer, pushed: list[dict], adapter_factory, repo: str, online: Path
) -> None:
    path = huggingface_hub.hf_hub_download(
        repo, "adapter_config.json", revision="v2", endpoint=f"{server.url}/hf", cache_dir=online, token=False
    )
    local = adapter_factory(seed=2) / "adapter_config.json"
    assert Path(path).read_bytes() == local.read_bytes()
    part = server.http.get(f"/hf/{repo}/resolve/v2/adapter_config.json", headers={"Range": "bytes=2-9"})
    assert part.status_code == 206 and part.content == local.read_bytes()[2:10]
    head = server.http.head(f"/hf/{repo}/resolve/v2/adapter_config.json")
    digest = pushed[1]["digest"].removeprefix("sha256:")
    assert head.headers["X-Repo-Commit"] == digest[:40]
    assert head.headers["ETag"] == f'"{hashlib.sha256(local.read_bytes()).hexdigest()}"'
    assert int(head.headers["Content-Length"]) == int(head.headers["X-Linked-Size"]) == local.stat().st_size


def test_errors_carry_hub_error_codes(
    server: LiveServer, pushed: list[dict], repo: str, online: Path
) -> None:
    http = server.http
    cases = [
        ("/hf/api/models/nobody/nothing/revision/v1", "RepoNotFound"),
        (f"/hf/api/models/{repo}/revision/v9", "RevisionNotFound"),
        (f"/hf/api/models/{repo}/tree/v9?recursive=true", "RevisionNotFound"),
        ("/hf/nobody/nothing/resolve/main/adapter_config.json", "RepoNotFound"),
        (f"/hf/{repo}/resolve/v9/adapter_config.json", "RevisionNotFound"),
        (f"/hf/{repo}/resolve/v1/missing.json", "EntryNotFound"),
    ]
    for url, code in cases:
        got = http.get(url)
        assert (got.status_code, got.headers.get("X-Error-Code")) == (404, code), url
        assert got.headers["X-Error-Message"]
    head = http.head(f"/hf/{repo}/resolve/v1/missing.json")
    assert head.status_code == 404 and head.headers["X-Error-Code"] == "EntryNotFound"
    assert head.content == b"" and head.headers.get("content-length", "0") == "0"
    endpoint = f"{server.url}/hf"
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.snapshot_download("nobody/nothing", endpoint=endpoint, cache_dir=online, token=False)
    with pytest.raises(RevisionNotFoundError):
        huggingface_hub.snapshot_download(
            repo, revision="v9", endpoint=endpoint, cache_dir=online, token=False
        )
    with pytest.raises(EntryNotFoundError):
        huggingface_hub.hf_hub_download(
            repo, "missing.json", revision="v1", endpoint=endpoint, cache_dir=online, token=False
        )


def test_yanked_tag_is_revision_not_found(server: LiveServer, pushed: list[dict], repo: str) -> None:
    yanked = server.http.post(f"/api/v1/repos/{repo}/versions/v1/yank", json={"reason": "bad data"})
    assert yanked.status_code == 200, yanked.text
    got = server.http.get(f"/hf/api/models/{repo}/revision/v1")
    assert got.headers["X-Error-Code"] == "RevisionNotFound" and "yanked" in got.headers["X-Error-Message"]
    sha = pushed[0]["digest"].removeprefix("sha256:")[:40]
    assert server.http.get(f"/hf/api/models/{repo}/revision/{sha}").status_code == 200  # by digest: yes


_PEFT_SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir, adapter_dir, repo, revision = sys.argv[1:]
    ids = torch.arange(16).reshape(2, 8)

    def logits(source, **kwargs):
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        model = PeftModel.from_pretrained(base, source, **kwargs).eval()
        with torch.no_grad():
            return model(ids).logits

    remote, local = logits(repo, revision=revision), logits(adapter_dir)
    assert torch.equal(remote, local), (remote - local).abs().max()
    print("OK", remote.abs().sum().item())
    """
)


def test_peft_from_pretrained_through_the_endpoint(
    server: LiveServer, tiny_base: TinyBase, pushed: list[dict], adapter_factory, repo: str, tmp_path: Path
) -> None:
    """PEFT reads HF_ENDPOINT when huggingface_hub is imported, so it runs in a child process."""
    env = {
        **os.environ,
        "HF_ENDPOINT": f"{server.url}/hf",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    env.pop("HF_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-c", _PEFT_SCRIPT, str(tiny_base.path), str(adapter_factory(seed=2)), repo, "v2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK"), json.dumps(result.stdout)
