"""The Celery app: each app's task runs with that app's settings, however many apps a process makes."""

from __future__ import annotations

import inspect
from pathlib import Path

from registry.config import Settings
from registry.jobs.celery_app import make_celery


def test_each_app_runs_its_own_settings(tmp_path: Path) -> None:
    first = Settings(home=tmp_path / "a", database_url=f"sqlite:///{tmp_path / 'a.db'}")
    second = Settings(home=tmp_path / "b", database_url=f"sqlite:///{tmp_path / 'b.db'}")
    apps = [make_celery(first), make_celery(second)]
    for app in reversed(apps):  # finalizing the second app first: a shared task would join the other
        app.finalize()
    for app, settings in zip(apps, (first, second), strict=True):
        task = app.tasks["lorareg.run_job"]
        assert inspect.getclosurevars(task.run).nonlocals["settings"] is settings
