"""Tokens from the command line (bootstrap, create, login, revoke) and publishing from CI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.config import Settings
from tests.cli.test_cli import run, run_json
from tests.cli_runner import LOREG
from tests.cli_runner import lorareg as run_cli
from tests.conftest import LiveServer, TinyBase, start_server


@pytest.fixture(scope="module")
def locked(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with LOREG_AUTH=required."""
    settings = Settings(home=tmp_path_factory.mktemp("locked"), database_url=database_url, auth="required")
    for url in start_server(settings):
        with httpx.Client(base_url=url) as http:
            yield LiveServer(url, settings, http)


def lorareg(
    server: LiveServer, *args: str, env: dict[str, str], check: int = 0
) -> subprocess.CompletedProcess:
    done = run_cli(*args, env={**os.environ, "LOREG_URL": server.url, **env})
    assert done.returncode == check, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_bootstrap_login_create_revoke(locked: LiveServer, tmp_path: Path) -> None:
    home = {
        "LOREG_DATABASE_URL": locked.settings.resolved_database_url,
        "LOREG_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
    }
    refused = lorareg(locked, "whoami", env=home, check=1)
    assert "requires a token" in refused.stderr

    admin = json.loads(
        lorareg(
            locked, "--json", "token", "create", "root", "--scope", "admin", "--bootstrap", env=home
        ).stdout
    )
    assert admin["secret"].startswith("lrg_") and admin["scope"] == "admin"

    lorareg(locked, "login", "--with-token", admin["secret"], env=home)
    credentials = tmp_path / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text()) == {locked.url: admin["secret"]}
    assert "root (admin)" in lorareg(locked, "whoami", env=home).stdout

    ci = json.loads(
        lorareg(
            locked,
            "--json",
            "token",
            "create",
            "ci",
            "--scope",
            "write",
            "--namespace",
            "acme",
            "--expires",
            "30d",
            env=home,
        ).stdout
    )
    assert ci["namespaces"] == ["acme"] and ci["expires_at"] is not None
    listed = json.loads(lorareg(locked, "--json", "token", "ls", env=home).stdout)
    assert {t["name"] for t in listed} >= {"root", "ci"} and all("secret" not in t for t in listed)

    as_ci = {**home, "LOREG_TOKEN": ci["secret"]}
    assert json.loads(lorareg(locked, "--json", "whoami", env=as_ci).stdout)["namespaces"] == ["acme"]
    forbidden = lorareg(locked, "token", "ls", env=as_ci, check=1)
    assert "admin" in forbidden.stderr

    lorareg(locked, "token", "revoke", str(ci["id"]), env=home)
    revoked = lorareg(locked, "whoami", env=as_ci, check=1)
    assert "revoked" in revoked.stderr


def test_bad_duration_is_a_usage_error(locked: LiveServer) -> None:
    done = lorareg(locked, "token", "create", "x", "--scope", "read", "--expires", "soon", env={}, check=2)
    assert "duration" in done.stderr


GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": "0a1b2c3d" * 5,
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "acme/adapters",
    "GITHUB_RUN_ID": "4242",
}
GITLAB = {
    "GITLAB_CI": "true",
    "CI_COMMIT_SHA": "9f8e7d6c" * 5,
    "CI_JOB_URL": "https://gitlab.example/acme/-/jobs/7",
    "CI_PROJECT_URL": "https://gitlab.example/acme/adapters",
}


@pytest.mark.parametrize(
    ("ci", "commit", "run_url"),
    [
        (GITHUB, GITHUB["GITHUB_SHA"], "https://github.com/acme/adapters/actions/runs/4242"),
        (GITLAB, GITLAB["CI_COMMIT_SHA"], GITLAB["CI_JOB_URL"]),
    ],
    ids=["github", "gitlab"],
)
def test_ci_push_records_provenance_and_retries_safely(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, ci: dict, commit: str, run_url: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    adapter = str(adapter_factory(seed=21))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_"))}
    args = [
        LOREG,
        "--json",
        "push",
        adapter,
        f"{repo}:build-1",
        "--base",
        tiny_base.content_digest,
        "--provenance",
        "source=hf://acme/upstream@abc",
    ]
    first = subprocess.run(args, capture_output=True, text=True, env={**env, **ci, "LOREG_URL": server.url})
    retry = subprocess.run(args, capture_output=True, text=True, env={**env, **ci, "LOREG_URL": server.url})
    assert first.returncode == retry.returncode == 0, first.stderr + retry.stderr
    made, again = json.loads(first.stdout), json.loads(retry.stdout)
    assert {"digest", "number", "repo", "tags", "created"} <= made.keys()
    assert made["created"] is True and again["created"] is False and again["digest"] == made["digest"]
    assert made["repo"] == repo and "build-1" in made["tags"]

    shown = run_json(server, "show", f"{repo}:build-1")
    assert shown["provenance"]["git_commit"] == commit
    assert shown["provenance"]["ci_run_url"] == run_url
    assert shown["provenance"]["source"] == "hf://acme/upstream@abc"
    assert run_url in run(server, "log", repo).stdout
