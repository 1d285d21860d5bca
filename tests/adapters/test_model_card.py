"""Model cards, pure: README.md front matter read as the Hub reads it, generated cards, the Hub's tags."""

from __future__ import annotations

from dataclasses import replace

import pytest
from huggingface_hub import ModelCard, ModelCardData

from registry.adapters.eval_results import Metric
from registry.adapters.model_card import (
    MAX_CARD_SIZE,
    Lineage,
    Subject,
    hub_fields,
    parse_card,
    version_card,
)
from tests.model_cards import INVALID_YAML_README, SQL_ADAPTER_README

SUBJECT = Subject(
    repo="acme/sql-bot",
    number=3,
    kind="adapter",
    base_name="tiny-llama",
    base_digest="ab" * 32,
    base_revisions=["c" * 40],
    config={
        "kind": "adapter",
        "r": 8,
        "lora_alpha": 16,
        "ranks": [8],
        "target_modules": ["q_proj", "v_proj"],
        "modules": 4,
    },
)


def test_the_hub_fields_of_a_realistic_card() -> None:
    card = parse_card(SQL_ADAPTER_README)
    assert card.warnings == [] and card.generated is False
    assert card.markdown.startswith("\n# llama-3.1-8b-sql-lora") and "## Training" in card.markdown
    data = card.data
    assert data["base_model"] == "meta-llama/Llama-3.1-8B" and data["base_model_relation"] == "adapter"
    assert data["language"] == ["en"]  # a single value is a one-item list, as the Hub reads it
    assert data["datasets"] == ["b-mc2/sql-create-context", "gretelai/synthetic_text_to_sql"]
    assert (data["license"], data["library_name"], data["pipeline_tag"]) == (
        "apache-2.0",
        "peft",
        "text-generation",
    )
    assert card.metrics == [
        Metric("spider", "exact_match", 0.712, None, "Spider (dev)"),
        Metric("spider", "execution_accuracy", 0.764, 0.011, "Spider (dev)"),
        Metric("hellaswag", "acc_norm", 81.9, None, "HellaSwag (10-Shot)"),
    ]
    # huggingface_hub reads the stored model-index back into the same eval results
    hub = ModelCardData(**data)
    assert [(r.dataset_type, r.metric_type, r.metric_value) for r in hub.eval_results] == [
        ("spider", "exact_match", 0.712),
        ("spider", "execution_accuracy", 0.764),
        ("hellaswag", "acc_norm", 81.9),
    ]
    assert hub.model_name == "llama-3.1-8b-sql-lora"


def test_agrees_with_huggingface_hub_on_the_known_fields() -> None:
    theirs = ModelCard(SQL_ADAPTER_README).data.to_dict()
    ours = parse_card(SQL_ADAPTER_README).data
    for key in ("base_model", "base_model_relation", "license", "library_name", "pipeline_tag", "datasets"):
        assert ours[key] == theirs[key], key
    assert ours["tags"] == theirs["tags"]


@pytest.mark.parametrize(
    ("readme", "warning"),
    [
        (INVALID_YAML_README, "invalid YAML"),
        ("---\n- just\n- a list\n---\ntext\n", "not a mapping"),
        ("---\nlicense: [mit, apache-2.0]\n---\n", "license must be a string"),
        ("---\nlanguage: no\n---\n", "boolean"),  # YAML 1.1 reads Norwegian as false
        ("---\nbase_model_relation: cousin\n---\n", "base_model_relation 'cousin'"),
        (
            "---\nmodel-index:\n- name: x\n  results:\n  - task: {type: t}\n    dataset: {type: d}\n"
            "    metrics: [{type: acc, value: high}]\n---\n",
            "numeric value",
        ),
    ],
)
def test_unreadable_front_matter_is_a_warning(readme: str, warning: str) -> None:
    card = parse_card(readme)
    assert card.generated is False and any(warning in w for w in card.warnings), card.warnings


def test_a_readme_without_front_matter_is_all_markdown() -> None:
    card = parse_card("# Just a title\n\nsome text\n")
    assert card.data == {} and card.markdown == "# Just a title\n\nsome text\n" and card.warnings == []


