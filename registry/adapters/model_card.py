"""Model cards: a version's ``README.md`` in the Hugging Face format (``---`` YAML front matter, then
Markdown), the card the registry writes for a version without one, and the Hub's view of a card.

Pure: bytes and dicts in, a :class:`Card` out. Nothing here refuses a push: whatever cannot be read is
a warning, and the fields that can be read are kept. Lists are normalised as the Hub reads them (a
single ``datasets: x`` is ``[x]``); ``base_model`` keeps its shape (one id or a list of ids).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from registry.adapters.eval_results import Metric

README_FILE = "README.md"
MAX_CARD_SIZE = 1024**2  # bytes of README.md the registry parses; a larger one is stored unread
MAX_METRICS = 1000
MAX_NAME = 256  # task, metric and dataset names (eval_metrics' columns)
RELATIONS = ("adapter", "merge", "quantized", "finetune")
# As huggingface_hub.repocard.REGEX_YAML_BLOCK: the front matter opens the file.
_FRONT_MATTER = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
_SCALARS = ("base_model_relation", "license", "license_name", "license_link", "library_name", "pipeline_tag")
_LISTS = ("datasets", "language", "tags", "metrics")
_PLUS_MINUS = re.compile(r"^\s*([-+0-9.eE]+)\s*(?:±|\+/-)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Card:
    """A version's card: the known front matter fields (``data``), the Markdown, whether the registry
    wrote it, what could not be read, and the eval results of its ``model-index``."""

    data: dict[str, Any]
    markdown: str
    generated: bool
    warnings: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)


def version_card(
    subject: Subject, *, readme: bytes | None, readme_size: int | None, lineage: Lineage | None = None
) -> Card:
    """The card of a version: generated for a job's output (``lineage``) or when there is no README.md
    (``readme_size`` None) or none readable (over :data:`MAX_CARD_SIZE`: ``readme`` None, or not text);
    else parsed from ``readme``."""
    if lineage is not None or readme_size is None:
        return generated_card(subject, lineage)
    if readme is None:
        too_large = (
            f"{README_FILE} is {readme_size} bytes, over the {MAX_CARD_SIZE} a card may be; not parsed"
        )
        return generated_card(subject, warnings=[too_large])
    try:
        text = readme.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = "\x00"
    if "\x00" in text:
        return generated_card(
            subject, warnings=[f"{README_FILE} is not UTF-8 text (or holds NUL); not parsed"]
        )
    return parse_card(text)


def parse_card(text: str) -> Card:
    """The card a README.md's text holds: its known front matter fields and the Markdown after it."""
    match = _FRONT_MATTER.search(text)
    if match is None:
        return Card(data={}, markdown=text, generated=False)
    markdown, warnings = text[match.end() :], list[str]()
    try:
        loaded = yaml.safe_load(match.group(2))
    except (yaml.YAMLError, RecursionError) as exc:
        return Card(
            data={}, markdown=markdown, generated=False, warnings=[f"{README_FILE}: invalid YAML: {exc}"]
        )
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        warning = f"{README_FILE}: the front matter is a {type(loaded).__name__}, not a mapping of fields"
        return Card(data={}, markdown=markdown, generated=False, warnings=[warning])
    data = _known_fields(loaded, warnings)
    metrics: list[Metric] = []
    if loaded.get("model-index") is not None:
        data["model-index"], metrics = _model_index(loaded["model-index"], warnings)
    return Card(data=data, markdown=markdown, generated=False, warnings=warnings, metrics=metrics)


