"""The repository's and the version's pages, a file's bytes, and the writers' forms, against a real
``lorareg serve`` holding adapters pushed with the CLI (every change made through a form is checked back
through the CLI); who may see and do what on a server with tokens required; and a repository page whose
statement count does not grow with the repository."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from registry.adapters.base_manifest import read_base_manifest
from registry.api.app import create_app
from registry.config import Settings
from registry.db import migrate
from registry.principal import REGISTRY
from registry.refs import RepoName, RepoRef
from registry.services.bases import register_base
from registry.services.blobs import FileEntry, upload_blob
from registry.services.labels import set_labels
from registry.services.push import PushRequest, push_version
from tests.conftest import TinyBase
from tests.helpers import file_entries
from tests.ui.conftest import CARD, Published, Site

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORMS = "forms/bot"
WEBHOOK_THREAD = (
    "lorareg-webhooks"  # the repository the form tests change (the published ones stay as they are)
)


def csrf_token(site: Site, path: str, headers: dict[str, str] | None = None) -> str:
    """The CSRF token of ``path``'s forms (its cookie is then in ``site.http``'s jar)."""
    answer = site.http.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    found = CSRF.search(answer.text)
    assert found is not None
    return found.group(1)


def submit(
    site: Site, action: str, data: dict[str, str], *, on: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Post ``data`` to ``action`` as the form of page ``on`` does (its CSRF token included)."""
    token = csrf_token(site, on, headers)
    return site.http.post(action, data={**data, "csrf": token}, headers=headers)


def main_of(html: str) -> str:
    """A page's own part (not the header every page shares)."""
    return html.partition("<main>")[2]


def tag_of(site: Site, repo: str, tag: str) -> int | None:
    """Where the CLI says ``tag`` points."""
    found = {t["name"]: t["number"] for t in site.cli_json("tags", repo)}
    return found.get(tag)


@dataclass(frozen=True)
class Forms:
    repo: str
    digests: list[str]  # "sha256:…" of #1 and #2


@pytest.fixture(scope="module")
def forms(site: Site, published: Published, adapter_factory: Any) -> Forms:
    """``forms/bot`` #1 and #2, for the form tests to change."""
    pushed = [
        site.cli_json(
            "push", str(adapter_factory(seed=seed)), FORMS, "--base", "tiny-llama", "-m", f"n{seed}"
        )
        for seed in (1, 2)
    ]
    return Forms(FORMS, [version["digest"] for version in pushed])


# Reading ------------------------------------------------------------------------------------------


def test_repository_page_shows_versions_tags_lineage_files_and_snippets(
    site: Site, published: Published, tmp_path: Path
) -> None:
    answer = site.http.get(f"/{published.repo}")
    assert answer.status_code == 200 and "default-src 'self'" in answer.headers["content-security-policy"]
    html = answer.text
    first, second = published.versions
    for version, message in ((first, "first cut"), (second, "more data")):
        assert f'href="/{published.repo}/v/{version["number"]}"' in html
        assert version["digest"].removeprefix("sha256:")[:12] in html and message in html
    assert "Text-to-SQL for the acme warehouse" in html
    assert '<span class="label">validation=approved</span>' in html  # #1's label, in its row
    assert "team=data" in html  # the repository's
    assert "r=8 α=16" in html and ">tiny-llama</a>" in html
    tags = re.findall(
        r'data-tag="([^"]+)">\s*<span class="tag">[^<]+</span> →\s*<a href="[^"]+/v/(\d+)"', html
    )
    assert tags == [("latest", "2"), ("prod", "1")]
    assert "#1 → #2" in html and "(none) → #1" in html  # latest's moves
    assert 'class="lineage"' in html and f'<a href="/{published.repo}/v/1">' in html
    server = site.url
    assert f'snapshot_download("{published.repo}", revision="latest", endpoint="{server}/hf")' in html
    assert 'PeftModel.from_pretrained(base, "./sql-bot")' in html
    assert f"LOREG_URL={server} LOREG_SERVED_BASE={published.base}" in html and "VLLM_PLUGINS=lorareg" in html

    pull = re.search(r"lorareg pull (\S+) -o (\S+)</code>", html)
    assert pull is not None and pull.group(1) == f"{published.repo}:latest"
    site.cli("pull", pull.group(1), "-o", str(tmp_path / "pulled"))
    assert (tmp_path / "pulled" / "adapter_model.safetensors").exists()


