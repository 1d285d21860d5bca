"""``lorareg pull --watch`` following a tag, and pulls through the client's blob cache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

from tests.cli_runner import LOREG, lorareg
from tests.conftest import LiveServer, TinyBase
from tests.helpers import push, register_base

# Seeds no other test uses: the cache test deletes these adapters' weight blobs from the server.
WATCH_SEEDS = (4101, 4102)
CACHE_SEEDS = (4201, 4202)
WEIGHTS = "adapter_model.safetensors"


def env(server: LiveServer, cache: Path) -> dict[str, str]:
    return {**os.environ, "LOREG_URL": server.url, "LOREG_CACHE": str(cache)}


def run(server: LiveServer, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return lorareg(*args, env=env(server, cache))


def push_version(server: LiveServer, tiny_base: TinyBase, repo: str, adapter: Path, **body) -> dict:
    response = push(server.http, repo, adapter, base=tiny_base.content_digest, **body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_watch_follows_a_tag_move(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    register_base(server.http, tiny_base.path)
    old_dir, new_dir = (adapter_factory(seed=s) for s in WATCH_SEEDS)
    first = push_version(server, tiny_base, repo, old_dir, tags=["prod"])
    second = push_version(server, tiny_base, repo, new_dir)
    out = tmp_path / "live"
    process = subprocess.Popen(
        [LOREG, "--json", "pull", f"{repo}:prod", "--watch", "--watch-count", "1", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(server, tmp_path / "cache"),
    )
    try:
        assert process.stdout is not None
        pulled = json.loads(process.stdout.readline())
        assert pulled["event"] == "pulled" and pulled["digest"] == first["digest"]
        assert out.is_symlink() and (out / WEIGHTS).read_bytes() == (old_dir / WEIGHTS).read_bytes()
        time.sleep(0.5)  # the client is now waiting on the watch
        moved = server.http.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": second["digest"]})
        assert moved.status_code == 200, moved.text
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    updated = json.loads(stdout.strip().splitlines()[-1])
    assert updated["event"] == "updated" and updated["digest"] == second["digest"]
    for name in ("adapter_config.json", WEIGHTS):
        assert (out / name).read_bytes() == (new_dir / name).read_bytes()
    versions = tmp_path / "live.versions"
    assert out.resolve() == (versions / second["digest"].removeprefix("sha256:")).resolve()
    assert not [p for p in versions.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_watch_refuses_a_digest_ref(server: LiveServer, repo: str, tmp_path: Path) -> None:
    done = run(server, tmp_path / "cache", "pull", f"{repo}@{'a' * 64}", "--watch", "-o", str(tmp_path))
    assert done.returncode == 2 and "tag" in done.stderr


def test_second_pull_reads_from_the_cache(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    register_base(server.http, tiny_base.path)
    cached_dir, uncached_dir = (adapter_factory(seed=s) for s in CACHE_SEEDS)
    cached = push_version(server, tiny_base, repo, cached_dir)
    uncached = push_version(server, tiny_base, repo, uncached_dir)
    cache = tmp_path / "cache"

    first = run(server, cache, "--json", "pull", f"{repo}@{cached['digest']}", "-o", str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    pulled = json.loads(first.stdout)
    assert pulled["fetched_files"] == len(pulled["files"]) > 0

    def weights_digest(version: dict) -> str:
        files = server.http.get(f"/api/v1/repos/{repo}/versions/{version['digest']}").json()["files"]
        return next(f["digest"] for f in files if f["path"] == WEIGHTS).removeprefix("sha256:")

    # Only the weights: they are unique to these seeds, while adapter_config.json is shared with
    # other tests' adapters.
    for version in (cached, uncached):
        digest = weights_digest(version)
        (server.settings.home / "blobs" / "sha256" / digest[:2] / digest).unlink()

    out = tmp_path / "b"
    second = run(server, cache, "--json", "pull", f"{repo}@{cached['digest']}", "-o", str(out))
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["fetched_files"] == 0
    assert (out / WEIGHTS).read_bytes() == (cached_dir / WEIGHTS).read_bytes()
    digest = weights_digest(cached)
    blob = cache / "blobs" / "sha256" / digest[:2] / digest
    assert os.stat(out / WEIGHTS).st_ino == os.stat(blob).st_ino
    assert not os.stat(blob).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)  # read-only

    missing = run(server, cache, "pull", f"{repo}@{uncached['digest']}", "-o", str(tmp_path / "c"))
    assert missing.returncode != 0
    assert not (tmp_path / "c").exists()
