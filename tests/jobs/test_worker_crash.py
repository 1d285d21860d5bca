"""A worker killed with SIGKILL in the middle of a job: another worker finishes it, exactly once."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from make_tiny_adapter import make_adapter, make_base

from registry.adapters.base_manifest import read_base_manifest
from registry.config import Settings
from registry.db import migrate
from tests.conftest import LiveServer, start_server
from tests.helpers import push, register_base
from tests.jobs.conftest import fresh_broker, wait_for

LOREG = str(Path(sys.executable).parent / "lorareg")


@pytest.fixture
def crash_registry(tmp_path: Path) -> Iterator[LiveServer]:
    broker = fresh_broker(12)  # not the other job tests' brokers: their workers must not take this job
    database_url = f"sqlite:///{tmp_path / 'home' / 'lorareg.db'}"
    migrate.upgrade(database_url)
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        executor="celery",
        broker_url=broker,
        job_heartbeat=0.5,
        job_redelivery=3,
    )
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url, settings, http)


def start_worker(server: LiveServer, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LOREG_HOME": str(server.settings.home),
        "LOREG_DATABASE_URL": server.settings.database_url,
        "LOREG_EXECUTOR": "celery",
        "LOREG_BROKER_URL": server.settings.broker_url,
        "LOREG_JOB_HEARTBEAT": "0.5",
        "LOREG_JOB_REDELIVERY": "3",
    }
    return subprocess.Popen(
        [LOREG, "worker", "--queue", "cpu", "--pool", "solo"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_sigkill_mid_job_then_another_worker_completes_it(crash_registry: LiveServer, tmp_path: Path) -> None:
    server = crash_registry
    base_dir = tmp_path / "wide-base"
    base = make_base(base_dir, seed=3, hidden=512)  # wide enough that ties_svd takes seconds on a CPU
    register_base(server.http, base_dir, name="wide-llama")
    digest = read_base_manifest(base_dir).content_digest
    inputs = []
    for seed in (1, 2):
        make_adapter(copy.deepcopy(base), tmp_path / f"a{seed}", seed=seed, r=8, base_name="wide-llama")
        pushed = push(server.http, f"crash/in{seed}", tmp_path / f"a{seed}", base=digest)
        assert pushed.status_code == 201, pushed.text
        inputs.append(f"crash/in{seed}@{pushed.json()['digest']}")

    first = start_worker(server, tmp_path / "worker-1.log")
    try:
        job = server.http.post(
            "/api/v1/jobs",
            json={
                "kind": "merge",
                "inputs": inputs,
                "into": "crash/out:v1",
                "params": {"method": "ties_svd", "density": 0.5},
            },
        ).json()
        running = wait_for(server.http, job["id"], until=lambda j: j["status"] == "running", timeout=60)
        first.send_signal(signal.SIGKILL)  # at once: on a quiet machine the merge takes only a few seconds
        first.wait(timeout=10)
        assert wait_for(server.http, job["id"], until=lambda j: True)["status"] == "running"  # orphaned
    finally:
        if first.poll() is None:
            first.kill()
    second = start_worker(server, tmp_path / "worker-2.log")
    try:
        done = wait_for(server.http, job["id"], timeout=120)
    finally:
        second.terminate()
        second.wait(timeout=30)
    assert done["status"] == "succeeded", (done["error"], (tmp_path / "worker-2.log").read_text()[-3000:])
    assert done["attempts"] == 2
    assert done["worker"] != running["worker"]
    versions = server.http.get("/api/v1/repos/crash/out/versions").json()
    assert len(versions) == 1 and versions[0]["digest"] == done["result"]["version"]["digest"]
