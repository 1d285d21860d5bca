"""A hostile registry: a real HTTP server answering the routes ``pull``, ``pull --watch`` and the vLLM
resolver call with file lists that would write outside the output directory, and with bytes that do not
match their digest. Each is refused, the offending path named, before anything is written anywhere."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from cli.cache import BlobCache
from cli.client import ApiError, RegistryClient
from cli.vllm_resolver import LoraregResolver
from registry.errors import InvalidInput
from tests.cli.test_vllm_resolver import LoRARequest, vllm_stand_in  # noqa: F401  (a fixture)
from tests.cli_runner import lorareg as run_cli

CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
GOOD = {CONFIG: b'{"r": 8}', WEIGHTS: b"the adapter's weights"}
HOSTILE_PATHS = ["../escape", "/abs/x", "a\\b", "x\x00y", "C:/x", "sub/../../x", ""]
CLAIMED, SENT = b"the weights the digest names", b"other bytes sent instead"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(path: str, data: bytes) -> dict:
    """A ``FileOut`` (registry/api/schemas.py)."""
    return {
        "path": path,
        "digest": f"sha256:{sha(data)}",
        "size": len(data),
        "url": f"/api/v1/blobs/sha256:{sha(data)}",
    }


def version(name: str, files: list[dict]) -> dict:
    """A ``ResolvedVersionOut`` of ``evil/<name>``, its digest made from its file list."""
    return {
        "repo": f"evil/{name}",
        "number": 1,
        "digest": f"sha256:{sha(json.dumps(files).encode())}",
        "yanked": False,
        "created_at": "2025-01-01T00:00:00Z",
        "provenance": {},
        "base": {"name": "tiny-llama", "sha": "0" * 40, "content_digest": "0" * 64},
        "config": {},
        "files": files,
    }


def good_files() -> list[dict]:
    return [entry(path, data) for path, data in GOOD.items()]


@dataclass
class HostileRegistry:
    """Serves ``resolve`` (a tag: by repository name; a digest: by digest), the tag watch (``moves``: the
    digest each repository's tag moves to) and blobs; records every path requested."""

    by_name: dict[str, dict] = field(default_factory=dict)
    by_digest: dict[str, dict] = field(default_factory=dict)
    moves: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, name: str, files: list[dict], *, tagged: bool = True) -> dict:
        answer = version(name, files)
        if tagged:
            self.by_name[name] = answer
        self.by_digest[answer["digest"]] = answer
        return answer

    def blob_requests(self) -> list[str]:
        return [path for path in self.requests if path.startswith("/api/v1/blobs/")]

    def start(self) -> ThreadingHTTPServer:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                path = unquote(url.path)
                registry.requests.append(path)
                if m := re.fullmatch(r"/api/v1/repos/evil/([^/]+)/resolve/(.+)", path):
                    name, ref = m.groups()
                    found = (
                        registry.by_digest.get(ref)
                        if ref.startswith("sha256:")
                        else registry.by_name.get(name)
                    )
                    return self.answer(200, json.dumps(found).encode()) if found else self.answer(404, b"{}")
                if m := re.fullmatch(r"/api/v1/repos/evil/([^/]+)/tags/[^/]+/watch", path):
                    moved = registry.moves.get(m.group(1))
                    if moved is None or parse_qs(url.query).get("since") == [moved]:
                        return self.answer(304, b"")
                    return self.answer(200, json.dumps({"digest": moved}).encode())
                if m := re.fullmatch(r"/api/v1/blobs/sha256:([0-9a-f]{64})", path):
                    return self.answer(200, registry.blobs[m.group(1)])
                return self.answer(404, b"{}")

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                if status != 304:
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@dataclass
class Hostile:
    registry: HostileRegistry
    url: str
    good: dict
    mismatch: dict
    hostile: dict[str, dict]  # by hostile path: good files first, then the hostile one
    through_link: dict  # files under sub/: harmless unless sub is a symlink out of the directory
    moving: dict  # tagged good; its tag moves to a version with a hostile path


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    registry = HostileRegistry()
    for data in (*GOOD.values(), b"evil"):
        registry.blobs[sha(data)] = data
    registry.blobs[sha(CLAIMED)] = SENT
    hostile = {
        path: registry.add(f"bad{i}", [*good_files(), entry(path, b"evil")])
        for i, path in enumerate(HOSTILE_PATHS)
    }
    moving = registry.add("moving", good_files())
    registry.moves["moving"] = registry.add(
        "moved", [*good_files(), entry("../escape", b"evil")], tagged=False
    )["digest"]
    server = registry.start()
    try:
        yield Hostile(
            registry=registry,
            url=f"http://127.0.0.1:{server.server_address[1]}",
            good=registry.add("good", good_files()),
            mismatch=registry.add("mismatch", [entry(CONFIG, GOOD[CONFIG]), entry(WEIGHTS, CLAIMED)]),
            hostile=hostile,
            through_link=registry.add("linked", [*good_files(), entry("sub/x", b"evil")]),
            moving=moving,
        )
    finally:
        server.shutdown()
        server.server_close()


