"""The web UI's harness: a real ``lorareg serve`` (SQLite, local blobs, in-process jobs) holding real
pushed adapters, the real CLI against it, and Debian's Chromium driven by Playwright, whose every page
fails its test if it asks any host but these servers for anything, or logs an error (a
Content-Security-Policy violation is one)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cli_runner import LOREG, lorareg
from tests.conftest import TinyBase
from tests.server_process import running_server
from tests.service_checks import fresh_postgres_database, postgres_reachable, require

CHROMIUM = "/usr/bin/chromium"
_ORIGINS: set[str] = set()  # the servers this process started: the only hosts a page may ask

CARD = """---
license: apache-2.0
base_model: tiny-llama
tags: [sql, text-to-sql]
datasets: [acme/sql-pairs]
model-index:
- name: sql-bot
  results:
  - task: {type: text-generation}
    dataset: {name: spider, type: spider}
    metrics:
    - {type: exact_match, value: 0.61, name: spider/exact_match}
---
# SQL bot

Turns **questions** into SQL for the *acme* warehouse.

| split | examples |
| ----- | -------- |
| train | 1200 |

<script>alert("card")</script>
"""


@dataclass
class Site:
    """A running server: its URL, ``LOREG_HOME``, and the CLI and HTTP pointed at it."""

    url: str
    home: Path
    database_url: str
    token: str | None = None  # the admin token, with LOREG_AUTH=required
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def cli(
        self, *args: str, token: str | None = None, check: int | None = 0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``lorareg ARGS`` against this server (with ``token``, or the admin's)."""
        env = {**os.environ, "LOREG_URL": self.url}
        env.pop("LOREG_TOKEN", None)
        if token or self.token:
            env["LOREG_TOKEN"] = token or self.token or ""
        done = lorareg(*args, env=env)
        if check is not None:
            assert done.returncode == check, (
                f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def cli_json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.cli("--json", *args, token=token).stdout)


def _site(home: Path, settings: dict[str, str]) -> Iterator[Site]:
    database_url = settings.get("LOREG_DATABASE_URL", f"sqlite:///{home / 'lorareg.db'}")
    with running_server(home, settings) as url:
        _ORIGINS.add(url)
        site = Site(url=url, home=home, database_url=database_url)
        try:
            yield site
        finally:
            site.http.close()
            _ORIGINS.discard(url)


@pytest.fixture(scope="session")
def published_home(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: TinyBase, adapter_factory: Any
) -> tuple[Path, Published]:
    """A LOREG_HOME (SQLite database and blobs) holding what :func:`publish` pushes through the CLI to a
    server on the embedded defaults, made once; the server is stopped, so the home is at rest."""
    home = tmp_path_factory.mktemp("ui-published")
    for site in _site(home, {}):
        content = publish(site, tiny_base, adapter_factory, tmp_path_factory.mktemp("publish"))
    return home, content


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, published_home: tuple[Path, Published]) -> Iterator[Site]:
    """A server on the embedded defaults, auth off (everyone is everyone's admin), on a copy of
    ``published_home``: each module changes its own copy."""
    home = tmp_path_factory.mktemp("ui-site")
    shutil.copytree(published_home[0], home, dirs_exist_ok=True, ignore=shutil.ignore_patterns("serve.log"))
    yield from _site(home, {})


