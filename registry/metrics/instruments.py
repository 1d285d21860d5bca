"""What each API process counts: requests by route template, version lookups, pushes, downloads, blob
bytes, database connections. With several workers, every value lives in ``PROMETHEUS_MULTIPROC_DIR``
and a scrape adds them up (``exposition``).

Labels never hold a name, a ref or a digest: routes are templates, so the number of series is bounded.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.multiprocess import mark_process_dead
from sqlalchemy import Engine, event

from registry.metrics import multiprocess

disable_created_metrics()  # no ``*_created`` series: a scrape of several workers has none either
INSTRUMENTS = CollectorRegistry()  # of this process, when it runs alone
UNMATCHED = "unmatched"  # the route label of a request no route answered
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_LABELS = ["method", "route", "status"]

REQUESTS = Counter(
    "lorareg_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    REQUEST_LABELS,
    registry=INSTRUMENTS,
)
LATENCY = Histogram(
    "lorareg_http_request_duration_seconds",
    "Time from a request's arrival to the last byte of its answer, by method, route template and status.",
    REQUEST_LABELS,
    buckets=LATENCY_BUCKETS,
    registry=INSTRUMENTS,
)
RESOLVES = Counter(
    "lorareg_resolves",
    "Version lookups by api (rest, batch: each ref of a batch, hf: revision lookups) and result "
    "(the status answered: 200, 304, 404, 409 base mismatch, 410 yanked, ...).",
    ["api", "result"],
    registry=INSTRUMENTS,
)
PUSHES = Counter(
    "lorareg_pushes",
    "Version commits that succeeded, by result: created (a new version) or unchanged (already there).",
    ["result"],
    registry=INSTRUMENTS,
)
PULLS = Counter(
    "lorareg_pulls",
    "File downloads answered with bytes or a presigned redirect (GET 200, 206, 307), by api (rest, hf).",
    ["api"],
    registry=INSTRUMENTS,
)
BLOB_BYTES = Counter(
    "lorareg_blob_bytes",
    "Blob body bytes through this server, by direction: in (uploads), out (downloads answered 200/206). "
    "Presigned object-storage transfers bypass the server and are not counted.",
    ["direction"],
    registry=INSTRUMENTS,
)
SEARCH_CACHE = Counter(
    "lorareg_search_cache_lookups",
    "Searches looked up in the API process's answer cache, by result: hit (answered from it) or miss.",
    ["result"],
    registry=INSTRUMENTS,
)
POOL_IN_USE = Gauge(
    "lorareg_db_pool_connections_in_use",
    "Database connections checked out of the API processes' pools.",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)
POOL_CAPACITY = Gauge(
    "lorareg_db_pool_connections_max",
    "Connections the API processes' pools may hold at most (pool size + overflow, summed).",
    registry=INSTRUMENTS,
    multiprocess_mode="livesum",
)

# (method, route template) -> api label.
LOOKUPS = {
    ("GET", "/api/v1/repos/{namespace}/{name}/resolve/{ref}"): "rest",
    ("GET", "/hf/api/models/{namespace}/{name}"): "hf",
    ("GET", "/hf/api/models/{namespace}/{name}/revision/{revision}"): "hf",
}
DOWNLOADS = {
    ("GET", "/api/v1/blobs/sha256:{hex_digest}"): "rest",
    ("GET", "/hf/{namespace}/{name}/resolve/{revision}/{path}"): "hf",
}
UPLOAD = ("PUT", "/api/v1/blobs/sha256:{hex_digest}")
COMMIT = ("POST", "/api/v1/repos/{namespace}/{name}/versions")
COMMIT_RESULTS = {201: "created", 200: "unchanged"}
DOWNLOADED = (200, 206, 307)
WITH_BYTES = (200, 206)


# The method label of any other (a client may send any token as a method): the series stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


@functools.cache  # one entry per series: bounded by the labels' values
def _request_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    return REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route, str(status))


@functools.cache
def _resolve_series(api: str, status: int) -> Counter:
    return RESOLVES.labels(api, str(status))


def resolved(api: str, status: int) -> None:
    """One version lookup answered ``status``."""
    _resolve_series(api, status).inc()


def observe(method: str, route: str, status: int, seconds: float, received: int, sent: int) -> None:
    """One answered request: ``received`` and ``sent`` are its request and response body bytes."""
    if method not in METHODS:
        method = OTHER_METHOD
    requests, latency = _request_series(method, route, status)
    requests.inc()
    latency.observe(seconds)
    key = (method, route)
    if (api := LOOKUPS.get(key)) is not None:
        resolved(api, status)
    elif (api := DOWNLOADS.get(key)) is not None and status in DOWNLOADED:
        PULLS.labels(api).inc()
        if status in WITH_BYTES:
            BLOB_BYTES.labels("out").inc(sent)
    elif key == UPLOAD:
        BLOB_BYTES.labels("in").inc(received)
    elif key == COMMIT and status in COMMIT_RESULTS:
        PUSHES.labels(COMMIT_RESULTS[status]).inc()


def count_search_cache(hit: bool) -> None:
    """Count one lookup in a search answer cache."""
    SEARCH_CACHE.labels("hit" if hit else "miss").inc()


def watch_pool(engine: Engine, capacity: int) -> Callable[[], None]:
    """Count ``engine``'s checked-out connections; returns the function that stops (at shutdown)."""

    def checkout(*_: Any) -> None:
        POOL_IN_USE.inc()

    def checkin(*_: Any) -> None:
        POOL_IN_USE.dec()

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    POOL_CAPACITY.inc(capacity)

    def stop() -> None:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
        POOL_CAPACITY.dec(capacity)
        if multiprocess.enabled():
            mark_process_dead(os.getpid())  # this worker's live gauges leave the sums

    return stop