def test_a_metric_listed_twice_keeps_the_first() -> None:
    readme = (
        "---\nmodel-index:\n- name: x\n  results:\n"
        "  - {task: {type: t}, dataset: {type: d}, metrics: [{type: acc, value: 1}, {type: acc, value: 2}]}\n"
        "---\n"
    )
    card = parse_card(readme)
    assert [m.value for m in card.metrics] == [1.0] and "twice" in card.warnings[0]


def test_generated_when_there_is_no_readable_readme() -> None:
    missing = version_card(SUBJECT, readme=None, readme_size=None)
    assert missing.generated and missing.warnings == []
    assert missing.data == {
        "base_model": "tiny-llama",
        "base_model_relation": "adapter",
        "library_name": "peft",
    }
    assert "acme/sql-bot #3" in missing.markdown and f"sha256:{'ab' * 32}" in missing.markdown
    assert (
        "c" * 40 in missing.markdown
        and "rank 8, alpha 16" in missing.markdown
        and "q_proj, v_proj" in missing.markdown
    )
    too_large = version_card(SUBJECT, readme=None, readme_size=MAX_CARD_SIZE + 1)
    assert too_large.generated and "over the" in too_large.warnings[0]
    binary = version_card(SUBJECT, readme=b"\xff\xfe\x00", readme_size=3)
    assert binary.generated and "not UTF-8" in binary.warnings[0]
    parsed = version_card(SUBJECT, readme=SQL_ADAPTER_README.encode(), readme_size=len(SQL_ADAPTER_README))
    assert not parsed.generated and parsed.data["license"] == "apache-2.0"


def test_a_job_output_tells_its_lineage() -> None:
    lineage = Lineage(
        job="j1",
        kind="merge",
        inputs=[
            {"repo": "acme/a", "number": 1, "digest": "1" * 64, "ref": "acme/a:v1"},
            {"repo": "acme/b", "number": 2, "digest": "2" * 64, "ref": "acme/b#2"},
        ],
        params={"method": "ties", "weights": [0.7, 0.3], "density": 0.5},
        report={
            "rank": 16,
            "truncation_error": {"max": 0.0123456789, "per_module": {"q": 0.1}},
            "notes": ["n1"],
        },
    )
    card = version_card(SUBJECT, readme=SQL_ADAPTER_README.encode(), readme_size=10, lineage=lineage)
    assert card.generated  # a job's output always gets the registry's card
    text = card.markdown
    assert "job `j1` (merge), a ties merge of" in text
    assert f"`acme/a:v1`: acme/a #1 (`sha256:{'1' * 64}`), weight 0.7" in text
    assert "density=0.5" in text and "truncation error max: 0.0123457" in text and "notes: n1" in text
    assert "per_module" not in text and "per module" not in text


def test_hub_tags() -> None:
    fields = hub_fields(
        parse_card(SQL_ADAPTER_README),
        kind="adapter",
        base_name="tiny-llama",
        file_paths=["adapter_model.safetensors", "README.md"],
    )
    tags = fields["tags"]
    for tag in (
        "peft",
        "lora",
        "safetensors",
        "text-to-sql",
        "dataset:b-mc2/sql-create-context",
        "en",
        "base_model:tiny-llama",
        "base_model:adapter:tiny-llama",
        "base_model:meta-llama/Llama-3.1-8B",
        "base_model:adapter:meta-llama/Llama-3.1-8B",
        "license:apache-2.0",
        "text-generation",
    ):
        assert tag in tags, tag
    assert len(tags) == len(set(tags)) and fields["library_name"] == "peft"
    merged = replace(SUBJECT, kind="model", config={"kind": "model", "parameters": 10, "tensors": 2})
    model = hub_fields(
        version_card(merged, readme=None, readme_size=None),
        kind="model",
        base_name="tiny-llama",
        file_paths=[],
    )
    assert model["tags"] == ["base_model:tiny-llama", "base_model:finetune:tiny-llama"]
    assert model["library_name"] is None
