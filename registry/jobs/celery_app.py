"""Celery over Redis: the distributed executor's app, its one task, and the worker's start-up.

Delivery is at-least-once with late acks: a worker that dies mid-job (even SIGKILL) never acks, so the
broker hands the message to another worker after ``LOREG_JOB_REDELIVERY`` seconds; the runner's claim
sees the dead worker's stale heartbeat and takes over. The runner is idempotent, so the job still
produces exactly one result.
"""

from __future__ import annotations

import threading

from celery import Celery, signals

from registry.config import Settings
from registry.runtime import Runtime

GPU_QUEUE_KEY = "lorareg:queues:gpu:alive"


def make_celery(settings: Settings) -> Celery:
    app = Celery("lorareg", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue="cpu",
        task_soft_time_limit=settings.job_timeout,
        task_time_limit=settings.job_timeout + 60,
        broker_transport_options={
            "visibility_timeout": settings.job_redelivery,
            # look for orphaned messages often enough that redelivery takes ~job_redelivery seconds
            "unacked_restore_interval": max(1, min(10, settings.job_redelivery // 3)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    opened: list[Runtime] = []  # per app, opened lazily: in prefork, inside each child process

    # shared=False: a shared task joins every Celery app finalized later in this process, and the first
    # registered (bound to the first app's settings: another database) would answer for all of them
    @app.task(name="lorareg.run_job", shared=False)
    def run_job_task(job_id: str) -> str | None:
        from registry.jobs.runner import run_job

        if not opened:
            opened.append(Runtime.open(settings))
        return run_job(opened[0], job_id)

    return app


def run_worker(settings: Settings, *, queue: str, concurrency: int, pool: str = "prefork") -> None:
    """Start a worker consuming ``queue`` (blocks). A ``gpu`` worker advertises itself in Redis so that
    jobs that may use a GPU are routed to it."""
    app = make_celery(settings)
    if queue == "gpu":
        _advertise_gpu_queue(settings)
    app.worker_main(
        [
            "worker",
            "--queues",
            queue,
            "--concurrency",
            str(concurrency),
            "--pool",
            pool,
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _advertise_gpu_queue(settings: Settings) -> None:
    import redis

    def advertise() -> None:
        client = redis.Redis.from_url(settings.broker_url)
        while True:
            client.set(GPU_QUEUE_KEY, "1", ex=30)
            threading.Event().wait(10)

    @signals.worker_ready.connect(weak=False)
    def _start(**_: object) -> None:
        threading.Thread(target=advertise, daemon=True, name="lorareg-gpu-advert").start()
