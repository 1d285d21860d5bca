from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from registry.api.deps import Caller, ReadSession, WriteSession
from registry.api.schemas import EvalMetricOut, EvalsOut, eval_metric_out
from registry.refs import Ref, RepoName, RepoRef
from registry.services import evals

router = APIRouter(prefix="/repos/{namespace}/{name}/versions/{ref}/evals", tags=["evals"])

EvalFile = Annotated[
    Any,
    Body(
        description='lm-evaluation-harness\'s results.json as it wrote it, or a flat {"metric": number} '
        '(or {"task/metric": number}) object'
    ),
]


def _target(namespace: str, name: str, ref: str) -> RepoRef:
    return RepoRef(RepoName.parse(f"{namespace}/{name}"), Ref.parse(ref))


@router.post("", name="eval.attach")
def attach(
    namespace: str, name: str, ref: str, document: EvalFile, session: WriteSession, principal: Caller
) -> EvalsOut:
    """Attach an eval run's metrics to the version (``source: eval``), replacing its earlier eval metrics
    of the same names; 400 on another layout or a value that is not a finite number."""
    target = _target(namespace, name, ref)
    attached = evals.attach(session, target, document, principal)
    metrics = evals.list_metrics(session, target, principal)
    return EvalsOut(attached=[m.name for m in attached], metrics=[eval_metric_out(m) for m in metrics])


@router.get("")
def list_evals(
    namespace: str, name: str, ref: str, session: ReadSession, principal: Caller
) -> list[EvalMetricOut]:
    """The version's metrics by name: from its model card's ``model-index`` (``source: card``) and
    attached eval runs (``source: eval``)."""
    return [eval_metric_out(m) for m in evals.list_metrics(session, _target(namespace, name, ref), principal)]