def _known_fields(loaded: dict[Any, Any], warnings: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in _SCALARS:
        if (value := _text(loaded.get(key), key, warnings)) is not None:
            data[key] = value
    if data.get("base_model_relation") not in (None, *RELATIONS):
        warnings.append(
            f"{README_FILE}: base_model_relation {data.pop('base_model_relation')!r} is not one of "
            f"{', '.join(RELATIONS)}; it was left out"
        )
    for key in _LISTS:
        if (values := _texts(loaded.get(key), key, warnings)) is not None:
            data[key] = values
    base = loaded.get("base_model")
    if isinstance(base, list):
        if (bases := _texts(base, "base_model", warnings)) is not None:
            data["base_model"] = bases
    elif (one := _text(base, "base_model", warnings)) is not None:
        data["base_model"] = one
    return data


def _text(value: Any, key: str, warnings: list[str]) -> str | None:
    """A string field: numbers are read as their text; null and "" are absent; anything else is a
    warning."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        warnings.append(f"{README_FILE}: {key} is the boolean {value}; quote it if it is a name")
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        warnings.append(f"{README_FILE}: {key} must be a string, not a {type(value).__name__}")
        return None
    if "\x00" in value:
        warnings.append(f"{README_FILE}: {key} contains a NUL character")
        return None
    return value


def _texts(value: Any, key: str, warnings: list[str]) -> list[str] | None:
    """A list of strings; a single string is a one-item list; duplicates are dropped."""
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    found = [_text(item, f"{key} item", warnings) for item in items]
    return list(dict.fromkeys(item for item in found if item is not None))


def _model_index(value: Any, warnings: list[str]) -> tuple[list[dict[str, Any]], list[Metric]]:
    """The ``model-index`` rebuilt from what reads correctly, and its metrics. A metric is addressed as
    ``<dataset type>/<metric type>``: the benchmark, as lm-evaluation-harness names its tasks."""
    entries: list[dict[str, Any]] = []
    metrics: list[Metric] = []
    seen: set[str] = set()
    for entry in value if isinstance(value, list) else [value]:
        if not isinstance(entry, dict) or not isinstance(entry.get("results"), list):
            warnings.append(f"{README_FILE}: a model-index entry needs name and a results list")
            continue
        results = []
        for result in entry["results"]:
            read = _result(result, warnings)
            if read is None:
                continue
            rebuilt, found = read
            kept = []
            for metric, item in found:
                if len(metrics) >= MAX_METRICS:
                    warnings.append(
                        f"{README_FILE}: model-index lists over {MAX_METRICS} metrics; kept the first"
                    )
                    return entries, metrics
                if metric.name in seen:
                    warnings.append(f"{README_FILE}: model-index lists {metric.name} twice; kept the first")
                    continue
                seen.add(metric.name)
                metrics.append(metric)
                kept.append(item)
            if kept:
                results.append({**rebuilt, "metrics": kept})
        name = entry.get("name")
        entries.append({"name": name if isinstance(name, str) else "", "results": results})
    return entries, metrics


def _result(
    result: Any, warnings: list[str]
) -> tuple[dict[str, Any], list[tuple[Metric, dict[str, Any]]]] | None:
    """One ``results`` item: its task and dataset, and each of its metrics with a numeric value."""
    task = result.get("task") if isinstance(result, dict) else None
    dataset = result.get("dataset") if isinstance(result, dict) else None
    if (
        not isinstance(task, dict)
        or not isinstance(dataset, dict)
        or not isinstance(result.get("metrics"), list)
    ):
        warnings.append(f"{README_FILE}: a model-index result needs task, dataset and a metrics list")
        return None
    task_type, dataset_type = _name(task.get("type")), _name(dataset.get("type"))
    if task_type is None or dataset_type is None:
        warnings.append(
            f"{README_FILE}: a model-index result needs task.type and dataset.type (short strings)"
        )
        return None
    dataset_name = _name(dataset.get("name")) or dataset_type
    rebuilt = {
        "task": {"type": task_type, **_strings(task, "name")},
        "dataset": {
            "type": dataset_type,
            "name": dataset_name,
            **_strings(dataset, "config", "split", "revision"),
        },
    }
    found = []
    for item in result["metrics"]:
        metric_type = _name(item.get("type")) if isinstance(item, dict) else None
        value = _value(item.get("value")) if isinstance(item, dict) else None
        if metric_type is None or value is None:
            warnings.append(
                f"{README_FILE}: a {dataset_type} metric needs a type and a numeric value "
                "(a number, or 'value ± stderr')"
            )
            continue
        metric = Metric(
            task=dataset_type, metric=metric_type, value=value[0], stderr=value[1], dataset=dataset_name
        )
        found.append((metric, {"type": metric_type, "value": value[0], **_strings(item, "name")}))
    return rebuilt, found


def _name(value: Any) -> str | None:
    return (
        value if isinstance(value, str) and value and len(value) <= MAX_NAME and "\x00" not in value else None
    )


def _strings(source: dict[str, Any], *keys: str) -> dict[str, str]:
    return {key: source[key] for key in keys if _name(source.get(key)) is not None}


def _value(value: Any) -> tuple[float, float | None] | None:
    """A metric value: a finite number, or ``'0.61 ± 0.02'`` (value and stderr)."""
    stderr = None
    if isinstance(value, str) and (match := _PLUS_MINUS.match(value)):
        try:
            value, stderr = float(match.group(1)), float(match.group(2))
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if stderr is not None and not math.isfinite(stderr):
        return None
    return float(value), stderr


# The card the registry writes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """The version a generated card describes."""

    repo: str
    number: int
    kind: str  # adapter or model
    base_name: str
    base_digest: str  # the base's content digest
    base_revisions: list[str]  # the Hugging Face commit SHAs it answers to
    config: dict[str, Any]  # the version's config summary (push.py)
    message: str | None = None


@dataclass(frozen=True)
class Lineage:
    """How a job made the version: its inputs as submitted (repo, number, digest, ref), its parameters and
    its report (errors, retained energy, notes)."""

    job: str
    kind: str  # merge, merge_base or extract
    inputs: list[dict[str, Any]]
    params: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


_MADE_BY = {
    "merge": "a merge of",
    "merge_base": "the adapter merged into its base's weights:",
    "extract": "a LoRA extracted from",
}


def generated_card(subject: Subject, lineage: Lineage | None = None, *, warnings: Iterable[str] = ()) -> Card:
    """The card of a version without a readable README.md, or made by a job: what the registry knows of
    it, and its lineage as prose."""
    data: dict[str, Any] = {
        "base_model": subject.base_name,
        "base_model_relation": "adapter" if subject.kind == "adapter" else "finetune",
    }
    if subject.kind == "adapter":
        data["library_name"] = "peft"
    what = "A LoRA adapter" if subject.kind == "adapter" else "Full model weights"
    lines = [
        f"# {subject.repo} #{subject.number}",
        "",
        f"{what} for base model **{subject.base_name}** (content digest `sha256:{subject.base_digest}`"
        + "".join(f", Hugging Face commit `{sha}`" for sha in subject.base_revisions)
        + ").",
        "",
        _contents(subject.config),
    ]
    if subject.message:
        lines += ["", f"> {subject.message}"]
    if lineage is not None:
        lines += ["", "## Lineage", "", *_lineage(lineage)]
    lines += [
        "",
        f"*Generated by lorareg: {'made by a job' if lineage else f'the version has no {README_FILE}'}.*",
        "",
    ]
    return Card(data=data, markdown="\n".join(lines), generated=True, warnings=list(warnings))


def _contents(config: dict[str, Any]) -> str:
    if config.get("kind") == "model":
        return (
            f"- {config.get('parameters', 0):,} parameters in {config.get('tensors', 0)} tensors "
            f"({config.get('safetensors_files', 0)} safetensors files)"
        )
    alpha = f"alpha {config.get('lora_alpha')}" + (" (rsLoRA)" if config.get("use_rslora") else "")
    ranks = config.get("ranks") or [config.get("r")]
    rank = f"rank {config.get('r')}" + (f" (ranks {', '.join(map(str, ranks))})" if len(ranks) > 1 else "")
    targets = ", ".join(config.get("target_modules", [])) or "-"
    return f"- {rank}, {alpha}\n- targets: {targets} ({config.get('modules', 0)} modules)"


def _lineage(lineage: Lineage) -> list[str]:
    method = lineage.params.get("method")
    made_by = (
        f"a {method} merge of"
        if lineage.kind == "merge" and method
        else _MADE_BY.get(lineage.kind, lineage.kind)
    )
    weights = lineage.params.get("weights") if lineage.kind == "merge" else None
    lines = [f"Made by job `{lineage.job}` ({lineage.kind}), {made_by}", ""]
    for i, item in enumerate(lineage.inputs):
        named = item.get("ref") or f"{item['repo']}#{item['number']}"
        weight = f", weight {weights[i]}" if isinstance(weights, list) and i < len(weights) else ""
        lines.append(f"- `{named}`: {item['repo']} #{item['number']} (`sha256:{item['digest']}`){weight}")
    params = {k: v for k, v in lineage.params.items() if k != "method"}
    if params:
        lines += ["", "Parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(params.items())) + "."]
    reported = list(_reported(lineage.report))
    if reported:
        lines += ["", "Reported by the job:", "", *(f"- {key}: {value}" for key, value in reported)]
    return lines


def _reported(report: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """The report's scalar facts and short lists of names (errors, energy, notes, skipped tensors), one
    level of nesting deep; per-module tables are left to ``lorareg jobs show``."""
    for key, value in report.items():
        name = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, bool | int | float | str) and key not in ("method", "params", "inputs"):
            yield name, f"{value:.6g}" if isinstance(value, float) else value
        elif (
            isinstance(value, list) and value and len(value) <= 10 and all(isinstance(v, str) for v in value)
        ):
            yield name, "; ".join(value)
        elif isinstance(value, dict) and not prefix:
            yield from _reported(value, f"{key} ")


# The Hub's view ---------------------------------------------------------------------------------------


def hub_fields(card: Card, *, kind: str, base_name: str, file_paths: Iterable[str]) -> dict[str, Any]:
    """``cardData``, ``tags``, ``library_name`` and ``pipeline_tag`` of ``/api/models/{repo}``, as the Hub
    derives them from a card: its own tags, then ``base_model:…``, ``dataset:…``, languages, ``license:…``."""
    data = card.data
    library = data.get("library_name") or ("peft" if kind == "adapter" else None)
    relation = data.get("base_model_relation") or ("adapter" if kind == "adapter" else "finetune")
    named = data.get("base_model")
    bases = [base_name, *([named] if isinstance(named, str) else named or [])]
    tags = [
        *([library] if library else []),
        *(["lora"] if kind == "adapter" else []),
        *(["safetensors"] if any(path.endswith(".safetensors") for path in file_paths) else []),
        *data.get("tags", []),
        *([data["pipeline_tag"]] if data.get("pipeline_tag") else []),
        *(f"dataset:{name}" for name in data.get("datasets", [])),
        *data.get("language", []),
        *(tag for base in bases for tag in (f"base_model:{base}", f"base_model:{relation}:{base}")),
        *([f"license:{data['license']}"] if data.get("license") else []),
    ]
    return {
        "cardData": data,
        "tags": list(dict.fromkeys(tags)),
        "library_name": library,
        "pipeline_tag": data.get("pipeline_tag"),
    }
