"""The directory ``lorareg serve --workers N`` shares metrics through. Imports no ``prometheus_client``:
the variable must be set before the workers import it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics(workers: int) -> Iterator[None]:
    """Several workers: a fresh private directory in ``PROMETHEUS_MULTIPROC_DIR`` for this run, removed
    after it (files left from another run would be added to this one's counts). One worker: none, so its
    metrics stay in the process."""
    for name in (VARIABLE, VARIABLE.lower()):  # prometheus_client reads the old lowercase name too
        os.environ.pop(name, None)
    if workers <= 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="lorareg-metrics-")  # mode 0700
    os.environ[VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def enabled() -> bool:
    """Whether this process shares its metrics with other workers."""
    return bool(os.environ.get(VARIABLE))
