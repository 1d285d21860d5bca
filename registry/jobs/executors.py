"""Executors: where a submitted job runs. One interface, two implementations chosen by LOREG_EXECUTOR."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from registry.db import queries
from registry.jobs.celery_app import GPU_QUEUE_KEY
from registry.runtime import Runtime

logger = logging.getLogger("lorareg.jobs")


class Executor(Protocol):
    def submit(self, job_id: str, queue: str) -> None:
        """Schedule the job (already committed to the database) on ``queue``."""
        ...

    def gpu_available(self) -> bool:
        """Whether a worker consumes the ``gpu`` queue (jobs that may use one are routed there)."""
        ...

    def close(self) -> None: ...


class InlineExecutor:
    """A thread pool inside the API process: the embedded default. Jobs left queued or running by a
    previous process are resubmitted at start (their claim sees the stale heartbeat)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pool = ThreadPoolExecutor(
            max_workers=runtime.settings.inline_workers, thread_name_prefix="lorareg-job"
        )
        with runtime.db.transaction(write=False) as session:
            unfinished = [job.id for job in queries.unfinished_jobs(session)]
        for job_id in unfinished:
            self.submit(job_id, "cpu")

    def submit(self, job_id: str, queue: str) -> None:
        self.pool.submit(self._run, job_id)

    def _run(self, job_id: str) -> None:
        from registry.jobs.runner import run_job

        try:
            run_job(self.runtime, job_id)
        except Exception:  # a job's own failures are recorded by run_job; this is the runner breaking
            logger.exception("job %s could not run", job_id)

    def gpu_available(self) -> bool:
        try:
            from registry.compute.device import select_device
        except ImportError:  # no torch in this process: no GPU to use either
            return False
        return select_device(self.runtime.settings.device).type == "cuda"

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)


class CeleryExecutor:
    """Celery workers over Redis (``lorareg worker --queue gpu|cpu``)."""

    def __init__(self, runtime: Runtime) -> None:
        from registry.jobs.celery_app import make_celery

        self.app = make_celery(runtime.settings)

    def submit(self, job_id: str, queue: str) -> None:
        self.app.send_task("lorareg.run_job", args=[job_id], queue=queue)

    def gpu_available(self) -> bool:
        import redis

        with redis.Redis.from_url(self.app.conf.broker_url) as client:
            return bool(client.exists(GPU_QUEUE_KEY))

    def close(self) -> None:
        self.app.close()


def make_executor(runtime: Runtime) -> Executor:
    if runtime.settings.executor == "celery":
        return CeleryExecutor(runtime)
    return InlineExecutor(runtime)
