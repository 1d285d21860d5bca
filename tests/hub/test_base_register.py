"""``lorareg base register --hf``: from a local HF cache laid out by huggingface_hub itself (offline),
and from a sharded repository by HTTP range reads of its safetensors headers only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants
from make_tiny_adapter import make_base

from registry.adapters.base_manifest import INDEX_FILE, read_base_manifest
from tests.conftest import LiveServer, TinyBase
from tests.helpers import register_base
from tests.hub.conftest import Cli, Source, commit_of, push_version, run_registry
from tests.hub.proxy import CountingProxy
from tests.s3_servers import S3Server


@pytest.fixture
def proxies() -> Iterator[list[CountingProxy]]:
    opened: list[CountingProxy] = []
    yield opened
    for proxy in opened:
        proxy.close()


def open_proxy(proxies: list[CountingProxy], upstream: str) -> CountingProxy:
    proxy = CountingProxy(upstream)
    proxies.append(proxy)
    return proxy


def populate_cache(monkeypatch: pytest.MonkeyPatch, endpoint: str, repo: str, cache: Path) -> Path:
    """``snapshot_download`` the repository into ``cache``, the way any huggingface_hub user would."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    return Path(huggingface_hub.snapshot_download(repo, endpoint=endpoint, cache_dir=cache, token=False))


