"""Model cards through the real CLI, the API and the huggingface_hub client: README.md front matter
parsed at push (a warning, never a refusal, when it cannot be), generated cards for versions without one
and for job outputs, ``show``, ``GET …/card`` and ``/hf/api/models``."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants

from registry.adapters.model_card import MAX_CARD_SIZE
from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer, TinyBase
from tests.model_cards import INVALID_YAML_README, SQL_ADAPTER_README


@pytest.fixture
def with_readme(adapter_factory, tmp_path: Path):
    """``with_readme(text)`` → a copy of an adapter directory with ``README.md`` holding ``text``."""

    def make(text: str | bytes, seed: int = 41) -> Path:
        directory = tmp_path / f"adapter-{hashlib.sha256(str(text).encode()).hexdigest()[:8]}"
        shutil.copytree(adapter_factory(seed=seed), directory)
        readme = directory / "README.md"
        readme.write_bytes(text if isinstance(text, bytes) else text.encode())
        return directory

    return make


@pytest.fixture
def base(server: LiveServer, tiny_base: TinyBase) -> str:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    return tiny_base.content_digest


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    yield


def card(server: LiveServer, ref: str) -> dict:
    response = server.http.get(f"/api/v1/repos/{ref.replace('#', '/versions/%23')}/card")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_readme_card_is_parsed_at_push_and_shown(
    server: LiveServer, base: str, with_readme, repo: str, online: None
) -> None:
    pushed = run_json(server, "push", str(with_readme(SQL_ADAPTER_README)), repo, "--base", base)
    assert pushed["warnings"] == []

    got = card(server, f"{repo}#1")
    assert got["generated"] is False and got["warnings"] == []
    assert got["card_data"]["license"] == "apache-2.0" and got["card_data"]["language"] == ["en"]
    assert got["markdown"].lstrip().startswith("# llama-3.1-8b-sql-lora")
    markdown = server.http.get(f"/api/v1/repos/{repo}/versions/latest/card", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown") and markdown.text == got["markdown"]
    accepted = server.http.get(
        f"/api/v1/repos/{repo}/versions/latest/card", headers={"Accept": "text/markdown"}
    )
    assert accepted.text == got["markdown"]

    metrics = server.http.get(f"/api/v1/repos/{repo}/versions/%231/evals").json()
    by_name = {(m["name"], m["source"]): m for m in metrics}
    assert by_name[("spider/execution_accuracy", "card")]["value"] == pytest.approx(0.764)
    assert by_name[("spider/execution_accuracy", "card")]["stderr"] == pytest.approx(0.011)
    assert by_name[("hellaswag/acc_norm", "card")]["value"] == pytest.approx(81.9)

    shown = run(server, "show", f"{repo}:latest").stdout
    for line in (
        "card:    from README.md",
        "base_model: meta-llama/Llama-3.1-8B (adapter)",
        "license: apache-2.0",
        "pipeline_tag: text-generation",
        "datasets: b-mc2/sql-create-context, gretelai/synthetic_text_to_sql",
        "language: en",
        "tags: text-to-sql, lora, generated_from_trainer",
    ):
        assert line in shown, shown
    evals = [line.split() for line in shown.splitlines() if "spider/execution_accuracy" in line]
    assert evals == [["spider/execution_accuracy", "0.764", "±", "0.011", "(card)"]]  # among the evals
    assert run_json(server, "show", repo)["card"] == got

    info = huggingface_hub.HfApi(endpoint=f"{server.url}/hf", token=False).model_info(repo)
    assert info.card_data is not None and info.card_data.license == "apache-2.0"
    assert info.card_data.base_model == "meta-llama/Llama-3.1-8B"
    results = [(r.dataset_type, r.metric_type) for r in info.card_data.eval_results]
    assert results[:2] == [("spider", "exact_match"), ("spider", "execution_accuracy")]
    for tag in (
        "peft",
        "lora",
        "base_model:adapter:tiny-llama",
        "base_model:tiny-llama",
        "base_model:adapter:meta-llama/Llama-3.1-8B",
        "license:apache-2.0",
        "text-to-sql",
        "dataset:gretelai/synthetic_text_to_sql",
    ):
        assert tag in info.tags, info.tags
    assert info.library_name == "peft" and info.pipeline_tag == "text-generation"
    assert (
        huggingface_hub.HfApi(endpoint=f"{server.url}/hf", token=False)
        .model_info(repo, revision=pushed["digest"][7:47])
        .tags
        == info.tags
    )


@pytest.mark.parametrize(
    ("readme", "warning", "generated"),
    [
        (INVALID_YAML_README, "README.md: invalid YAML", False),
        ("---\n- a\n- list\n---\n# x\n", "not a mapping of fields", False),
        ("---\nlicense: {name: mit}\ntags: sql\n---\n# x\n", "license must be a string, not a dict", False),
        (b"---\nlicense: mit\n---\n\xff\xfe", "not UTF-8 text", True),
        ("x" * (MAX_CARD_SIZE + 1), f"over the {MAX_CARD_SIZE}", True),
    ],
    ids=["invalid-yaml", "not-a-mapping", "wrong-type", "not-text", "too-large"],
)
def test_an_unreadable_card_is_a_warning_never_a_refusal(
    server: LiveServer,
    base: str,
    with_readme,
    repo: str,
    tmp_path: Path,
    readme,
    warning: str,
    generated: bool,
) -> None:
    directory = with_readme(readme)
    pushed = run(server, "push", str(directory), repo, "--base", base)  # exit 0
    assert "warning: README.md" in pushed.stderr and warning in pushed.stderr, pushed.stderr
    again = run_json(server, "push", str(directory), repo, "--base", base)  # the same version, same answer
    assert again["created"] is False and any(warning in w for w in again["warnings"])

    got = card(server, f"{repo}#1")
    assert got["generated"] is generated and any(warning in w for w in got["warnings"])
    if warning == "license must be a string, not a dict":
        assert got["card_data"] == {"tags": ["sql"]}  # what could be read is kept
    pulled = tmp_path / "pulled"
    run(server, "pull", repo, "-o", str(pulled))
    assert (pulled / "README.md").read_bytes() == (directory / "README.md").read_bytes()  # stored unchanged
    assert "warning" in run(server, "show", repo).stdout


def test_a_version_without_readme_gets_a_generated_card(
    server: LiveServer, base: str, with_readme, repo: str, online: None
) -> None:
    directory = with_readme("")
    (directory / "README.md").unlink()  # PEFT's save_pretrained writes one
    pushed = run_json(server, "push", str(directory), repo, "--base", base, "-m", "first cut")
    got = card(server, f"{repo}#1")
    assert got["generated"] is True and got["warnings"] == []
    assert got["card_data"] == {
        "base_model": "tiny-llama",
        "base_model_relation": "adapter",
        "library_name": "peft",
    }
    text = got["markdown"]
    assert f"# {repo} #1" in text and f"`sha256:{base}`" in text and "> first cut" in text
    assert "rank 8, alpha" in text and "targets: " in text
    assert "README.md" not in {
        f["path"] for f in server.http.get(f"/api/v1/repos/{repo}/versions/%231").json()["files"]
    }
    assert "card:    generated by the registry" in run(server, "show", repo).stdout
    info = huggingface_hub.HfApi(endpoint=f"{server.url}/hf", token=False).model_info(repo)
    assert "base_model:adapter:tiny-llama" in info.tags and info.card_data.base_model == "tiny-llama"
    assert pushed["warnings"] == []


def test_a_merge_output_card_tells_its_lineage(
    server: LiveServer, base: str, adapter_factory, with_readme, repo: str
) -> None:
    first = run_json(
        server, "push", str(with_readme(SQL_ADAPTER_README, seed=11)), f"{repo}-a:v1", "--base", base
    )
    second = run_json(server, "push", str(adapter_factory(seed=12, r=4)), f"{repo}-b", "--base", base)
    job = run_json(
        server,
        "merge",
        f"{repo}-a:v1",
        f"{repo}-b",
        "--method",
        "cat",
        "--weights",
        "0.7,0.3",
        "--into",
        f"{repo}-blend",
    )
    assert job["status"] == "succeeded", job
    got = card(server, f"{repo}-blend#1")
    assert got["generated"] is True
    text = got["markdown"]
    assert f"Made by job `{job['id']}` (merge), a cat merge of" in text
    assert f"- `{repo}-a:v1`: {repo}-a #1 (`{first['digest']}`), weight 0.7" in text
    assert f"- `{repo}-b:latest`: {repo}-b #1 (`{second['digest']}`), weight 0.3" in text
    assert (
        "Parameters: weights=[0.7, 0.3]." in text and "Reported by the job:" in text and "- rank: 12" in text
    )
    assert got["card_data"]["base_model"] == "tiny-llama"  # not the first input's README


def test_the_card_is_read_like_its_version(server: LiveServer, base: str, adapter_factory, repo: str) -> None:
    assert server.http.get(f"/api/v1/repos/{repo}/versions/latest/card").status_code == 404
    run(server, "push", str(adapter_factory(seed=43)), repo, "--base", base)
    missing = server.http.get(f"/api/v1/repos/{repo}/versions/%239/card")
    assert missing.status_code == 404 and "no version" in missing.json()["error"]["message"]
