"""Eval results: numeric metrics of a version, read from lm-evaluation-harness's ``results.json``, a flat
``{"metric": value}`` file, or a model card's ``model-index``. Pure parsing; the registry stores them.

lm-evaluation-harness writes ``{"results": {task: {"<metric>,<filter>": value, "<metric>_stderr,<filter>":
stderr, "alias": …}}, "groups": {…the same shape…}, "configs": {task: {"dataset_path": …}}, …}``. A metric
is named ``metric`` when its filter is ``none`` (the default) and ``metric,filter`` otherwise
(``exact_match,strict-match``); a stderr of ``"N/A"`` is none. A flat file's keys are ``metric`` or
``task/metric``, and a ``<key>_stderr`` next to ``<key>`` is its stderr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from registry.errors import InvalidInput

MAX_METRICS = 2000
MAX_NAME = 256
DEFAULT_FILTER = "none"
FIXED_KEYS = frozenset({"alias", "name", "sample_len", "sample_count"})  # a task's entries besides metrics
STDERR = "_stderr"
LAYOUTS = (
    'lm-evaluation-harness\'s results.json ({"results": {task: {"metric,filter": number}}}) or a flat '
    '{"metric": number} file'
)


@dataclass(frozen=True, slots=True)
class Metric:
    """One result: ``task`` ("" when none is named), ``metric``, its value and optional stderr/dataset."""

    task: str
    metric: str
    value: float
    stderr: float | None = None
    dataset: str | None = None

    @property
    def name(self) -> str:
        """How search and ``compare`` address it: ``task/metric``, or ``metric`` when there is no task."""
        return f"{self.task}/{self.metric}" if self.task else self.metric


def parse_eval_file(document: Any) -> list[Metric]:
    """The metrics of an eval results file (parsed JSON) in either layout; raise :class:`InvalidInput`
    saying where it is not one, or holds a value that is not a finite number."""
    if not isinstance(document, dict):
        raise InvalidInput(f"an eval results file is a JSON object, not {_kind(document)}: {LAYOUTS}")
    metrics = parse_lm_eval(document) if "results" in document else parse_flat(document)
    if not metrics:
        raise InvalidInput(f"the eval results file holds no metrics: {LAYOUTS}")
    if len(metrics) > MAX_METRICS:
        raise InvalidInput(f"the eval results file holds {len(metrics)} metrics; at most {MAX_METRICS}")
    return metrics


def parse_lm_eval(document: dict[str, Any]) -> list[Metric]:
    """The metrics of lm-evaluation-harness's ``results.json``: every task of ``results``, and the groups
    of ``groups`` that ``results`` does not already hold."""
    results, groups = document["results"], document.get("groups", {})
    configs = document.get("configs")
    for section, value in (("results", results), ("groups", groups)):
        if not isinstance(value, dict):
            raise InvalidInput(f"{section} is {_kind(value)}, not an object of tasks: {LAYOUTS}")
    tasks = {**results, **{task: entry for task, entry in groups.items() if task not in results}}
    found: list[Metric] = []
    for task, entry in tasks.items():
        where = f"results.{task}" if task in results else f"groups.{task}"
        if not isinstance(entry, dict):
            raise InvalidInput(f"{where} is {_kind(entry)}, not an object of 'metric,filter' values")
        config = configs.get(task) if isinstance(configs, dict) else None
        dataset = config.get("dataset_path") if isinstance(config, dict) else None
        found += _task_metrics(_checked(task, "task"), entry, where, dataset)
    return found


def _task_metrics(task: str, entry: dict[str, Any], where: str, dataset: Any) -> list[Metric]:
    found = []
    for key, value in entry.items():
        metric, comma, filter_name = key.partition(",")
        if key in FIXED_KEYS or metric.endswith(STDERR):  # a stderr is read with its metric
            continue
        stderr = entry.get(f"{metric}{STDERR}{comma}{filter_name}")
        found.append(
            Metric(
                task=task,
                metric=_checked(metric if filter_name in ("", DEFAULT_FILTER) else key, "metric"),
                value=_number(value, f"{where}.{key}"),
                stderr=None if stderr in (None, "N/A") else _number(stderr, f"{where}.{metric}{STDERR}"),
                dataset=dataset if isinstance(dataset, str) and 0 < len(dataset) <= MAX_NAME else None,
            )
        )
    return found


def parse_flat(document: dict[str, Any]) -> list[Metric]:
    """The metrics of a flat ``{"metric": value}`` (or ``{"task/metric": value}``) file."""
    found = []
    for key, value in document.items():
        if key.endswith(STDERR) and key.removesuffix(STDERR) in document:
            continue
        if isinstance(value, (dict, list)):
            raise InvalidInput(
                f"{key!r} holds {_kind(value)}: not a layout lorareg reads; expected {LAYOUTS}"
            )
        task, _, metric = key.rpartition("/")
        stderr = document.get(f"{key}{STDERR}")
        found.append(
            Metric(
                task=_checked(task, "task") if task else "",
                metric=_checked(metric, "metric"),
                value=_number(value, key),
                stderr=None if stderr in (None, "N/A") else _number(stderr, f"{key}{STDERR}"),
            )
        )
    return found


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where!r} is {_kind(value)}, not a number: every metric value must be numeric")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InvalidInput(
            f"{where!r} is {str(value)[:40]}, not a finite number: drop it or re-run that eval"
        )
    return number


def _checked(name: str, what: str) -> str:
    if not 0 < len(name) <= MAX_NAME or not name.isprintable():
        raise InvalidInput(
            f"invalid {what} name {name.encode('unicode_escape').decode('ascii')[:80]!r}: 1 to {MAX_NAME} "
            "printable characters"
        )
    return name


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else repr(value)
