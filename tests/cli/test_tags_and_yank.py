"""Tags, yank and unyank, refs in ``--expect``, and what ``show``/``log``/``ls``/``tags`` print: the real
``lorareg`` against a live server."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from registry.config import Settings
from registry.errors import InvalidInput
from registry.refs import Ref, RepoName
from tests.cli.test_cli import run, run_json
from tests.cli_runner import lorareg
from tests.conftest import LiveServer, TinyBase, start_server


def tag_numbers(server: LiveServer, repo: str) -> dict[str, tuple[int, bool]]:
    return {t["name"]: (t["number"], t["yanked"]) for t in run_json(server, "tags", repo)}


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("#1", Ref("number", "1")),
        ("v1", Ref("tag", "v1")),
        ("@0123456789ab", Ref("digest", "0123456789ab")),
        ("sha256:0123456789ab", Ref("digest", "0123456789ab")),
        ("acme/bot#1", Ref("number", "1")),
        ("acme/bot:v1", Ref("tag", "v1")),
        ("acme/bot@sha256:0123456789ab", Ref("digest", "0123456789ab")),
        ("acme/bot@0123456789AB", Ref("digest", "0123456789ab")),
    ],
)
def test_a_ref_in_a_repository_takes_short_and_full_forms(value: str, parsed: Ref) -> None:
    assert Ref.parse_in(value, RepoName.parse("acme/bot")) == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("acme/other#1", "names a version of another repository, acme/other; give a version of acme/bot"),
        ("acme/bot", "invalid ref 'acme/bot'"),
        ("v1#2", "invalid ref 'v1#2'"),
        ("acme/bot#x", "invalid ref 'acme/bot#x'"),
        ("acme/bot:V1", "invalid ref 'acme/bot:V1'"),
    ],
)
def test_a_bad_ref_is_named_as_a_ref(value: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        Ref.parse_in(value, RepoName.parse("acme/bot"))
    assert message in refused.value.message and "tag name 'acme" not in refused.value.message


def test_expect_takes_a_full_ref_of_the_same_repository(
    server: LiveServer, two_versions: list[dict], repo: str
) -> None:
    first, second = (v["digest"] for v in two_versions)
    run(server, "tag", f"{repo}#1", "prod")
    run(server, "tag", f"{repo}#2", "prod", "--expect", f"{repo}#1")
    run(server, "tag", f"{repo}#1", "prod", "--expect", f"{repo}@{second}")
    run(server, "tag", f"{repo}#2", "prod", "--expect", f"{repo}@{first[7:19]}")
    run(server, "tag", f"{repo}#1", "prod", "--expect", f"{repo}:latest")  # latest and prod: #2
    run(server, "tag", f"{repo}#2", "prod", "--expect", f"@{first[7:19]}")
    assert tag_numbers(server, repo)["prod"] == (2, False)

    stale = run(server, "tag", f"{repo}#1", "prod", "--expect", f"{repo}#1", check=1)
    assert "points at #2" in stale.stderr
    other = run(server, "tag", f"{repo}#1", "prod", "--expect", "acme/elsewhere#2", check=1)
    assert "another repository, acme/elsewhere" in other.stderr and repo in other.stderr
    bad = run(server, "tag", f"{repo}#1", "prod", "--expect", f"{repo}#two", check=1)
    assert f"invalid ref '{repo}#two'" in bad.stderr and "tag name" not in bad.stderr
    assert tag_numbers(server, repo)["prod"] == (2, False)

    # The API takes the same forms: a full ref, and refuses another repository's with a 400.
    path = f"/api/v1/repos/{repo}/tags/prod"
    moved = server.http.put(path, json={"target": f"{repo}#1", "expected": f"{repo}:latest"})
    assert moved.status_code == 200 and moved.json()["number"] == 1
    refused = server.http.put(path, json={"target": "#2", "expected": "acme/elsewhere#1"})
    assert refused.status_code == 400 and "another repository" in refused.json()["error"]["message"]


def test_yank_says_what_it_moved_and_left_and_unyank_undoes_it(
    server: LiveServer, two_versions: list[dict], repo: str
) -> None:
    first, second = (v["digest"] for v in two_versions)
    run(server, "tag", f"{repo}#2", "prod")
    yanked = run(server, "yank", f"{repo}#2", "--reason", "regressed").stdout
    assert f"yanked {repo}#2 {second}" in yanked
    assert f"moved latest to #1 {first}" in yanked
    assert "left on it, resolving to nothing until moved or unyanked: prod" in yanked
    assert tag_numbers(server, repo) == {"latest": (1, False), "prod": (2, True)}
    listed = run(server, "tags", repo).stdout.splitlines()
    assert [line.split()[0] for line in listed if "(yanked)" in line] == ["prod"]
    shown = run(server, "show", f"{repo}@{second}").stdout
    assert "[yanked: regressed]" in shown and "tags:    prod (yanked" in shown
    again = run(server, "yank", f"{repo}@{second}").stdout
    assert "already yanked; nothing changed" in again

    unyanked = run_json(server, "unyank", f"{repo}#2")
    assert unyanked["changed"] is True and unyanked["yanked"] is False
    assert unyanked["tags_moved"] == [{"tag": "latest", "number": 2, "digest": second}]
    assert sorted(unyanked["tags"]) == ["latest", "prod"]
    assert tag_numbers(server, repo) == {"latest": (2, False), "prod": (2, False)}
    assert run_json(server, "show", f"{repo}:prod")["number"] == 2
    assert "was not yanked; nothing changed" in run(server, "unyank", f"{repo}#2").stdout

    history = run_json(server, "tags", repo, "--history", "latest")
    assert [(e["old_number"], e["new_number"]) for e in history] == [(1, 2), (2, 1), (1, 2), (None, 1)]
    namespace = repo.split("/")[0]
    trail = run_json(server, "audit", "--namespace", namespace, "--action", "version.unyank")
    assert [(e["target"], e["result"], e["detail"]["tags_moved"]) for e in trail] == [
        (f"{repo}@{second}", "ok", {"latest": second})
    ]


def test_unyank_leaves_latest_that_moved_since_and_restores_a_removed_one(
    server: LiveServer, two_versions: list[dict], tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    run(server, "yank", f"{repo}#2")
    run(server, "push", str(adapter_factory(seed=3)), repo, "--base", tiny_base.content_digest)
    unyanked = run(server, "unyank", f"{repo}#2").stdout
    assert "latest stays where it is" in unyanked
    assert tag_numbers(server, repo)["latest"] == (3, False)

    alone = f"{repo}-alone"
    run(server, "push", str(adapter_factory(seed=1)), alone, "--base", tiny_base.content_digest)
    assert "removed latest: no unyanked version is left" in run(server, "yank", f"{alone}#1").stdout
    assert tag_numbers(server, alone) == {}
    assert "moved latest to #1" in run(server, "unyank", f"{alone}#1").stdout
    assert tag_numbers(server, alone) == {"latest": (1, False)}


def test_unyank_tells_the_webhooks(server: LiveServer, two_versions: list[dict], repo: str) -> None:
    namespace = repo.split("/")[0]
    hook = server.http.post(
        "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "namespace": namespace}
    ).json()
    try:
        run(server, "yank", f"{repo}#1")
        run(server, "unyank", f"{repo}#1")
        events = [d["event"] for d in server.http.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()]
        assert {"version.yanked", "version.unyanked"} <= set(events)
    finally:
        server.http.delete(f"/api/v1/webhooks/{hook['id']}").raise_for_status()


def test_ls_counts_and_show_of_a_model_version(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    run(server, "push", str(adapter_factory(seed=1)), repo, "--base", tiny_base.content_digest)
    namespace = repo.split("/")[0]
    assert f"{repo}  private  (1 version)" in run(server, "ls", namespace).stdout
    run(server, "push", str(adapter_factory(seed=2)), repo, "--base", tiny_base.content_digest)
    assert "(2 versions)" in run(server, "ls", namespace).stdout
    assert "  lora:    r=8 alpha=" in run(server, "show", repo).stdout

    model = f"{namespace}/model"
    run(server, "push", str(tiny_base.path), model, "--model", "--base", tiny_base.content_digest)
    shown = run(server, "show", model).stdout
    config = run_json(server, "show", model)["config"]
    assert "r=None" not in shown and "targets=" not in shown
    assert (
        f"  model:   full weights, {config['tensors']} tensors, {config['parameters']:,} parameters "
        "in 1 safetensors file"
    ) in shown


# The actor: the authenticated token, in log, tag history and the audit trail alike ----------------


@pytest.fixture(scope="module")
def locked(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with LOREG_AUTH=required on the same database as ``server`` (which makes its tokens)."""
    settings = Settings(home=tmp_path_factory.mktemp("locked"), database_url=database_url, auth="required")
    for url in start_server(settings):
        with httpx.Client(base_url=url) as http:
            yield LiveServer(url, settings, http)


