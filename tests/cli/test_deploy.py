"""``lorareg deploy`` against a live server with tokens required: generations on add/rm and on a followed
tag move, a pinned ref not following, a refused add (another base: 409), the watch long-poll, and
another namespace's tokens."""

from __future__ import annotations

import copy
import json
import threading
import time
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


def test_canary_promote_rollback_and_replica_status(
    locked: LiveServer, tokens: dict[str, str], tiny_base: TinyBase, adapter_factory
) -> None:
    """A canary selector sends a tag move to the labelled replicas first; promote reaches the rest,
    rollback returns (abandoning a canary); heartbeats show per replica what it serves; auto-promotion
    waits for every canary replica to converge without errors."""
    root = _as(tokens, "root")
    repo, fleet = f"{tokens['alpha']}/canaried", f"{tokens['alpha']}/canary-fleet"
    reader = {"Authorization": f"Bearer {tokens['alpha-read']}"}

    def cli(*args: str, env: dict[str, str] = root, check: int = 0) -> str:
        return lorareg(locked, *args, env=env, check=check).stdout

    def as_json(*args: str) -> dict:
        return json.loads(cli("--json", *args))

    def beat(replica: str, loaded: dict[str, str], **fields: object) -> dict:
        body = {
            "engine": "vllm",
            "engine_url": f"http://{replica}:8000",
            "generation": None,
            "loaded": loaded,
        }
        answer = locked.http.put(
            f"/api/v1/deployments/{fleet}/replicas/{replica}",
            json={**body, "interval": 10, **fields},
            headers=reader,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    digests = [
        as_json("push", str(adapter_factory(seed=seed)), repo, "--base", tiny_base.content_digest)["digest"]
        for seed in (11, 12, 13)
    ]
    cli("tag", f"{repo}#1", "prod")
    cli("deploy", "create", fleet, "--base", "tiny-llama")
    assert as_json("deploy", "add", fleet, f"{repo}:prod", "--as", "bot")["status"] == "applied"  # 2
    cli("deploy", "canary", fleet, "track=canary")
    cli("tag", f"{repo}#2", "prod")  # 3: a canary
    shown = as_json("deploy", "show", fleet)
    assert shown["current_generation"]["number"] == 2 and shown["canary"]["generation"]["number"] == 3
    assert shown["canary"]["generation"]["state"][0]["digest"] == digests[1]
    assert shown["canary"]["selector"] == "track=canary" and shown["canary"]["promote_at"] is None
    busy = lorareg(locked, "deploy", "canary", fleet, "--off", env=root, check=1)
    assert "promote or" in busy.stderr.replace("`lorareg deploy promote` or", "promote or")

    canary = beat("c1", {"bot": digests[0]}, labels={"track": "canary"}, generation=2)
    assert (canary["target_generation"], canary["converged"]) == (3, False)
    stable = beat("s1", {"bot": digests[0]}, generation=2)
    assert (stable["target_generation"], stable["converged"]) == (2, True)
    canary = beat("c1", {"bot": digests[1]}, labels={"track": "canary"}, generation=3)
    assert canary["converged"] is True
    status = cli("deploy", "status", fleet, env=_as(tokens, "alpha-read"))
    assert "canary 3 on track=canary" in status
    assert "c1  converged  wants 3  serves 3" in status and "s1  converged  wants 2  serves 2" in status

    answer: dict[str, httpx.Response] = {}

    def watch() -> None:
        answer["watch"] = locked.http.get(
            f"/api/v1/deployments/{fleet}/watch", params={"since": 3, "timeout": 20}, headers=reader
        )

    waiting = threading.Thread(target=watch)
    waiting.start()
    promoted = as_json("deploy", "promote", fleet)
    waiting.join(timeout=30)
    assert promoted["number"] == 4 and promoted["cause"] == "promote 3"
    assert (
        answer["watch"].json()["current_generation"]["number"] == 4
        and answer["watch"].json()["canary"] is None
    )
    stable = beat("s1", {"bot": digests[0]}, generation=2)
    assert (stable["target_generation"], stable["converged"]) == (4, False)  # still serves #1
    history = {g["number"]: g["status"] for g in as_json("deploy", "show", fleet)["history"]}
    assert history[3] == "promoted" and history[4] == "applied"

    back = as_json("deploy", "rollback", fleet)  # to 2, the applied generation before 4
    assert (
        back["number"] == 5 and back["cause"] == "rollback to 2" and back["state"][0]["digest"] == digests[0]
    )
    cli("tag", f"{repo}#3", "prod")  # 6: a canary again, the entry still follows prod
    assert as_json("deploy", "show", fleet)["canary"]["generation"]["state"][0]["digest"] == digests[2]
    abandoned = as_json("deploy", "rollback", fleet)
    assert abandoned["cause"] == "rollback to 5 (canary 6 abandoned)"
    assert abandoned["state"][0]["digest"] == digests[0]
    shown = as_json("deploy", "show", fleet)
    assert (
        shown["canary"] is None and {g["number"]: g["status"] for g in shown["history"]}[6] == "rolled_back"
    )
    never = lorareg(locked, "deploy", "rollback", fleet, "--to", "3", env=root, check=1)
    assert "generation 3" in never.stderr and "never served every replica" in never.stderr

    cli("deploy", "canary", fleet, "track=canary", "--auto-promote-after", "0s")
    beat("c1", {"bot": digests[0]}, labels={"track": "canary"}, generation=7)
    cli("tag", f"{repo}#2", "prod")  # 8: a canary, due at once
    beat("s1", {"bot": digests[0]})  # c1 still serves #1: nothing promoted
    beat("c1", {"bot": digests[1]}, labels={"track": "canary"}, error="engine answered 500")
    assert as_json("deploy", "show", fleet)["canary"]["generation"]["number"] == 8
    beat("c1", {"bot": digests[1]}, labels={"track": "canary"}, generation=8)
    shown = as_json("deploy", "show", fleet)
    assert shown["canary"] is None and shown["current_generation"]["number"] == 9
    assert shown["current_generation"]["actor"] == "auto-promote (0 s)"
    assert shown["current_generation"]["state"][0]["digest"] == digests[1]

    beat("gone", {}, interval=0.1)
    time.sleep(0.5)
    replicas = {r["replica"]: r for r in as_json("deploy", "status", fleet)["replicas"]}
    assert replicas["gone"]["stale"] is True and replicas["c1"]["stale"] is False
    for bad, where in (
        ({"labels": {"Bad Key": "x"}}, "label key"),
        ({"loaded": {"bot": "sha256:abc"}}, "not sha256:<64 hex>"),
        ({"engine": "tgi"}, "unknown engine"),
    ):
        refused = locked.http.put(
            f"/api/v1/deployments/{fleet}/replicas/r9",
            json={
                "engine": "vllm",
                "engine_url": "http://r9:8000",
                "generation": None,
                "loaded": {},
                "interval": 5,
                **bad,
            },
            headers=reader,
        )
        assert refused.status_code == 400 and where in refused.json()["error"]["message"], refused.text
    assert "r9" not in {r["replica"] for r in as_json("deploy", "status", fleet)["replicas"]}