def test_files_download_the_pushed_bytes(site: Site, published: Published, adapter_factory: Any) -> None:
    html = site.http.get(f"/{published.repo}").text
    links = re.findall(rf'<a href="(/{published.repo}/v/2/files/([^"]+))" download', html)
    assert sorted(path for _, path in links) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    for link, path in links:
        answer = site.http.get(link)
        pushed = (adapter_factory(seed=2) / path).read_bytes()
        assert answer.status_code == 200 and answer.content == pushed, path
        assert answer.headers["content-length"] == str(len(pushed))
        assert answer.headers["content-disposition"] == f'attachment; filename="{path}"'
    card = site.http.get(f"/{published.repo}/v/prod/files/README.md")
    assert card.content == CARD.encode()
    missing = site.http.get(f"/{published.repo}/v/1/files/nope.bin")
    assert missing.status_code == 404 and "has no file" in missing.text


def test_the_card_is_rendered_and_its_html_escaped(site: Site, published: Published) -> None:
    html = site.http.get(f"/{published.repo}/v/prod").text
    assert "<h1>SQL bot</h1>" in html and "<strong>questions</strong>" in html
    assert "<td>train</td>" in html  # the Markdown table
    assert '<script>alert("card")</script>' not in html and "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;card&quot;)&lt;/script&gt;" in html
    assert '<span class="badge">apache-2.0</span>' in html and "dataset: acme/sql-pairs" in html


def test_version_page_shows_base_shas_config_metrics_and_parents(site: Site, published: Published) -> None:
    first = published.versions[0]
    latest = site.http.get(f"/{published.repo}/v/2").text
    shas = re.search(r'data-testid="base-shas">(.*?)</dl>', latest, re.S)
    assert shas is not None and published.base in shas.group(1)
    assert "✓ fits tiny-llama" in latest and "when it was pushed" in latest
    metrics = re.findall(r"<td>([^<]+)</td>\s*<td class=\"num\" title=\"[^\"]+\">([^<]+)</td>", latest)
    assert metrics == [("arc_easy/acc", "0.7"), ("gsm8k/exact_match", "0.42")]
    assert "eval run" in latest and "<dt>rank</dt><dd>8</dd>" in latest
    assert f'href="/{published.repo}/compare/1...2"' in latest

    carded = site.http.get(f"/{published.repo}/v/1").text
    assert "spider/exact_match" in carded and "model card" in carded and "validation=approved" in carded
    by_digest = site.http.get(f"/{published.repo}/v/{first['digest']}")
    by_prefix = site.http.get(f"/{published.repo}/v/@{first['digest'].removeprefix('sha256:')[:12]}")
    assert "<h1>SQL bot</h1>" in by_digest.text and "<h1>SQL bot</h1>" in by_prefix.text

    merged = site.http.get(f"/{published.merged}/v/v1").text
    parents = re.search(r'data-testid="parents">(.*?)</ul>', merged, re.S)
    assert parents is not None
    assert re.findall(r'href="([^"]+)"', parents.group(1)) == [
        f"/{published.repo}/v/1",
        f"/{published.other}/v/1",
    ]
    job = re.search(r'<dt>job</dt>\s*<dd><a href="/jobs/([0-9a-f]+)">', merged)
    assert job is not None

    missing = site.http.get(f"/{published.repo}/v/9")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "no version acme/sql-bot#9" in missing.text


def test_provenance_links_only_http_urls(site: Site, published: Published, adapter_factory: Any) -> None:
    site.cli(
        "push", str(adapter_factory(seed=4)), "acme/ci-bot", "--base", "tiny-llama",
        "--provenance", "ci_run_url=https://ci.example.com/runs/7",
        "--provenance", "note=javascript:alert(1)",
    )  # fmt: skip
    html = site.http.get("/acme/ci-bot/v/1").text
    assert (
        '<a href="https://ci.example.com/runs/7" rel="noreferrer">https://ci.example.com/runs/7</a>' in html
    )
    assert "<dd>javascript:alert(1)</dd>" in html and 'href="javascript' not in html


def test_a_page_number_must_be_one(site: Site, published: Published) -> None:
    for page in ("x", "0", "-1"):
        wrong = site.http.get(f"/{published.repo}", params={"page": page})
        assert wrong.status_code == 400 and "invalid page" in wrong.text


# Forms --------------------------------------------------------------------------------------------


