"""Fixtures of the agent tests: a deployment on a live server, agents run in threads, and waiting."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.agent.engines import connect
from cli.agent.loop import Agent, AgentOptions
from cli.cache import BlobCache
from cli.client import RegistryClient
from tests.conftest import LiveServer, TinyBase
from tests.engines import RunningEngine
from tests.helpers import push, register_base

FAST = {"interval": 0.2, "backoff_start": 0.05, "backoff_cap": 0.4}


def wait_for(check: Callable[[], Any], *, timeout: float = 8.0, what: str = "the condition") -> Any:
    """``check()``'s first truthy value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.03)


@dataclass
class Fleet:
    """A deployment ``name`` serving ``bot`` (follows ``repo:prod``, on #1) on the tiny base; ``digests``
    are the pushed versions' hex digests, #1 first. ``http`` carries a token that may write."""

    url: str
    http: httpx.Client
    name: str
    repo: str
    digests: list[str]

    @property
    def path(self) -> str:
        return f"/api/v1/deployments/{self.name}"

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def move(self, number: int, tag: str = "prod") -> None:
        self.call("PUT", f"/api/v1/repos/{self.repo}/tags/{tag}", json={"target": f"#{number}"})

    def add(self, ref: str, alias: str | None = None) -> dict[str, Any]:
        return self.call("POST", f"{self.path}/adapters", json={"ref": ref, "as": alias})

    def remove(self, alias: str) -> dict[str, Any]:
        return self.call("DELETE", f"{self.path}/adapters/{alias}")

    def show(self) -> dict[str, Any]:
        return self.call("GET", self.path)

    def generation(self) -> int:
        return self.show()["current_generation"]["number"]

    def status(self) -> dict[str, Any]:
        return self.call("GET", f"{self.path}/status")


def make_fleet(url: str, http: httpx.Client, tiny_base: TinyBase, adapter_factory, namespace: str) -> Fleet:
    register_base(http, tiny_base.path)
    repo = f"{namespace}/bot"
    digests = []
    for seed in (1, 2, 3):
        pushed = push(http, repo, adapter_factory(seed=seed), base=tiny_base.content_digest)
        assert pushed.status_code == 201, pushed.text
        digests.append(pushed.json()["digest"].removeprefix("sha256:"))
    made = Fleet(url, http, f"{namespace}/fleet", repo, digests)
    made.move(1)
    made.call(
        "POST", "/api/v1/deployments", json={"namespace": namespace, "name": "fleet", "base": "tiny-llama"}
    )
    made.add(f"{repo}:prod", "bot")
    return made


@pytest.fixture
def fleet(server: LiveServer, tiny_base: TinyBase, adapter_factory) -> Fleet:
    """A fleet on the open (auth off) test server."""
    return make_fleet(server.url, server.http, tiny_base, adapter_factory, f"t{uuid.uuid4().hex[:8]}")


class Recorder:
    """The requests an agent sent its engine: (method, path, JSON body or None, time)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any, float]] = []
        self.statuses: list[tuple[str, int, float]] = []

    def on_request(self, request: httpx.Request) -> None:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body, time.monotonic()))

    def on_response(self, response: httpx.Response) -> None:
        self.statuses.append((response.request.url.path, response.status_code, time.monotonic()))

    def posts(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body, _ in self.requests if method == "POST"]


@contextmanager
def running_agent(
    fleet: Fleet,
    engine: RunningEngine,
    cache: Path,
    *,
    token: str | None = None,
    replica: str = "r1",
    **options: Any,
) -> Iterator[tuple[Agent, Recorder]]:
    """An agent for ``fleet`` and ``engine`` run in a thread until the block ends. Its failure (an
    exception out of ``run``) is re-raised at the end; ``agent.failure`` has it meanwhile."""
    client = RegistryClient(fleet.url, token, progress=False)
    client_engine = connect(engine.kind, engine.url)
    recorder = Recorder()
    client_engine.http.event_hooks = {"request": [recorder.on_request], "response": [recorder.on_response]}
    agent = Agent(
        client,
        client_engine,
        BlobCache(cache),
        AgentOptions(deployment=fleet.name, replica=replica, **{**FAST, **options}),
    )
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            agent.run(stop)
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, daemon=True)
    agent.failure = failure  # type: ignore[attr-defined]
    thread.start()
    try:
        yield agent, recorder
    finally:
        stop.set()
        thread.join(timeout=10)
        client_engine.close()
        client.close()
    assert not thread.is_alive(), "the agent did not stop"


def paths(cache: Path, names: dict[str, str]) -> dict[str, str]:
    """What an engine holds for ``names`` (name → hex digest) loaded from ``cache``: name → path."""
    return {name: str(cache.absolute() / "versions" / digest) for name, digest in names.items()}
