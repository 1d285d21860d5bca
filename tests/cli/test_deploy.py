"""``lorareg deploy`` against a live server with tokens required: generations on add/rm and on a followed
tag move, a pinned ref not following, a refused add (another base: 409), the watch long-poll, and
another namespace's tokens."""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from make_tiny_adapter import make_adapter

from registry.config import Settings
from tests.cli.test_tokens_and_ci import lorareg
from tests.conftest import LiveServer, TinyBase, start_server


@pytest.fixture(scope="module")
def locked(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with LOREG_AUTH=required."""
    settings = Settings(home=tmp_path_factory.mktemp("deploy"), database_url=database_url, auth="required")
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url, settings, http)


def _secret(server: LiveServer, env: dict[str, str], *args: str) -> str:
    return json.loads(lorareg(server, "--json", "token", "create", *args, env=env).stdout)["secret"]


@pytest.fixture(scope="module")
def tokens(locked: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``root`` (bootstrapped admin), and tokens of alpha and beta namespaces of this module's own."""
    home = {
        "LOREG_DATABASE_URL": locked.settings.resolved_database_url,
        "LOREG_CREDENTIALS_FILE": str(tmp_path_factory.mktemp("creds") / "credentials.json"),
    }
    alpha, beta = (f"{team}{uuid.uuid4().hex[:6]}" for team in ("a", "b"))
    root = {**home, "LOREG_TOKEN": _secret(locked, home, f"root-{alpha}", "--scope", "admin", "--bootstrap")}
    return {
        "alpha": alpha,
        "beta": beta,
        "root": root["LOREG_TOKEN"],
        "alpha-read": _secret(locked, root, f"r-{alpha}", "--scope", "read", "--namespace", alpha),
        "beta-write": _secret(locked, root, f"w-{beta}", "--scope", "write", "--namespace", beta),
    }


def _as(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"LOREG_TOKEN": tokens[who]}


def test_deploy_lifecycle(
    locked: LiveServer,
    tokens: dict[str, str],
    tiny_base: TinyBase,
    other_base: TinyBase,
    adapter_factory,
    tmp_path: Path,
) -> None:
    root = _as(tokens, "root")
    repo, fleet = f"{tokens['alpha']}/bot", f"{tokens['alpha']}/fleet"

    def cli(*args: str, env: dict[str, str] = root, check: int = 0) -> str:
        return lorareg(locked, *args, env=env, check=check).stdout

    def as_json(*args: str) -> dict:
        return json.loads(cli("--json", *args))

    cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    pushed = [
        as_json("push", str(adapter_factory(seed=seed)), repo, "--base", tiny_base.content_digest)
        for seed in (1, 2)
    ]
    cli("tag", f"{repo}#1", "prod")

    created = as_json("deploy", "create", fleet, "--base", "tiny-llama")
    assert created["current_generation"]["number"] == 1 and created["entries"] == []
    added = as_json("deploy", "add", fleet, f"{repo}:prod", "--as", "bot")
    assert added["number"] == 2 and added["state"][0]["digest"] == pushed[0]["digest"]
    pinned = as_json("deploy", "add", fleet, f"{repo}#1")
    assert pinned["number"] == 3 and [i["name"] for i in pinned["state"]] == ["bot", f"{repo}#1"]
    cli("base", "register", str(other_base.path), "--name", "other-llama")
    make_adapter(copy.deepcopy(other_base.model), tmp_path / "foreign", seed=5, r=4, base_name="other-llama")
    cli("push", str(tmp_path / "foreign"), f"{repo}-other", "--base", other_base.content_digest)
    refused = locked.http.post(
        f"/api/v1/deployments/{fleet}/adapters",
        json={"ref": f"{repo}-other"},
        headers={"Authorization": f"Bearer {tokens['root']}"},
    )
    assert refused.status_code == 409 and "other-llama" in refused.json()["error"]["message"], refused.text
    taken = lorareg(locked, "deploy", "add", fleet, f"{repo}#2", "--as", "bot", env=root, check=1)
    assert "already serves an adapter named 'bot'" in taken.stderr

    answer: dict[str, httpx.Response] = {}
    headers = {"Authorization": f"Bearer {tokens['alpha-read']}"}

    def watch() -> None:
        answer["watch"] = locked.http.get(
            f"/api/v1/deployments/{fleet}/watch", params={"since": 3, "timeout": 20}, headers=headers
        )

    waiting = threading.Thread(target=watch)
    waiting.start()
    unchanged = locked.http.get(
        f"/api/v1/deployments/{fleet}/watch", params={"since": 3, "timeout": 0.3}, headers=headers
    )
    assert unchanged.status_code == 304
    cli("tag", f"{repo}#2", "prod")  # the followed entry moves, the pinned one stays
    waiting.join(timeout=30)
    current = answer["watch"].json()["current_generation"]
    assert answer["watch"].status_code == 200 and current["number"] == 4
    assert {i["name"]: i["digest"] for i in current["state"]} == {
        "bot": pushed[1]["digest"],
        f"{repo}#1": pushed[0]["digest"],
    }

    shown = cli("deploy", "show", fleet, env=_as(tokens, "alpha-read"))
    assert "generation 4:" in shown and "(follows prod)" in shown and "(pinned)" in shown
    assert f"tag {repo}:prod" in shown

    assert as_json("deploy", "rm", fleet, f"{repo}#1")["number"] == 5  # a name with '#' and '/'
    left = as_json("deploy", "rm", fleet, "bot")
    assert left["number"] == 6 and left["state"] == []
    listed = json.loads(cli("--json", "deploy", "ls", env=_as(tokens, "alpha-read")))
    assert [(d["namespace"], d["name"], d["current_generation"]) for d in listed] == [
        (tokens["alpha"], "fleet", 6)
    ]


def test_other_namespace_is_refused(locked: LiveServer, tokens: dict[str, str], tiny_base: TinyBase) -> None:
    root, beta = _as(tokens, "root"), _as(tokens, "beta-write")
    fleet = f"{tokens['alpha']}/private-fleet"
    lorareg(locked, "base", "register", str(tiny_base.path), "--name", "tiny-llama", env=root)
    lorareg(locked, "deploy", "create", fleet, "--base", "tiny-llama", env=root)

    hidden = lorareg(locked, "deploy", "show", fleet, env=beta, check=1)
    assert "does not exist or is not readable" in hidden.stderr
    assert json.loads(lorareg(locked, "--json", "deploy", "ls", env=beta).stdout) == []
    refused = lorareg(locked, "deploy", "rm", fleet, "bot", env=beta, check=1)
    assert "limited to namespaces" in refused.stderr
    reader = lorareg(locked, "deploy", "add", fleet, "x/y:prod", env=_as(tokens, "alpha-read"), check=1)
    assert "needs write" in reader.stderr
    watch = locked.http.get(
        f"/api/v1/deployments/{fleet}/watch",
        params={"timeout": 0},
        headers={"Authorization": f"Bearer {tokens['beta-write']}"},
    )
    assert watch.status_code == 404
    assert locked.http.get(f"/api/v1/deployments/{fleet}").status_code == 401
