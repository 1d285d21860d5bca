"""Eval results of versions: metrics from a card's ``model-index`` (``source='card'``, written at push) and
metrics attached later from an eval run's file (``source='eval'``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from registry.adapters.eval_results import Metric, parse_eval_file
from registry.db import queries
from registry.db.models import EvalMetric, Version
from registry.principal import Principal
from registry.refs import RepoRef
from registry.services import audit, repos, search_index
from registry.services.versions import get_version

SOURCES = ("card", "eval")


def record(session: Session, version: Version, metrics: list[Metric], *, source: str, actor: str) -> None:
    """Store ``metrics`` on ``version`` as ``source``, replacing its metrics of that source with the same
    names (the others stay). A name given twice keeps its first value."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    distinct: dict[str, Metric] = {}
    for metric in metrics:
        distinct.setdefault(metric.name, metric)
    queries.delete_metrics(session, version, source, distinct.keys())
    search_index.changed(session)
    session.add_all(
        EvalMetric(
            version_id=version.id,
            source=source,
            task=m.task,
            metric=m.metric,
            name=m.name,
            value=m.value,
            stderr=m.stderr,
            dataset=m.dataset,
            created_by=actor,
        )
        for m in distinct.values()
    )
    session.flush()


def attach(session: Session, target: RepoRef, document: Any, principal: Principal) -> list[Metric]:
    """Parse an eval results file (lm-evaluation-harness ``results.json`` or flat ``{"metric": value}``)
    and attach its metrics to the version ``target`` names (yanked ones too); return them."""
    repository = repos.get_repository(session, target.repo, principal, need="write", lock=True)
    version = get_version(session, repository, target.ref, allow_yanked=True)
    metrics = parse_eval_file(document)
    record(session, version, metrics, source="eval", actor=principal.name)
    audit.record(
        session,
        principal,
        "eval.attach",
        target=f"{target.repo}#{version.number}",
        namespace=target.repo.namespace,
        detail={"digest": f"sha256:{version.digest}", "metrics": len(metrics)},
    )
    return metrics


def list_metrics(session: Session, target: RepoRef, principal: Principal) -> Sequence[EvalMetric]:
    """The metrics of the version ``target`` names (yanked ones too), from its card and its evals."""
    repository = repos.get_repository(session, target.repo, principal)
    return queries.metrics_of(session, get_version(session, repository, target.ref, allow_yanked=True))
