"""Eval result files: lm-evaluation-harness's ``results.json`` (a fixture in its documented layout) and
flat files, read into typed metrics; anything else refused with a message saying where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry.adapters.eval_results import MAX_METRICS, Metric, parse_eval_file
from registry.errors import InvalidInput

FIXTURE = Path(__file__).parents[1] / "fixtures" / "lm_eval_results.json"


def test_lm_eval_results_json() -> None:
    metrics = {m.name: m for m in parse_eval_file(json.loads(FIXTURE.read_text()))}
    assert metrics["arc_easy/acc"] == Metric(
        "arc_easy", "acc", 0.7643097643097643, 0.008709108323214466, "allenai/ai2_arc"
    )
    assert metrics["arc_easy/acc_norm"].stderr == 0.009361987126556448
    # A filter other than "none" stays in the metric's name; each filter's stderr is its own.
    assert metrics["gsm8k/exact_match,strict-match"].value == 0.3904473085670963
    assert metrics["gsm8k/exact_match,flexible-extract"].stderr == 0.013516752972721716
    assert metrics["wikitext/word_perplexity"].stderr is None  # "N/A"
    # Groups are in "results" too: read once; aliases, stderr keys and sample counts are not metrics.
    assert metrics["mmlu/acc"].value == 0.6187 and metrics["mmlu_humanities/acc"].stderr is not None
    assert len(metrics) == 10 and not any("stderr" in name or "alias" in name for name in metrics)


def test_groups_missing_from_results_and_the_older_layout_without_filters() -> None:
    found = parse_eval_file(
        {
            "results": {"hellaswag": {"acc": 0.5, "acc_stderr": 0.01, "alias": "hellaswag"}},
            "groups": {"suite": {"acc,none": 0.6, "alias": "suite"}},
            "versions": {"hellaswag": 0},
        }
    )
    assert found == [Metric("hellaswag", "acc", 0.5, 0.01), Metric("suite", "acc", 0.6)]


def test_flat_files() -> None:
    found = parse_eval_file(
        {"accuracy": 0.9, "accuracy_stderr": 0.02, "sql/exact_match": 1, "loss_stderr": 3}
    )
    assert found == [
        Metric("", "accuracy", 0.9, 0.02),
        Metric("sql", "exact_match", 1.0),
        Metric("", "loss_stderr", 3.0),  # no "loss" beside it: a metric of its own
    ]
    assert [m.name for m in found] == ["accuracy", "sql/exact_match", "loss_stderr"]


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ([{"acc": 1}], "JSON object, not an array"),
        ({}, "no metrics"),
        ({"acc": "0.5"}, "'acc' is a string"),
        ({"acc": True}, "'acc' is a boolean"),
        ({"acc": None}, "'acc' is null"),
        ({"acc": float("nan")}, "not a finite number"),
        ({"acc": float("inf")}, "not a finite number"),
        ({"acc": 10**400}, "not a finite number"),
        ({"model": {"acc": 0.5}}, "not a layout lorareg reads"),
        ({"results": [1]}, "results is an array"),
        ({"results": {"arc": 0.5}}, "results.arc is 0.5"),
        ({"results": {"arc": {"acc,none": "high"}}}, "'results.arc.acc,none' is a string"),
        ({"results": {"arc": {"acc,none": 0.5, "acc_stderr,none": "big"}}}, "acc_stderr"),
        ({"results": {"a\x00rc": {"acc,none": 0.5}}}, "invalid task name 'a\\\\x00rc'"),
        ({"results": {"arc": {",none": 0.5}}}, "invalid metric name"),
        ({f"m{i}": i for i in range(MAX_METRICS + 1)}, f"at most {MAX_METRICS}"),
    ],
)
def test_refusals_say_where(document: Any, says: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_eval_file(document)
    assert says in raised.value.message