def test_register_from_the_hf_cache_offline(
    source: Source,
    destination: LiveServer,
    tiny_base: TinyBase,
    lorareg: Cli,
    proxies: list[CountingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    filling = open_proxy(proxies, source.server.url)
    populate_cache(monkeypatch, f"{filling.url}/hf", source.base_repo, lorareg.hf_cache)
    filling.close()  # the Hub is unreachable from now on

    got = lorareg.register_hf(destination, source.base_repo, f"{filling.url}/hf", offline=True)
    assert got["created"] is True and got["name"] == source.base_repo
    assert got["hf"] == {
        "repo": source.base_repo,
        "revision": "main",
        "commit": source.base_commit,
        "bytes_fetched": 0,
    }
    assert got["content_digest"] == tiny_base.content_digest  # what the base's directory gives
    assert set(got["shas"]) == {tiny_base.content_digest, source.base_commit}
    for sha in (source.base_commit, tiny_base.content_digest):
        found = destination.http.get(f"/api/v1/bases/{sha}")
        assert found.status_code == 200 and found.json()["hf_revisions"] == [source.base_commit]
    by_directory = lorareg.json(destination, "base", "register", str(tiny_base.path), "--name", "local")
    assert by_directory["created"] is False and by_directory["content_digest"] == got["content_digest"]

    # Online, the revision is resolved on the Hub, but the cached headers are not fetched again.
    watching = open_proxy(proxies, source.server.url)
    again = lorareg.register_hf(destination, source.base_repo, f"{watching.url}/hf")
    assert again["hf"]["commit"] == source.base_commit and again["hf"]["bytes_fetched"] == 0
    paths = [r.path.split("?")[0] for r in watching.requests]
    assert paths == [f"/hf/api/models/{source.base_repo}/revision/main"]


def test_register_offline_needs_the_revision_cached(
    source: Source, destination: LiveServer, lorareg: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = lorareg(destination, "base", "register", "--hf", source.base_repo, offline=True, check=1)
    assert "not in the local HF cache" in refused.stderr and "HF_HUB_OFFLINE" in refused.stderr
    populate_cache(monkeypatch, source.endpoint, source.base_repo, lorareg.hf_cache)
    other = lorareg(
        destination, "base", "register", "--hf", source.base_repo, "--revision", "v9", offline=True, check=1
    )
    assert f"{source.base_repo}@v9 is not in the local HF cache" in other.stderr
    assert destination.http.get("/api/v1/bases").json() == []


def test_register_offline_refuses_a_partial_snapshot(
    source: Source, destination: LiveServer, lorareg: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = populate_cache(monkeypatch, source.endpoint, source.base_repo, lorareg.hf_cache)
    (snapshot / "model.safetensors").unlink()  # the cached file list still names it
    refused = lorareg(destination, "base", "register", "--hf", source.base_repo, offline=True, check=1)
    assert "model.safetensors of" in refused.stderr and "not in the local HF cache" in refused.stderr
    assert destination.http.get("/api/v1/bases").json() == []


def test_unreadable_header_in_the_cache_is_refused(
    source: Source, destination: LiveServer, lorareg: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = populate_cache(monkeypatch, source.endpoint, source.base_repo, lorareg.hf_cache)
    blob = (snapshot / "model.safetensors").resolve()
    blob.chmod(0o644)
    blob.write_bytes(b"\xff" * 8 + b"garbage")
    refused = lorareg(destination, "base", "register", "--hf", source.base_repo, offline=True, check=1)
    assert "model.safetensors" in refused.stderr and "header" in refused.stderr
    assert destination.http.get("/api/v1/bases").json() == []


@pytest.fixture(scope="module")
def sharded_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with ~9.7 MB of weights in six shards and model.safetensors.index.json."""
    path = tmp_path_factory.mktemp("sharded-base")
    make_base(path, seed=11, hidden=256, layers=4, max_shard_size="2MB")
    return path


def weight_bytes(base: Path) -> int:
    shards = [p for p in base.iterdir() if p.suffix == ".safetensors"]
    assert len(shards) >= 2 and (base / INDEX_FILE).is_file()
    return sum(p.stat().st_size for p in shards)


def test_sharded_base_by_range_reads(
    server: LiveServer, sharded_base: Path, lorareg: Cli, proxies: list[CountingProxy], repo: str
) -> None:
    shards = sorted(p for p in sharded_base.iterdir() if p.suffix == ".safetensors")
    weights = weight_bytes(sharded_base)
    digest = register_base(server.http, sharded_base, name="sharded")["content_digest"]
    commit = commit_of(push_version(server, repo, sharded_base, kind="model", base=digest))

    proxy = open_proxy(proxies, server.url)
    got = lorareg.register_hf(server, repo, f"{proxy.url}/hf")
    assert got["content_digest"] == digest == read_base_manifest(sharded_base).content_digest
    assert got["hf"]["commit"] == commit and commit in got["hf_revisions"]
    assert server.http.get(f"/api/v1/bases/{commit}").json()["content_digest"] == digest

    read = proxy.body_bytes
    print(f"\nrange reads: {read} bytes relayed for {weights} weight bytes ({read / weights:.3%})")
    assert 0 < got["hf"]["bytes_fetched"] <= read < weights / 100
    shard_reads = [r for r in proxy.requests if r.path.endswith(".safetensors")]
    assert {r.path.rsplit("/", 1)[1] for r in shard_reads} == {p.name for p in shards}
    assert all(r.method == "GET" and r.range and r.range.startswith("bytes=") for r in shard_reads)
    assert not list(lorareg.hf_cache.rglob("*.safetensors"))  # nothing downloaded into the cache either


def test_range_reads_follow_redirects_to_object_storage(
    moto_s3: S3Server, sharded_base: Path, lorareg: Cli, proxies: list[CountingProxy], tmp_path: Path
) -> None:
    """On S3, /hf answers GETs with a 307 to a presigned URL: the range requests follow it."""
    blobs = {"blob_url": moto_s3.blob_url("hub"), "presign_uploads": False, **moto_s3.settings_overrides()}
    with run_registry(tmp_path / "s3-source", **blobs) as hub:
        digest = register_base(hub.http, sharded_base, name="sharded")["content_digest"]
        commit = commit_of(push_version(hub, "acme/sharded", sharded_base, kind="model", base=digest))
        proxy = open_proxy(proxies, hub.url)
        got = lorareg.register_hf(hub, "acme/sharded", f"{proxy.url}/hf")
    assert got["content_digest"] == digest and got["hf"]["commit"] == commit
    shard_reads = [r for r in proxy.requests if r.path.endswith(".safetensors")]
    assert shard_reads and {r.status for r in shard_reads} == {307}
    assert 0 < got["hf"]["bytes_fetched"] < weight_bytes(sharded_base) / 100


def test_model_info_with_files_metadata(
    source: Source, tiny_base: TinyBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``files_metadata=True`` (``?blobs=True``) gives each LFS file's sha256, as the Hub does."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    api = huggingface_hub.HfApi(endpoint=source.endpoint, token=False)
    siblings = {s.rfilename: s for s in api.model_info(source.base_repo, files_metadata=True).siblings}
    weights, config = siblings["model.safetensors"], siblings["config.json"]
    expected = read_base_manifest(tiny_base.path).files["model.safetensors"]
    assert weights.lfs is not None and weights.lfs.sha256 == weights.blob_id == expected
    assert weights.lfs.size == weights.size == (tiny_base.path / "model.safetensors").stat().st_size
    assert config.lfs is None and config.blob_id
    assert all(s.lfs is None and s.blob_id is None for s in api.model_info(source.base_repo).siblings)
