"""A registry with each executor: the inline thread pool, and Celery with a real worker over Redis."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from registry.config import Settings
from registry.db import migrate
from registry.jobs.celery_app import make_celery
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import push, register_base
from tests.service_checks import fresh_postgres_database, redis_url, require

REDIS = "redis://127.0.0.1:6379"


def redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def fresh_broker(database: int) -> str:
    """A Redis database of the tests' own, emptied: one per server, so no other worker takes its jobs."""
    require(
        "Redis at 127.0.0.1:6379", redis_reachable(), "start it: redis-server --daemonize yes --port 6379"
    )
    url = redis_url(database)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session", params=["inline", "celery"])
def job_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """The two deployments' job paths: the embedded default (SQLite, jobs in the API's thread pool), and
    production (PostgreSQL, Celery over Redis, here with a worker in this process)."""
    home = tmp_path_factory.mktemp(f"jobs-{request.param}")
    with contextlib.ExitStack() as stack:
        if request.param == "celery":
            database_url = stack.enter_context(fresh_postgres_database("lorareg_jobs"))
            overrides: dict[str, Any] = {"executor": "celery", "broker_url": fresh_broker(13)}
        else:
            database_url, overrides = f"sqlite:///{home / 'lorareg.db'}", {}
        migrate.upgrade(database_url)
        settings = Settings(home=home, database_url=database_url, job_heartbeat=0.5, **overrides)
        for url in start_server(settings):
            with httpx.Client(base_url=url, timeout=30) as http:
                if request.param == "celery":
                    from celery.contrib.testing.worker import start_worker

                    stack.enter_context(
                        start_worker(
                            make_celery(settings),
                            pool="solo",
                            perform_ping_check=False,
                            queues=["cpu"],
                            shutdown_timeout=30,
                        )
                    )
                yield LiveServer(url, settings, http)


@dataclass
class Pushed:
    repo: str
    digest: str


@pytest.fixture
def two_adapters(job_server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> list[Pushed]:
    register_base(job_server.http, tiny_base.path)
    made = []
    for seed, name in ((51, "a"), (52, "b")):
        target = f"{repo}-{name}"
        response = push(
            job_server.http,
            target,
            adapter_factory(seed=seed, r=4 + seed % 2 * 4),
            base=tiny_base.content_digest,
        )
        assert response.status_code == 201, response.text
        made.append(Pushed(target, response.json()["digest"]))
    return made


def wait_for(
    http: httpx.Client, job_id: str, until: Callable[[dict], bool] | None = None, timeout: float = 120
) -> dict:
    """Poll a job until it is finished (or ``until`` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        if (until or (lambda j: j["status"] in ("succeeded", "failed", "cancelled")))(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.1)
