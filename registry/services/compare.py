"""Comparing two versions, of one repository or of two: their metrics and labels side by side, and the diff
job that measured them module by module (found by what it compared, however its submitter named them).

Sides are named as in the web UI's URLs: ``A...B``, each a ref of the repository in the path (``3``,
``prod``, ``sha256:…``) or a full ref of another one (``ns/name:tag``, ``ns/name#3``, ``ns/name@…``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import EvalMetric, Job, Version
from registry.db.queries.compare import newest_diff
from registry.errors import InvalidInput
from registry.principal import Principal
from registry.refs import Ref, RepoName, RepoRef
from registry.services import jobs, versions

SEPARATOR = "..."
SHOWN_UNFINISHED = ("queued", "running", "failed")  # when no diff succeeded: the one to show


@dataclass(frozen=True)
class Side:
    """One version compared: how it was named, and what is known about it."""

    ref: RepoRef
    version: Version
    tags: list[str]
    labels: dict[str, str]
    metrics: dict[str, EvalMetric]  # by name; an attached eval's value wins over the model card's


@dataclass(frozen=True)
class MetricRow:
    name: str
    a: EvalMetric | None
    b: EvalMetric | None

    @property
    def delta(self) -> float | None:
        """B's value minus A's, when both have the metric."""
        return None if self.a is None or self.b is None else self.b.value - self.a.value


@dataclass(frozen=True)
class LabelRow:
    key: str
    a: str | None
    b: str | None

    @property
    def changed(self) -> bool:
        return self.a != self.b


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    job: Job | None  # the diff of A and B: a succeeded one, else the newest queued, running or failed one
    metrics: list[MetricRow]
    labels: list[LabelRow]
    may_start: bool  # the viewer may submit the diff job

    @property
    def live(self) -> bool:
        """The diff job is queued or running."""
        return self.job is not None and self.job.status not in jobs.FINISHED

    @property
    def report(self) -> dict[str, Any] | None:
        """The finished diff's report (modules, only_in_a/b, config_changes, summary), if there is one."""
        if self.job is None or self.job.status != "succeeded" or not self.job.result:
            return None
        report: dict[str, Any] = self.job.result["report"]
        return report

    @property
    def command(self) -> str:
        """The CLI command that computes the diff."""
        return f"lorareg diff {self.a.ref} {self.b.ref}"


def parse_spec(spec: str, repo: RepoName) -> tuple[RepoRef, RepoRef]:
    """``A...B`` of the compare page of ``repo`` as two full refs."""
    first, found, second = spec.partition(SEPARATOR)
    if not found or not first or not second:
        raise InvalidInput(
            f"invalid comparison {spec!r}: expected A...B, each a version of {repo} (3, prod, sha256:…) "
            "or of another repository (ns/name:tag, ns/name#3)"
        )
    return _side_ref(first, repo), _side_ref(second, repo)


def _side_ref(value: str, repo: RepoName) -> RepoRef:
    if "/" in value:
        return RepoRef.parse(value)
    return RepoRef(repo, Ref.parse_short(value))


def compare(session: Session, first: RepoRef, second: RepoRef, principal: Principal) -> Comparison:
    """Both versions (yanked ones too: comparing is reading), which ``principal`` must be able to read,
    their metric and label differences, and their diff job if one was submitted."""
    a, b = (_side(session, ref, principal) for ref in (first, second))
    return Comparison(
        a=a,
        b=b,
        job=_diff_job(session, a.version, b.version),
        metrics=[
            MetricRow(name, a.metrics.get(name), b.metrics.get(name))
            for name in sorted(a.metrics.keys() | b.metrics.keys())
        ],
        labels=[
            LabelRow(key, a.labels.get(key), b.labels.get(key))
            for key in sorted(a.labels.keys() | b.labels.keys())
        ],
        may_start=not principal.anonymous and principal.has_scope("write"),
    )


def start_diff(
    session: Session, first: RepoRef, second: RepoRef, principal: Principal, *, queue: str
) -> tuple[Job, bool]:
    """Submit the diff job of ``first`` and ``second`` (the one ``lorareg diff A B`` submits); an identical
    one is returned instead. Returns the job and whether it is new (then it must be dispatched)."""
    return jobs.submit_job(
        session, kind="diff", inputs=[str(first), str(second)], params={}, principal=principal, queue=queue
    )


def _side(session: Session, ref: RepoRef, principal: Principal) -> Side:
    version = versions.find_version(session, ref, principal, allow_yanked=True)
    metrics = {metric.name: metric for metric in queries.metrics_of(session, version)}  # card, then eval
    labels = {label.key: label.value for label in queries.labels_of(session, version.repository, version)}
    return Side(ref, version, versions.tags_of(session, version), labels, metrics)


def _diff_job(session: Session, a: Version, b: Version) -> Job | None:
    first, second = (a.repository.full_name, a.digest), (b.repository.full_name, b.digest)
    return newest_diff(session, first, second, ("succeeded",)) or newest_diff(
        session, first, second, SHOWN_UNFINISHED
    )