@pytest.fixture(scope="module")
def secured_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A server with ``LOREG_AUTH=required`` and an admin token (``site.token``) made as the README says, on
    PostgreSQL (the production database: the pages' queries run on it here, the other modules' on SQLite)."""
    require("PostgreSQL", postgres_reachable(), "start it (see the README) for the web UI's access tests")
    home = tmp_path_factory.mktemp("ui-secured")
    with fresh_postgres_database("lorareg_ui") as database_url:
        yield from _secured(home, database_url)


def _secured(home: Path, database_url: str) -> Iterator[Site]:
    for site in _site(home, {"LOREG_AUTH": "required", "LOREG_DATABASE_URL": database_url}):
        env = {**os.environ, "LOREG_HOME": str(home), "LOREG_DATABASE_URL": database_url}
        made = subprocess.run(
            [LOREG, "--json", "token", "create", "admin", "--scope", "admin", "--bootstrap"],
            capture_output=True, text=True, env=env, timeout=60, check=True,
        )  # fmt: skip
        site.token = json.loads(made.stdout)["secret"]
        yield site


def publish_teams(
    site: Site, tiny_base: TinyBase, adapter_factory: Any, *, private_versions: int = 1
) -> None:
    """Two teams' content on a secured site: alpha/private-bot (private; ``private_versions`` versions)
    and alpha/open-bot (public, tagged prod), both on the base tiny-llama."""
    site.cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    for seed in range(1, private_versions + 1):
        site.cli("push", str(adapter_factory(seed=seed)), "alpha/private-bot", "--base", "tiny-llama")
    site.cli("push", str(adapter_factory(seed=99)), "alpha/open-bot:prod", "--base", "tiny-llama")
    site.cli("repo", "visibility", "alpha/open-bot", "public")


def make_tokens(site: Site, tokens: dict[str, tuple[str, str | None]]) -> dict[str, str]:
    """Tokens by name, of (scope, namespace or None for every one): their secrets."""
    return {
        name: site.cli_json(
            "token", "create", name, "--scope", scope, *(("--namespace", team) if team else ())
        )["secret"]
        for name, (scope, team) in tokens.items()
    }


@dataclass
class Published:
    """What :func:`publish` put on a site."""

    base: str  # the base's content digest
    repo: str  # acme/sql-bot: #1 (card, prod) and #2 (latest)
    other: str  # acme/chat-bot: #1, another adapter on the same base
    merged: str  # acme/blend: #1, a merge job's output (parents: repo#1 and other#1)
    versions: list[dict[str, Any]]
    diff_job: str  # a finished diff of repo#1 and repo#2


def publish(site: Site, tiny_base: TinyBase, adapter_factory: Any, workdir: Path) -> Published:
    """Push what the pages show, through the CLI: a base, two versions with a model card, tags, labels,
    evals, a second repository, a merge (lineage across repositories) and a diff."""
    site.cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    carded = workdir / "carded"
    shutil.copytree(adapter_factory(seed=1), carded)
    (carded / "README.md").write_text(CARD)
    repo, other, merged = "acme/sql-bot", "acme/chat-bot", "acme/blend"
    first = site.cli_json("push", str(carded), f"{repo}:prod", "--base", "tiny-llama", "-m", "first cut")
    second = site.cli_json(
        "push", str(adapter_factory(seed=2)), repo, "--base", "tiny-llama", "-m", "more data"
    )
    site.cli_json("push", str(adapter_factory(seed=3)), other, "--base", "tiny-llama", "-m", "chat")
    site.cli("label", f"{repo}#1", "validation=approved")
    site.cli("label", repo, "team=data")
    results = workdir / "results.json"
    results.write_text(json.dumps({"gsm8k/exact_match": 0.42, "arc_easy/acc": 0.7}))
    site.cli("eval", f"{repo}#2", str(results))
    site.cli("repo", "describe", repo, "Text-to-SQL for the acme warehouse")
    site.cli("merge", f"{repo}#1", f"{other}#1", "--method", "linear", "--into", f"{merged}:v1")
    site.cli("diff", f"{repo}#1", f"{repo}#2")
    return Published(
        base=tiny_base.content_digest,
        repo=repo,
        other=other,
        merged=merged,
        versions=[first, second],
        diff_job=newest_job(site, "diff"),
    )


def newest_job(site: Site, kind: str) -> str:
    """The id of the newest job of ``kind`` (``lorareg diff`` and ``merge`` print results, not ids)."""
    return next(job["id"] for job in site.cli_json("jobs") if job["kind"] == kind)


@pytest.fixture(scope="module")
def published(site: Site, published_home: tuple[Path, Published]) -> Published:
    """What ``site`` holds (see :func:`publish`)."""
    return published_home[1]


# The browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium (``apt-get install -y chromium``; .ci/run installs it), headless. One per module:
    Playwright's sync API holds an event loop in this thread while it runs, and asyncio.run() in later
    tests of the process would refuse to start under it."""
    require("chromium", Path(CHROMIUM).exists(), "install it: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Watched:
    """What a browser context asked other hosts for, and the errors its pages logged."""

    external: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expected: set[int] = field(default_factory=set)  # statuses the test expects a page to answer

    def expect(self, status: int) -> None:
        """A page answering ``status`` is what the test wants (the browser logs it as an error)."""
        self.expected.add(status)

    def unexpected_errors(self) -> list[str]:
        answered = {f"status of {status} " for status in self.expected}
        return [error for error in self.errors if not any(text in error for text in answered)]


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture
def page(browser: Any, watched: Watched) -> Iterator[Any]:
    """A fresh browser context's page (no cookies). Any request to a host other than this process's
    servers is refused and fails the test, as does any error the page logs."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def guard(route: Any) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob") or f"{parts.scheme}://{parts.netloc}" in _ORIGINS:
            route.continue_()
        else:
            watched.external.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and watched.errors.append(message.text))
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert watched.external == [], f"the pages asked other hosts: {watched.external}"
    assert watched.unexpected_errors() == [], f"the pages logged errors: {watched.errors}"


def login(page: Any, site: Site, token: str) -> None:
    """Log in through the login page."""
    page.goto(f"{site.url}/login")
    page.fill("input[name=token]", token)
    page.click("form[action='/login'] button[type=submit]")