def test_tag_form_moves_with_compare_and_set(site: Site, forms: Forms) -> None:
    page = f"/{forms.repo}"
    created = submit(site, f"{page}/tags", {"tag": "stable", "ref": "1", "expect": ""}, on=page)
    assert created.status_code == 303 and created.headers["location"] == f"{page}#tags"
    assert tag_of(site, forms.repo, "stable") == 1

    moved = submit(site, f"{page}/tags", {"tag": "stable", "ref": "#2", "expect": forms.digests[0]}, on=page)
    assert moved.status_code == 303 and tag_of(site, forms.repo, "stable") == 2
    history = site.cli_json("tags", forms.repo, "--history", "stable")
    assert [(e["old_number"], e["new_number"], e["actor"]) for e in history] == [
        (1, 2, "anonymous"),
        (None, 1, "anonymous"),
    ]

    stale = submit(site, f"{page}/tags", {"tag": "stable", "ref": "1", "expect": forms.digests[0]}, on=page)
    assert stale.status_code == 409 and "another move happened first" in stale.text
    again = submit(site, f"{page}/tags", {"tag": "stable", "ref": "1", "expect": ""}, on=page)
    assert again.status_code == 409
    assert tag_of(site, forms.repo, "stable") == 2


def test_yank_and_unyank_forms(site: Site, forms: Forms) -> None:
    page = f"/{forms.repo}/v/1"
    yanked = submit(site, f"{page}/yank", {"reason": "broken tokenizer"}, on=page)
    assert yanked.status_code == 303 and yanked.headers["location"] == page
    shown = site.cli_json("show", f"{forms.repo}@{forms.digests[0]}")
    assert shown["yanked"] and shown["yank_reason"] == "broken tokenizer"
    html = site.http.get(page).text
    assert "broken tokenizer" in html and 'data-testid="unyank-form"' in html
    digest_page = f"/{forms.repo}/v/{forms.digests[0]}"
    assert f'href="{digest_page}/files/adapter_config.json"' in html  # a yanked version's files: by digest
    assert site.http.get(f"{page}/files/adapter_config.json").status_code == 410  # as a pull by number
    assert site.http.get(f"{digest_page}/files/adapter_config.json").status_code == 200

    unyanked = submit(site, f"{digest_page}/unyank", {}, on=page)
    assert unyanked.status_code == 303
    assert not site.cli_json("show", f"{forms.repo}#1")["yanked"]


def test_label_forms_set_and_remove_with_their_actor(site: Site, forms: Forms) -> None:
    page = f"/{forms.repo}/v/2"
    done = submit(site, f"{page}/labels", {"key": "qa", "value": "passed"}, on=page)
    assert done.status_code == 303 and done.headers["location"] == f"{page}#labels"
    assert [(la["key"], la["value"]) for la in site.cli_json("label", f"{forms.repo}#2")] == [
        ("qa", "passed")
    ]
    submit(site, f"{page}/labels", {"remove": "qa"}, on=page)
    assert site.cli_json("label", f"{forms.repo}#2") == []
    history = site.cli("label", f"{forms.repo}#2", "--history").stdout
    assert (
        "qa: removed (was 'passed')  by anonymous" in history and "qa: set 'passed'  by anonymous" in history
    )

    submit(site, f"/{forms.repo}/labels", {"key": "owner", "value": "ml-platform"}, on=f"/{forms.repo}")
    assert [(la["key"], la["value"]) for la in site.cli_json("label", forms.repo)] == [
        ("owner", "ml-platform")
    ]
    bad = submit(site, f"/{forms.repo}/labels", {"key": "Not A Key", "value": "x"}, on=f"/{forms.repo}")
    assert bad.status_code == 400 and "invalid label key" in bad.text


def test_description_form(site: Site, forms: Forms) -> None:
    page = f"/{forms.repo}"
    assert submit(site, f"{page}/description", {"description": "Form-made bot"}, on=page).status_code == 303
    listed = {r["id"]: r["description"] for r in site.cli_json("ls", "forms")}
    assert listed == {forms.repo: "Form-made bot"}
    assert "Form-made bot" in site.http.get(page).text


