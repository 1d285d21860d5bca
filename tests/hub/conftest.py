"""Fixtures for taking bases and adapters in from a Hub: a lorareg server as the Hub (its ``/hf``
routes), fresh destination registries, and the ``lorareg`` CLI run with a private HF cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from registry.config import Settings
from registry.db import migrate
from tests.cli.test_cli import LOREG
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import push, register_base


@dataclass
class Source:
    """A registry acting as the Hub: the tiny base pushed as the model repository ``base_repo``."""

    server: LiveServer
    namespace: str
    base_repo: str
    base_commit: str  # the HF commit SHA its /hf routes report for base_repo@main

    @property
    def endpoint(self) -> str:
        return f"{self.server.url}/hf"


def push_version(server: LiveServer, repo: str, directory: Path, **body: object) -> dict:
    response = push(server.http, repo, directory, **body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def commit_of(version: dict) -> str:
    """The HF commit SHA lorareg's /hf routes report for a version."""
    return version["digest"].removeprefix("sha256:")[:40]


def adapter_copy(adapter: Path, dest: Path, **config: object) -> Path:
    """A copy of ``adapter`` with ``config`` merged into its adapter_config.json."""
    shutil.copytree(adapter, dest)
    path = dest / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}, indent=2))
    return dest


@pytest.fixture
def source(server: LiveServer, tiny_base: TinyBase) -> Source:
    namespace = f"h{uuid.uuid4().hex[:8]}"
    register_base(server.http, tiny_base.path)
    repo = f"{namespace}/tiny-llama"
    version = push_version(server, repo, tiny_base.path, kind="model", base=tiny_base.content_digest)
    return Source(server=server, namespace=namespace, base_repo=repo, base_commit=commit_of(version))


@contextmanager
def run_registry(home: Path, **settings: object) -> Iterator[LiveServer]:
    """Another lorareg instance on SQLite in ``home`` (blobs there too unless ``settings`` say otherwise)."""
    url = f"sqlite:///{home / 'lorareg.db'}"
    migrate.upgrade(url)
    options = Settings(home=home, database_url=url, max_blob_size=8 * 1024 * 1024, **settings)
    for base_url in start_server(options):
        with httpx.Client(base_url=base_url, timeout=30) as http:
            yield LiveServer(url=base_url, settings=options, http=http)


@pytest.fixture
def destination(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A second, empty lorareg instance."""
    with run_registry(tmp_path_factory.mktemp("destination")) as live:
        yield live


@dataclass
class Cli:
    """``lorareg`` in a subprocess with a private HF home and cache, and a scratch TMPDIR to check
    that nothing is left behind."""

    root: Path

    @property
    def hf_cache(self) -> Path:
        return self.root / "hf-cache"

    @property
    def scratch(self) -> Path:
        return self.root / "tmp"

    def __call__(
        self,
        server: LiveServer,
        *args: str,
        offline: bool = False,
        check: int | None = 0,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "LOREG_HF_"))}
        env.update(
            LOREG_URL=server.url,
            HF_HOME=str(self.root / "hf-home"),
            HF_HUB_CACHE=str(self.hf_cache),
            HF_HUB_OFFLINE="1" if offline else "0",
            HF_HUB_DISABLE_TELEMETRY="1",
            TMPDIR=str(self.scratch),
            **(extra_env or {}),
        )
        done = subprocess.run([LOREG, *args], capture_output=True, text=True, env=env, timeout=180)
        if check is not None:
            assert done.returncode == check, (
                f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def json(self, server: LiveServer, *args: str, offline: bool = False) -> dict:
        return json.loads(self(server, "--json", *args, offline=offline).stdout)

    def register_hf(self, server: LiveServer, repo: str, endpoint: str, *, offline: bool = False) -> dict:
        """``lorareg base register --hf REPO --endpoint ENDPOINT`` into ``server``."""
        return self.json(server, "base", "register", "--hf", repo, "--endpoint", endpoint, offline=offline)


@pytest.fixture
def lorareg(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "cli")
    cli.scratch.mkdir(parents=True)
    return cli
