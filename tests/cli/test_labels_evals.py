"""Labels, eval results, ``compare`` and repository descriptions: the real ``lorareg`` and the API
against a live server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.adapters.eval_results import Metric
from registry.db.models import Repository, Version
from registry.db.session import Database
from registry.services import evals
from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "lm_eval_results.json"


def labels_of(server: LiveServer, ref: str) -> dict[str, str]:
    return {label["key"]: label["value"] for label in run_json(server, "label", ref)}


def test_labels_on_a_repository_and_on_a_version(
    server: LiveServer, two_versions: list[dict], repo: str
) -> None:
    said = run(server, "label", repo, "team=nlp", "owner=ml", "task/kind=sql").stdout
    assert f"set team=nlp on {repo}" in said and "task/kind=sql" in said
    run(server, "label", f"{repo}:latest", "validation=approved")
    assert labels_of(server, repo) == {"owner": "ml", "task/kind": "sql", "team": "nlp"}
    assert labels_of(server, f"{repo}#2") == {"validation": "approved"}  # :latest is #2
    assert labels_of(server, f"{repo}#1") == {}
    assert labels_of(server, f"{repo}@{two_versions[1]['digest']}") == {"validation": "approved"}

    again = run(server, "label", f"{repo}#2", "validation=approved").stdout
    assert "nothing changed" in again
    changed = run_json(server, "label", repo, "team=search", "--rm", "owner", "--rm", "absent")
    assert changed["changed"] == ["team", "owner"] and {la["key"] for la in changed["labels"]} == {
        "task/kind",
        "team",
    }
    assert run(server, "label", repo).stdout.splitlines() == ["task/kind=sql", "team=search"]

    history = run_json(server, "label", repo, "--history")
    assert [(e["key"], e["old"], e["new"]) for e in history] == [
        ("owner", "ml", None),
        ("team", "nlp", "search"),
        ("task/kind", None, "sql"),
        ("owner", None, "ml"),
        ("team", None, "nlp"),
    ]
    assert {e["actor"] for e in history} == {"anonymous"}
    shown = run(server, "label", repo, "--history").stdout
    assert "owner: removed (was 'ml')" in shown and "team: 'nlp' -> 'search'  by anonymous" in shown
    version_history = run_json(server, "label", f"{repo}#2", "--history")
    assert [(e["key"], e["new"]) for e in version_history] == [("validation", "approved")]  # set once

    page = server.http.get(f"/api/v1/repos/{repo}/labels/history", params={"limit": 2, "key": "team"})
    assert [e["new"] for e in page.json()] == ["search", "nlp"] and "next" not in page.links
    first = server.http.get(f"/api/v1/repos/{repo}/labels/history", params={"limit": 2})
    rest = server.http.get(first.links["next"]["url"])
    assert [e["key"] for e in first.json() + rest.json()] == ["owner", "team", "task/kind", "owner"]
    assert [e["key"] for e in server.http.get(rest.links["next"]["url"]).json()] == ["team"]

    assert server.http.delete(f"/api/v1/repos/{repo}/labels/task/kind").status_code == 204
    missing = server.http.delete(f"/api/v1/repos/{repo}/labels/task/kind")
    assert (
        missing.status_code == 404 and f"no label task/kind on {repo}" in missing.json()["error"]["message"]
    )
    audit = server.http.get("/api/v1/audit", params={"action": "label.set", "limit": 50}).json()
    assert any(e["target"] == f"{repo}#2" and e["detail"]["changed"] == [] for e in audit)


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        (["good=1", "Bad=2"], "invalid label key 'Bad'"),
        (["good=1", ".x=2"], "invalid label key '.x'"),
        (["good=1", "k" * 129 + "=v"], "at most 128 characters"),
        (["good=1", "big=" + "é" * 513], "label big's value is 1026 bytes (UTF-8); at most 1024"),
        (["good=1", "--rm", "good"], "label good is both set and removed"),
        ([f"k{i}=v" for i in range(65)], "would have 65 labels; at most 64"),
    ],
)
def test_bad_labels_are_refused_all_or_nothing(
    server: LiveServer, two_versions: list[dict], repo: str, pairs: list[str], says: str
) -> None:
    refused = run(server, "label", f"{repo}#1", *pairs, check=1)
    assert says in refused.stderr
    assert labels_of(server, f"{repo}#1") == {}
    assert server.http.get(f"/api/v1/repos/{repo}/versions/%231/labels/history").json() == []


def test_label_usage_errors(server: LiveServer, two_versions: list[dict], repo: str) -> None:
    assert "give KEY=VALUE" in run(server, "label", repo, "novalue", check=2).stderr
    assert "--history" in run(server, "label", repo, "a=1", "--history", check=2).stderr
    body = server.http.put(f"/api/v1/repos/{repo}/labels", json={"labels": {"n": 3}})
    assert body.status_code == 422 and "labels.n" in body.json()["error"]["message"]  # not a string
    assert run(server, "label", "nobody/here", "a=1", check=1).stderr.startswith("Error: repository")


def test_eval_results_show_and_compare(
    server: LiveServer, two_versions: list[dict], repo: str, tmp_path: Path
) -> None:
    attached = run_json(server, "eval", f"{repo}#1", str(FIXTURE))
    assert len(attached["attached"]) == 10
    acc = next(m for m in attached["metrics"] if m["name"] == "arc_easy/acc")
    assert (acc["task"], acc["metric"], acc["value"], acc["source"]) == (
        "arc_easy",
        "acc",
        0.7643097643097643,
        "eval",
    )
    assert acc["stderr"] == 0.008709108323214466 and acc["dataset"] == "allenai/ai2_arc"
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"arc_easy/acc": 0.81, "mmlu/acc": 0.65, "sql_exact": 0.7}))
    said = run(server, "eval", f"{repo}:latest", str(flat)).stdout
    assert f"attached 3 metrics to {repo}:latest" in said and "sql_exact" in said

    shown = run(server, "show", f"{repo}#1").stdout
    assert "gsm8k/exact_match,strict-match" in shown and "0.7643 ± 0.0087  (eval)" in shown
    run(server, "label", f"{repo}#1", "validation=approved")
    as_json = run_json(server, "show", f"{repo}#1")
    assert [la["key"] for la in as_json["labels"]] == ["validation"] and len(as_json["evals"]) == 10
    assert "labels:  validation=approved" in run(server, "show", f"{repo}#1").stdout

    table = run(server, "compare", f"{repo}#1", f"{repo}#2").stdout.splitlines()
    assert table[0].split() == ["metric", f"{repo}#1", f"{repo}#2"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert rows["arc_easy/acc"] == ["0.7643", "±", "0.0087", "0.81"]
    assert rows["sql_exact"] == ["-", "0.7"] and rows["wikitext/word_perplexity"] == ["9.915", "-"]
    compared = run_json(server, "compare", f"{repo}#1", f"{repo}#2")
    assert compared["refs"] == [f"{repo}#1", f"{repo}#2"]
    assert compared["metrics"]["mmlu/acc"][f"{repo}#2"] == {"value": 0.65, "stderr": None, "source": "eval"}
    assert compared["metrics"]["gsm8k/exact_match,flexible-extract"][f"{repo}#2"] is None

    # Attaching again replaces the metrics of the same names and keeps the others.
    flat.write_text(json.dumps({"arc_easy/acc": 0.9}))
    run(server, "eval", f"{repo}#2", str(flat))
    now = {m["name"]: m["value"] for m in run_json(server, "show", f"{repo}#2")["evals"]}
    assert now == {"arc_easy/acc": 0.9, "mmlu/acc": 0.65, "sql_exact": 0.7}
    assert "usage" in run(server, "compare", f"{repo}#1", check=2).stderr.lower()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"acc": NaN}', "'acc' is nan, not a finite number"),
        ('{"acc": "high"}', "'acc' is a string ('high'), not a number"),
        ('[{"acc": 0.5}]', "JSON object, not an array"),
        (
            '{"results": {"arc": {"acc,none": 0.5, "acc_stderr,none": []}}}',
            "'results.arc.acc_stderr' is an array",
        ),
        ('{"acc": 0.5', "is not JSON"),
    ],
)
def test_bad_eval_files_exit_1_with_the_reason(
    server: LiveServer, two_versions: list[dict], repo: str, tmp_path: Path, content: str, says: str
) -> None:
    results = tmp_path / "results.json"
    results.write_text(content)
    assert says in run(server, "eval", f"{repo}#1", str(results), check=1).stderr
    assert server.http.get(f"/api/v1/repos/{repo}/versions/%231/evals").json() == []


def test_card_and_eval_metrics_are_listed_together(
    server: LiveServer, two_versions: list[dict], repo: str, tmp_path: Path
) -> None:
    """What a push records from the card's model-index (``source='card'``) sits beside attached evals."""
    namespace, name = repo.split("/")
    db = Database.connect(server.settings.resolved_database_url)
    with db.transaction() as session:
        version = session.scalars(
            select(Version)
            .join(Repository)
            .where(Repository.namespace == namespace, Repository.name == name, Version.number == 1)
        ).one()
        card = [Metric("arc_easy", "acc", 0.7), Metric("arc_easy", "acc", 0.1), Metric("", "bleu", 31.5)]
        evals.record(session, version, card, source="card", actor="anonymous")
    db.dispose()
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"arc_easy/acc": 0.75}))
    run(server, "eval", f"{repo}#1", str(flat))
    listed = server.http.get(f"/api/v1/repos/{repo}/versions/%231/evals").json()
    assert [(m["name"], m["source"], m["value"]) for m in listed] == [
        ("arc_easy/acc", "card", 0.7),  # a name given twice keeps its first value
        ("arc_easy/acc", "eval", 0.75),
        ("bleu", "card", 31.5),
    ]
    table = run(server, "compare", f"{repo}#1", f"{repo}#2").stdout
    assert "0.75" in table and "31.5*" in table and "* from the model card's model-index" in table


def test_repository_descriptions(server: LiveServer, two_versions: list[dict], repo: str) -> None:
    said = run(server, "repo", "describe", repo, "Text-to-SQL for the Llama base").stdout
    assert said.strip() == f"{repo}: Text-to-SQL for the Llama base"
    listed = run(server, "ls", repo.split("/")[0]).stdout
    assert f"{repo}  private  (2 versions)  Text-to-SQL for the Llama base" in listed
    assert server.http.get(f"/api/v1/repos/{repo}").json()["description"] == "Text-to-SQL for the Llama base"
    assert (
        "at most 1024 characters, got 1025"
        in run(server, "repo", "describe", repo, "x" * 1025, check=1).stderr
    )
    assert "one line" in run(server, "repo", "describe", repo, "two\nlines", check=1).stderr
    run(server, "repo", "describe", repo, "")
    assert run_json(server, "ls", repo.split("/")[0])[0]["description"] is None