def tree(root: Path) -> set[str]:
    """Every file, directory and link under ``root`` (links not followed)."""
    found = set()
    for top, dirs, files in os.walk(root):
        found |= {os.path.relpath(os.path.join(top, name), root) for name in (*dirs, *files)}
    return found


def lorareg(hostile: Hostile, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI against the hostile server, run in ``tmp_path/work``, caching in ``tmp_path/cache``."""
    env = {**os.environ, "LOREG_URL": hostile.url, "LOREG_CACHE": str(tmp_path / "cache")}
    env.pop("LOREG_TOKEN", None)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return run_cli(*args, env=env, cwd=work)


def cache_holds_only_verified_blobs(cache: Path) -> None:
    for path in (p for p in cache.rglob("*") if p.is_file()):
        assert path.parent.parent.name == "sha256" and sha(path.read_bytes()) == path.name, path


def test_a_good_version_pulls(hostile: Hostile, tmp_path: Path) -> None:
    """The control: the hostile server speaks the protocol, so the refusals below are the checks'."""
    out = tmp_path / "work" / "out"
    done = lorareg(hostile, tmp_path, "pull", "evil/good", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert {name: (out / name).read_bytes() for name in tree(out)} == GOOD


@pytest.mark.parametrize("bad", HOSTILE_PATHS)
def test_pull_refuses_a_hostile_path_and_writes_nothing(hostile: Hostile, tmp_path: Path, bad: str) -> None:
    (tmp_path / "work").mkdir()
    before = tree(tmp_path)
    done = lorareg(
        hostile, tmp_path, "pull", hostile.hostile[bad]["repo"], "-o", str(tmp_path / "work" / "out")
    )
    assert done.returncode == 1, done.stderr
    assert f"invalid file path {bad!r}" in done.stderr and "nothing was written" in done.stderr
    assert tree(tmp_path) == before  # no output, no staging, no cache, nothing beside them
    assert hostile.registry.blob_requests() == []  # the whole list was checked before any download
    assert not Path("/abs/x").exists()


def test_pull_refuses_a_path_through_a_symlink_out_of_the_output(hostile: Hostile, tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "work" / "out", tmp_path / "elsewhere"
    out.mkdir(parents=True)
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    before = tree(tmp_path)
    done = lorareg(hostile, tmp_path, "pull", "evil/linked", "-o", str(out), "--force")  # out is not empty
    assert done.returncode == 1, done.stderr
    assert "file path 'sub/x' would be written through a symbolic link" in done.stderr
    assert tree(tmp_path) == before and hostile.registry.blob_requests() == []

    fresh = tmp_path / "work" / "fresh"  # the same version into a directory without the link is fine
    assert lorareg(hostile, tmp_path, "pull", "evil/linked", "-o", str(fresh)).returncode == 0
    assert (fresh / "sub" / "x").read_bytes() == b"evil" and not tree(elsewhere)


def test_pull_refuses_bytes_that_do_not_match_their_digest(hostile: Hostile, tmp_path: Path) -> None:
    out = tmp_path / "work" / "out"
    done = lorareg(hostile, tmp_path, "pull", "evil/mismatch", "-o", str(out))
    assert done.returncode == 3, done.stderr  # the server's fault: exit 3, as client.download reports it
    assert f"downloaded {WEIGHTS} hashes to sha256:{sha(SENT)}, expected sha256:{sha(CLAIMED)}" in done.stderr
    assert tree(tmp_path / "work") == set()  # neither the output nor its staging directory
    cache_holds_only_verified_blobs(tmp_path / "cache")
    assert not BlobCache(tmp_path / "cache").path(sha(CLAIMED)).exists()


# --watch ----------------------------------------------------------------------------------------


def watch(hostile: Hostile, tmp_path: Path, repo: str) -> subprocess.CompletedProcess[str]:
    out = str(tmp_path / "work" / "out")
    return lorareg(
        hostile, tmp_path, "--json", "pull", f"{repo}:prod", "--watch", "--watch-count", "1", "-o", out
    )


def json_error(done: subprocess.CompletedProcess[str]) -> str:
    return json.loads(done.stderr.splitlines()[-1])["error"]["message"]


@pytest.mark.parametrize("bad", HOSTILE_PATHS)
def test_watch_refuses_a_hostile_first_version(hostile: Hostile, tmp_path: Path, bad: str) -> None:
    (tmp_path / "work").mkdir()
    before = tree(tmp_path)
    done = watch(hostile, tmp_path, hostile.hostile[bad]["repo"])
    assert done.returncode == 1, done.stderr
    assert f"invalid file path {bad!r}" in json_error(done)
    assert tree(tmp_path) == before and hostile.registry.blob_requests() == []  # not even out.versions


def test_watch_stops_at_a_hostile_update_keeping_the_good_version(hostile: Hostile, tmp_path: Path) -> None:
    done = watch(hostile, tmp_path, "evil/moving")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout.splitlines()[0])["digest"] == hostile.moving["digest"]
    assert "invalid file path '../escape'" in json_error(done)
    work = tmp_path / "work"
    current = hostile.moving["digest"].removeprefix("sha256:")
    assert (work / "out").resolve() == (work / "out.versions" / current).resolve()
    assert tree(work) == {
        "out",
        "out.versions",
        f"out.versions/{current}",
        *(f"out.versions/{current}/{n}" for n in GOOD),
    }
    assert len(hostile.registry.blob_requests()) == len(GOOD)  # the good version's, nothing of the moved one


def test_watch_refuses_bytes_that_do_not_match_their_digest(hostile: Hostile, tmp_path: Path) -> None:
    done = watch(hostile, tmp_path, "evil/mismatch")
    assert done.returncode == 3 and f"hashes to sha256:{sha(SENT)}" in json_error(done)
    work = tmp_path / "work"
    assert not os.path.lexists(work / "out")
    assert [p for p in work.rglob("*") if not p.is_dir()] == []
    cache_holds_only_verified_blobs(tmp_path / "cache")


# The vLLM resolver ------------------------------------------------------------------------------


def resolver(hostile: Hostile, tmp_path: Path) -> LoraregResolver:
    return LoraregResolver(RegistryClient(hostile.url, progress=False), BlobCache(tmp_path / "cache"))


@pytest.mark.usefixtures("vllm_stand_in")
def test_resolver_materializes_a_good_version(hostile: Hostile, tmp_path: Path) -> None:
    request = asyncio.run(resolver(hostile, tmp_path).resolve_lora("tiny-llama", "evil/good:prod"))
    assert isinstance(request, LoRARequest)
    path = Path(request.lora_path)
    assert path.parent == tmp_path / "cache" / "versions"
    assert {name: (path / name).read_bytes() for name in tree(path)} == GOOD


@pytest.mark.usefixtures("vllm_stand_in")
@pytest.mark.parametrize("bad", HOSTILE_PATHS)
def test_resolver_refuses_a_hostile_path(hostile: Hostile, tmp_path: Path, bad: str) -> None:
    before = tree(tmp_path)
    plugin, name = resolver(hostile, tmp_path), f"{hostile.hostile[bad]['repo']}:prod"
    with pytest.raises(InvalidInput) as refused:
        plugin.fetch("tiny-llama", name)
    assert f"invalid file path {bad!r}" in refused.value.message
    assert asyncio.run(plugin.resolve_lora("tiny-llama", name)) is None  # vLLM gets None, not the error
    assert tree(tmp_path) == before and hostile.registry.blob_requests() == []


@pytest.mark.usefixtures("vllm_stand_in")
def test_resolver_refuses_bytes_that_do_not_match_their_digest(hostile: Hostile, tmp_path: Path) -> None:
    plugin = resolver(hostile, tmp_path)
    with pytest.raises(ApiError) as refused:
        plugin.fetch("tiny-llama", "evil/mismatch:prod")
    assert refused.value.code == "digest_mismatch"
    assert asyncio.run(plugin.resolve_lora("tiny-llama", "evil/mismatch:prod")) is None
    versions = tmp_path / "cache" / "versions"
    assert not versions.exists() or list(versions.iterdir()) == []  # no version, no staging left
    cache_holds_only_verified_blobs(tmp_path / "cache")
