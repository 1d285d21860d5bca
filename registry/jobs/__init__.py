"""Running jobs: the task (:mod:`registry.jobs.runner`) and the executors that schedule it — a thread
pool inside the API (the embedded default) or Celery workers over Redis (GPU clusters)."""