def as_token(server: LiveServer, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOREG_URL": server.url, "LOREG_TOKEN": secret}
    done = lorareg(*args, env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_actor_is_the_token_everywhere_and_the_author_is_what_the_client_claims(
    server: LiveServer, locked: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    namespace = repo.split("/")[0]
    name = f"ci-{uuid.uuid4().hex[:6]}"
    made = server.http.post(
        "/api/v1/tokens", json={"name": name, "scope": "write", "namespaces": [namespace]}
    )
    secret = made.json()["secret"]
    as_token(locked, secret, "push", str(adapter_factory(seed=1)), repo, "--base", tiny_base.content_digest)
    as_token(locked, secret, "tag", f"{repo}#1", "prod")
    run(server, "push", str(adapter_factory(seed=2)), repo, "--base", tiny_base.content_digest)

    log = json.loads(as_token(locked, secret, "--json", "log", repo).stdout)
    assert [(v["number"], v["author"], v["pushed_by"]) for v in log] == [
        (2, getpass.getuser(), "anonymous"),
        (1, getpass.getuser(), name),
    ]
    assert (
        f"author:  {getpass.getuser()}    pushed by: {name}" in as_token(locked, secret, "log", repo).stdout
    )
    history = as_token(locked, secret, "tags", repo, "--history", "latest").stdout.splitlines()
    assert [line.rsplit(" by ", 1)[1] for line in history] == ["anonymous", name]
    assert as_token(locked, secret, "tags", repo, "--history", "prod").stdout.endswith(f"by {name}\n")
    trail = run_json(server, "audit", "--namespace", namespace, "--action", "version.push")
    assert [e["actor"] for e in trail] == ["anonymous", name]
    theirs = run_json(server, "audit", "--namespace", namespace, "--actor", name)
    assert {e["actor"] for e in theirs} == {name} and "version.push" in {e["action"] for e in theirs}
    server.http.delete(f"/api/v1/tokens/{made.json()['id']}").raise_for_status()


def test_a_full_ref_names_what_was_wrong(server: LiveServer) -> None:
    done = run(server, "show", "acme/bot:v1:x", check=1)
    assert "invalid ref 'acme/bot:v1:x'" in done.stderr and "invalid tag name 'v1:x'" in done.stderr
