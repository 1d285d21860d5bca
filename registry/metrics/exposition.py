"""``/metrics``: who may read it, and its text: every API process's instruments, plus jobs and webhook
deliveries read from the database at scrape time (jobs run on workers elsewhere; any API process
answers a scrape with the same totals)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.utils import floatToGoString
from sqlalchemy.orm import Session

from registry.config import Settings
from registry.db.queries import metrics as queries
from registry.errors import Unauthorized
from registry.metrics import multiprocess
from registry.metrics.instruments import INSTRUMENTS

JOB_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)  # run times, seconds
WAITING = ("queued", "running")
DELIVERY_RESULTS = ("delivered", "failed")


def authorize(settings: Settings, authorization: str | None) -> None:
    """Refuse unless ``/metrics`` is open (no ``metrics_token``) or the request carries its token."""
    token = settings.metrics_token
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(
            "this registry's /metrics requires its metrics token: send `Authorization: Bearer "
            "<LOREG_METRICS_TOKEN>` (in Prometheus, the scrape config's `authorization.credentials`)"
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("the bearer token is not this registry's metrics token (LOREG_METRICS_TOKEN)")


@dataclass(frozen=True, eq=False)  # hashed by identity, as a registry's collectors are
class DatabaseTotals:
    """A collector over what the database held at one moment."""

    jobs: list[queries.JobGroup]
    deliveries: dict[str, int]

    @classmethod
    def read(cls, session: Session) -> DatabaseTotals:
        return cls(queries.job_groups(session, JOB_BUCKETS), queries.delivery_counts(session))

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "lorareg_job_queue_depth",
            "Jobs queued or running, by kind and status.",
            labels=["kind", "status"],
        )
        for kind in sorted({group.kind for group in self.jobs}):  # zeros too, for alerts
            for status in WAITING:
                count = sum(g.jobs for g in self.jobs if (g.kind, g.status) == (kind, status))
                depth.add_metric([kind, status], count)
        durations = HistogramMetricFamily(
            "lorareg_job_duration_seconds",
            "Run times (start to end) of finished jobs, by kind and status; every job the database holds.",
            labels=["kind", "status"],
        )
        for group in self.jobs:
            if group.status not in WAITING:
                buckets = [(floatToGoString(b), n) for b, n in zip(JOB_BUCKETS, group.within, strict=True)]
                durations.add_metric(
                    [group.kind, group.status], [*buckets, ("+Inf", group.timed)], group.seconds
                )
        deliveries = CounterMetricFamily(
            "lorareg_webhook_deliveries",
            "Webhook deliveries that ended, by result: delivered, or failed after every attempt.",
            labels=["result"],
        )
        for result in DELIVERY_RESULTS:
            deliveries.add_metric([result], self.deliveries.get(result, 0))
        pending = GaugeMetricFamily(
            "lorareg_webhook_deliveries_pending", "Webhook deliveries waiting for their next attempt."
        )
        pending.add_metric([], self.deliveries.get("pending", 0))
        yield from (depth, durations, deliveries, pending)


def render(session: Session) -> bytes:
    """The text exposition: the instruments of every worker (or of this process alone), and the database's
    totals read in ``session``."""
    scrape = CollectorRegistry()
    if multiprocess.enabled():
        MultiProcessCollector(scrape)
    else:
        scrape.register(INSTRUMENTS)
    scrape.register(DatabaseTotals.read(session))
    return generate_latest(scrape)