def test_a_form_without_its_csrf_token_changes_nothing(site: Site, forms: Forms) -> None:
    page = f"/{forms.repo}"
    csrf_token(site, page)  # the browser has its cookie; the post lacks the field, or carries another
    for data in ({"tag": "sneaky", "ref": "1"}, {"tag": "sneaky", "ref": "1", "csrf": "forged"}):
        refused = site.http.post(f"{page}/tags", data=data)
        assert refused.status_code == 403 and "came from another site" in refused.text
    token = csrf_token(site, page)
    foreign = site.http.post(
        f"{page}/tags",
        data={"tag": "sneaky", "ref": "1", "csrf": token},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert tag_of(site, forms.repo, "sneaky") is None


# In the browser -----------------------------------------------------------------------------------


def test_in_the_browser_versions_and_lineage_nodes_are_links_and_the_tag_form_works(
    site: Site, published: Published, forms: Forms, page: Any
) -> None:
    page.goto(f"{site.url}/{published.repo}")
    page.click(f"table.versions a[href='/{published.repo}/v/1']")
    page.wait_for_url(f"**/{published.repo}/v/1")
    assert page.inner_text("[data-testid=card] h1") == "SQL bot"

    page.goto(f"{site.url}/{published.merged}")
    page.click(f"svg.lineage a[href='/{published.other}/v/1']")
    page.wait_for_url(f"**/{published.other}/v/1")
    assert page.inner_text("h1") == f"{published.other} #1"

    page.goto(f"{site.url}/{forms.repo}")
    form = page.locator("[data-testid=tag-form]")
    form.locator("input[name=tag]").fill("browser")
    form.locator("input[name=ref]").fill("2")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("[data-tag=browser]")
    assert page.url.endswith(f"/{forms.repo}#tags")
    assert tag_of(site, forms.repo, "browser") == 2


# Authorization ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    alpha_reader: dict[str, str]
    alpha_writer: dict[str, str]
    beta_reader: dict[str, str]


@pytest.fixture(scope="module")
def secured(secured_site: Site, tiny_base: TinyBase, adapter_factory: Any) -> Tokens:
    """alpha/private (private), beta/open (public), and tokens of each namespace, as headers."""
    site = secured_site
    site.cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    site.cli(
        "push", str(adapter_factory(seed=1)), "alpha/private", "--base", "tiny-llama", "-m", "secret sauce"
    )
    site.cli("push", str(adapter_factory(seed=2)), "beta/open", "--base", "tiny-llama", "-m", "for everyone")
    site.cli("repo", "visibility", "beta/open", "public")

    def token(name: str, scope: str, namespace: str) -> dict[str, str]:
        made = site.cli_json("token", "create", name, "--scope", scope, "--namespace", namespace)
        return {"Authorization": f"Bearer {made['secret']}"}

    return Tokens(
        alpha_reader=token("alpha-reader", "read", "alpha"),
        alpha_writer=token("alpha-writer", "write", "alpha"),
        beta_reader=token("beta-reader", "read", "beta"),
    )


def test_private_repositories_are_hidden_from_other_namespaces_and_anonymous_visitors(
    secured_site: Site, secured: Tokens
) -> None:
    site = secured_site
    own = site.http.get("/alpha/private", headers=secured.alpha_reader)
    assert own.status_code == 200 and "secret sauce" in own.text
    assert 'name="csrf"' not in main_of(own.text)  # a read token: no form to change anything
    for path in ("/alpha/private", "/alpha/private/v/1", "/alpha/private/v/1/files/adapter_config.json"):
        other = site.http.get(path, headers=secured.beta_reader)
        assert other.status_code == 404 and "does not exist or is not readable" in other.text, path
        assert "secret sauce" not in other.text
    anonymous = httpx.get(f"{site.url}/alpha/private")
    nowhere = httpx.get(f"{site.url}/alpha/nowhere")
    # An anonymous visitor is told no more than about a repository that does not exist, and to log in.
    assert anonymous.status_code == nowhere.status_code == 401
    assert anonymous.text.replace("private", "nowhere") == nowhere.text.replace("private", "nowhere")
    assert "secret sauce" not in anonymous.text and "Log in with a token" in anonymous.text
    public = httpx.get(f"{site.url}/beta/open")
    assert (
        public.status_code == 200
        and "for everyone" in public.text
        and 'name="csrf"' not in main_of(public.text)
    )


def test_only_writers_of_the_namespace_may_post(secured_site: Site, secured: Tokens) -> None:
    site = secured_site
    page, action = "/alpha/private", "/alpha/private/tags"
    data = {"tag": "stable", "ref": "1", "expect": ""}
    refused = submit(site, action, data, on=page, headers=secured.alpha_reader)
    assert refused.status_code == 403 and "has read scope; this needs write" in refused.text
    label = submit(
        site, f"{page}/v/1/labels", {"key": "k", "value": "v"}, on=page, headers=secured.alpha_reader
    )
    assert label.status_code == 403
    assert tag_of(site, "alpha/private", "stable") is None

    written = submit(site, action, data, on=page, headers=secured.alpha_writer)
    assert written.status_code == 303 and tag_of(site, "alpha/private", "stable") == 1
    assert 'data-testid="tag-form"' in site.http.get(page, headers=secured.alpha_writer).text
    history = site.cli_json("tags", "alpha/private", "--history", "stable")
    assert history[0]["actor"] == "alpha-writer"


# Statements ---------------------------------------------------------------------------------------


@dataclass
class InProcess:
    """An in-process app on a registry of its own, filled through the services."""

    client: TestClient
    weights: list[FileEntry]
    base: TinyBase

    @property
    def registry(self) -> Any:
        return self.client.app.state.registry  # type: ignore[attr-defined]

    def push(self, repo: str, count: int) -> None:
        """``count`` more versions of ``repo`` (each a child of the one before), the first tagged prod and
        every one labelled."""
        registry = self.registry
        with registry.db.transaction() as session:
            for n in range(count):
                readme = f"# {repo} {n}\n".encode()
                digest = hashlib.sha256(readme).hexdigest()
                upload_blob(session, registry.store, digest, [readme], max_size=1 << 24)
                request = PushRequest(
                    files=[*self.weights, FileEntry("README.md", f"sha256:{digest}", len(readme))],
                    base_sha=self.base.content_digest,
                    message=f"version {n}",
                    tags=["prod"] if n == 0 else [],
                )
                version = push_version(
                    session,
                    registry.store,
                    RepoName.parse(repo),
                    request,
                    principal=REGISTRY,
                    max_config_size=1 << 24,
                ).version
                ref = RepoRef.parse(f"{repo}#{version.number}").ref
                set_labels(session, RepoName.parse(repo), {"n": str(n)}, REGISTRY, ref=ref)


@pytest.fixture(scope="module")
def in_process(
    tmp_path_factory: pytest.TempPathFactory, tiny_base: TinyBase, adapter_factory: Callable[..., Path]
) -> Iterator[InProcess]:
    settings = Settings(home=tmp_path_factory.mktemp("ui-in-process"))
    migrate.upgrade(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        registry = client.app.state.registry  # type: ignore[attr-defined]
        adapter = adapter_factory(seed=1)
        weights = []
        with registry.db.transaction() as session:
            register_base(session, REGISTRY, name="tiny-llama", manifest=read_base_manifest(tiny_base.path))
            for entry in file_entries(adapter):
                if entry["path"] != "README.md":
                    data = (adapter / entry["path"]).read_bytes()
                    upload_blob(session, registry.store, entry["digest"][7:], [data], max_size=1 << 24)
                    weights.append(FileEntry(entry["path"], entry["digest"], entry["size"]))
        yield InProcess(client, weights, tiny_base)


@contextmanager
def statements(app: InProcess) -> Iterator[list[str]]:
    """The SQL statements the app sends, through its sessions and its lookups, inside the block (but
    the webhook dispatcher's polls, which run on their own thread)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name != WEBHOOK_THREAD:
            sent.append(statement)

    engines = [app.registry.db.engine, app.registry.lookups.engine]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def table_numbers(html: str) -> list[int]:
    """The version numbers of the versions table's rows."""
    return [int(n) for n in re.findall(r'/v/(\d+)" data-version=', html)]


@pytest.fixture(scope="module")
def filled(in_process: InProcess) -> InProcess:
    in_process.push("acme/small", 5)
    in_process.push("acme/large", 60)
    return in_process


def test_the_repository_page_sends_as_many_statements_for_60_versions_as_for_5(filled: InProcess) -> None:
    counts = []
    for repo, versions in (("acme/small", 5), ("acme/large", 60)):
        with statements(filled) as sent:
            answer = filled.client.get(f"/{repo}")
        assert answer.status_code == 200
        assert len(table_numbers(answer.text)) == min(versions, 50)
        assert len(re.findall(r'<g class="node" data-version=', answer.text)) == versions  # the graph
        counts.append(len(sent))
    assert counts[0] == counts[1], counts


def test_versions_are_listed_50_to_a_page(filled: InProcess) -> None:
    first = filled.client.get("/acme/large").text
    assert table_numbers(first) == list(range(60, 10, -1))
    assert "page 1 of 2" in first and 'href="/acme/large?page=2#versions" rel="next"' in first
    second = filled.client.get("/acme/large", params={"page": "2"}).text
    assert table_numbers(second) == list(range(10, 0, -1))
    assert 'href="/acme/large?page=1#versions" rel="prev"' in second and 'rel="next"' not in second
    beyond = filled.client.get("/acme/large", params={"page": "3"})
    assert beyond.status_code == 200 and table_numbers(beyond.text) == []
