"""``lorareg search`` and ``GET /api/v1/search`` against a live server: text over names, descriptions and
model cards, AND-ed filters, sorts, pages, the latest version, and only what the caller may read."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from registry.config import Settings
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.refs import RepoName
from registry.services import repos, tokens
from tests.cli.test_cli import run
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import every_page, push, register_base
from tests.model_cards import SQL_ADAPTER_README

LM_EVAL = Path(__file__).parents[1] / "fixtures" / "lm_eval_results.json"


@dataclass
class Catalog:
    """Three repositories of one namespace of their own: an SQL adapter with a model card, a chat adapter
    with a description (and lm-evaluation-harness results), and a summarizer with two versions."""

    namespace: str
    sql: str
    chat: str
    summarizer: str


def search(server: LiveServer, *args: str) -> list[dict]:
    return json.loads(run(server, "--json", "search", *args).stdout)


def names(found: list[dict]) -> list[str]:
    return [hit["repo"] for hit in found]


@pytest.fixture
def catalog(server: LiveServer, tiny_base: TinyBase, adapter_factory, tmp_path: Path) -> Catalog:
    namespace = f"s{uuid.uuid4().hex[:8]}"
    c = Catalog(namespace, f"{namespace}/sql-bot", f"{namespace}/chat-bot", f"{namespace}/summarizer")
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    with_card = tmp_path / "with-card"
    shutil.copytree(adapter_factory(seed=11), with_card)
    (with_card / "README.md").write_text(SQL_ADAPTER_README)
    run(server, "push", str(with_card), c.sql)
    run(server, "push", str(adapter_factory(seed=12)), c.chat)
    run(server, "repo", "describe", c.chat, "A friendly conversational adapter")
    run(server, "eval", f"{c.chat}:latest", str(LM_EVAL))
    for seed in (13, 14):
        run(server, "push", str(adapter_factory(seed=seed)), c.summarizer)
    return c


def test_words_match_names_descriptions_and_cards(server: LiveServer, catalog: Catalog) -> None:
    ns = ("--namespace", catalog.namespace)
    assert names(search(server, "sql", *ns)) == [catalog.sql]  # the card's text
    assert names(search(server, "spid", *ns)) == [catalog.sql]  # a prefix of a model-index dataset name
    assert names(search(server, "Friendly CONVERS", *ns)) == [catalog.chat]  # the description, any case
    assert names(search(server, "summarizer", *ns)) == [catalog.summarizer]  # the name
    assert names(search(server, catalog.sql)) == [catalog.sql]  # the whole name, in any namespace
    assert search(server, "sql friendly", *ns) == []  # every word must match

    hit = search(server, "sql", *ns)[0]
    assert hit["license"] == "apache-2.0" and hit["visibility"] == "private"
    assert hit["latest"]["number"] == 1 and hit["latest"]["tags"] == ["latest"]
    assert hit["latest"]["base"]["name"] == "tiny-llama"
    assert hit["latest"]["metrics"]["spider/exact_match"] == pytest.approx(0.712)  # from the card

    shown = run(server, "search", "sql", *ns).stdout
    assert catalog.sql in shown and "#1 sha256:" in shown and "base tiny-llama" in shown
    assert "spider/exact_match=0.712" in shown and "license=apache-2.0" in shown


def test_filters_are_and_ed(
    server: LiveServer, catalog: Catalog, tiny_base: TinyBase, other_base: TinyBase
) -> None:
    ns = ("--namespace", catalog.namespace)
    run(server, "label", catalog.sql, "validation=approved", "team=data")  # on the repository
    run(server, "label", f"{catalog.chat}:latest", "validation=approved")  # on its latest version
    run(server, "label", f"{catalog.summarizer}#1", "validation=approved")  # not its latest version
    run(server, "label", catalog.summarizer, "validation=pending")

    approved = ("--label", "validation:approved")
    assert set(names(search(server, *ns, *approved))) == {catalog.sql, catalog.chat}
    assert names(search(server, *ns, *approved, "--label", "team=data")) == [catalog.sql]
    assert names(search(server, *ns, "--label", "validation:pending")) == [catalog.summarizer]
    assert names(search(server, *ns, "--license", "Apache-2.0")) == [catalog.sql]

    run(server, "base", "register", str(other_base.path), "--name", "other-llama")
    assert len(search(server, *ns, "--base", "tiny-llama")) == 3
    assert search(server, *ns, "--base", tiny_base.content_digest[:12], "--label", "validation:pending") != []
    assert search(server, *ns, "--base", "other-llama") == []

    assert names(search(server, *ns, "--metric", "arc_easy/acc>=0.7")) == [catalog.chat]
    assert search(server, *ns, "--metric", "arc_easy/acc>0.8") == []
    assert names(search(server, *ns, "--metric", "arc_easy/acc>0.7", "--metric", "mmlu/acc<0.62")) == [
        catalog.chat
    ]
    assert search(server, *ns, "--metric", "arc_easy/acc>0.7", "--metric", "mmlu/acc<0.6") == []
    assert names(search(server, *ns, "friendly", "--metric", "arc_easy/acc>=0.7", *approved)) == [
        catalog.chat
    ]


def test_metric_sort_where_an_eval_result_wins_over_the_card(
    server: LiveServer, catalog: Catalog, tmp_path: Path
) -> None:
    ns = ("--namespace", catalog.namespace)
    by_score = ("--sort", "metric:spider/exact_match")
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"spider/exact_match": 0.9}))
    run(server, "eval", f"{catalog.chat}:latest", str(flat))
    assert names(search(server, *ns, *by_score)) == [catalog.chat, catalog.sql]  # 0.9, then the card's 0.712

    flat.write_text(json.dumps({"spider/exact_match": 0.5}))
    run(server, "eval", f"{catalog.sql}:latest", str(flat))  # the attached result, not the card's 0.712
    assert names(search(server, *ns, *by_score)) == [catalog.chat, catalog.sql]
    found = search(server, *ns, *by_score)
    assert [hit["latest"]["metrics"]["spider/exact_match"] for hit in found] == [0.9, 0.5]
    assert names(search(server, *ns, "--metric", "spider/exact_match>0.7")) == [catalog.chat]


def test_the_latest_version_follows_tags_and_yanks(server: LiveServer, catalog: Catalog) -> None:
    def latest() -> int | None:
        [hit] = search(server, "--namespace", catalog.namespace, "summarizer")
        return hit["latest"]["number"] if hit["latest"] else None

    assert latest() == 2
    run(server, "tag", f"{catalog.summarizer}#1", "latest")
    assert latest() == 1
    run(server, "untag", f"{catalog.summarizer}:latest")
    assert latest() == 2  # without the tag: the newest unyanked version
    run(server, "yank", f"{catalog.summarizer}#2")
    assert latest() == 1
    run(server, "yank", f"{catalog.summarizer}#1")
    assert latest() is None
    run(server, "unyank", f"{catalog.summarizer}#2")
    assert latest() == 2
    run(server, "repo", "describe", catalog.summarizer, "Short summaries of long threads")
    assert names(search(server, "threads", "--namespace", catalog.namespace)) == [catalog.summarizer]
    assert (
        search(server, "--namespace", catalog.namespace, "--sort", "updated")[0]["repo"] == catalog.summarizer
    )

    assert server.http.delete(f"/api/v1/repos/{catalog.summarizer}").status_code == 204
    assert names(search(server, "--namespace", catalog.namespace, "--sort", "name")) == [
        catalog.chat,
        catalog.sql,
    ]


@pytest.mark.parametrize("sort", ["updated", "name", "metric:spider/exact_match"])
def test_pages_follow_link_next(server: LiveServer, catalog: Catalog, tmp_path: Path, sort: str) -> None:
    flat = tmp_path / "flat.json"
    for repo, score in ((catalog.chat, 0.5), (catalog.summarizer, 0.5)):  # a tie: the cursor breaks it
        flat.write_text(json.dumps({"spider/exact_match": score}))
        run(server, "eval", f"{repo}:latest", str(flat))
    params = {"namespace": catalog.namespace, "sort": sort}
    whole = server.http.get("/api/v1/search", params={**params, "limit": 10}).json()
    assert len(whole) == 3
    first = server.http.get("/api/v1/search", params={**params, "limit": 1})
    assert first.links["next"]["url"] and len(first.json()) == 1
    assert names(every_page(server.http, "/api/v1/search", **params, limit=1)) == names(whole)
    assert (
        names(search(server, "--namespace", catalog.namespace, "--sort", sort, "-n", "2")) == names(whole)[:2]
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--metric", "arc_easy/acc"), "NAME OP NUMBER"),
        (("--metric", "arc_easy/acc>=high"), "NAME OP NUMBER"),
        (("--label", "validation"), "key:value"),
        (("--label", "Bad Key:x"), "invalid label key"),
        (("--sort", "score"), "unknown sort"),
        (("--base", "no-such-base"), "no-such-base"),
        (("--namespace", "../x"), "namespace"),
    ],
)
def test_refusals_say_what_to_fix(server: LiveServer, args: tuple[str, ...], said: str) -> None:
    refused = run(server, "search", *args, check=1)
    assert said in refused.stderr


def test_a_cursor_belongs_to_its_search(server: LiveServer, catalog: Catalog) -> None:
    params = {"namespace": catalog.namespace, "sort": "name", "limit": 1}
    cursor = server.http.get("/api/v1/search", params=params).links["next"]["url"].split("cursor=")[1]
    for bad in (cursor + "x", "bm90IGpzb24"):
        assert server.http.get("/api/v1/search", params={**params, "cursor": bad}).status_code == 400
    refused = server.http.get("/api/v1/search", params={**params, "sort": "updated", "cursor": cursor})
    assert refused.status_code == 400 and "cursor" in refused.json()["error"]["message"]


# Only what the caller may read --------------------------------------------------------------------


@dataclass
class Strict:
    """A server with ``LOREG_AUTH=required`` and tokens: an unrestricted admin, a reader of ``alpha``
    and one of ``beta`` (namespaces of their own)."""

    url: str
    alpha: str
    beta: str
    secrets: dict[str, str]  # admin, alpha, beta

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.secrets[token]}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def strict(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Strict]:
    alpha, beta = f"alpha{uuid.uuid4().hex[:6]}", f"beta{uuid.uuid4().hex[:6]}"
    db = Database.connect(database_url)
    with db.transaction() as session:
        secrets = {
            who: tokens.create_token(
                session, REGISTRY, name=f"{who}-{alpha}", scope=scope, namespaces=spaces
            )[1]
            for who, scope, spaces in (
                ("admin", "admin", None),
                ("alpha", "read", [alpha]),
                ("beta", "read", [beta]),
            )
        }
    db.dispose()
    settings = Settings(home=tmp_path_factory.mktemp("strict"), database_url=database_url, auth="required")
    for url in start_server(settings):
        yield Strict(url, alpha, beta, secrets)


def test_only_what_the_caller_may_read(strict: Strict, tiny_base: TinyBase, adapter_factory) -> None:
    word = f"w{uuid.uuid4().hex[:8]}"
    private, public = f"{strict.alpha}/private", f"{strict.alpha}/public"
    with strict.client("admin") as admin:
        register_base(admin, tiny_base.path)
        for repo, visibility in ((private, "private"), (public, "public")):
            assert (
                push(admin, repo, adapter_factory(seed=21), base=tiny_base.content_digest).status_code == 201
            )
            admin.put(f"/api/v1/repos/{repo}/visibility", json={"visibility": visibility}).raise_for_status()
            admin.put(f"/api/v1/repos/{repo}/description", json={"description": word}).raise_for_status()

    def seen(token: str | None) -> set[str]:
        with strict.client(token) as http:
            return set(names(every_page(http, "/api/v1/search", q=word)))

    assert seen("admin") == seen("alpha") == {private, public}
    assert seen("beta") == seen(None) == {public}


def _cache_hits(server: LiveServer) -> float:
    scraped = server.http.get("/metrics").text
    found = re.search(r'^lorareg_search_cache_lookups_total\{result="hit"\} (\S+)$', scraped, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_answers_are_cached_until_any_writer_changes_what_search_sees(
    server: LiveServer, catalog: Catalog
) -> None:
    """A repeated search is answered from the server's cache; a change made by another writer (its own
    engine and sessions, as another API process or worker has) is seen by the very next search."""
    path = f"/api/v1/search?q=friendly&namespace={catalog.namespace}"
    before = _cache_hits(server)
    first = server.http.get(path)
    again = server.http.get(path)
    assert again.json() == first.json() and names(first.json()) == [catalog.chat]
    assert _cache_hits(server) == before + 1

    db = Database.connect(server.settings.resolved_database_url)
    try:
        with db.transaction() as session:
            repos.describe(session, RepoName.parse(catalog.chat), "An adapter for tickets", REGISTRY)
        assert server.http.get(path).json() == []  # not the cached answer: "friendly" is gone
        assert names(server.http.get(path.replace("friendly", "tickets")).json()) == [catalog.chat]
        with db.transaction() as session:
            repos.set_visibility(session, RepoName.parse(catalog.chat), "public", REGISTRY)
        assert server.http.get(path.replace("friendly", "tickets")).json()[0]["visibility"] == "public"
    finally:
        db.dispose()
    assert _cache_hits(server) == before + 1  # every search after a change was found again
