"""The compare page: two versions' headers, metric and label differences, and the diff job's heatmap with
the job's exact values; a writer starts the diff from the page and sees it appear; a reader is told the
command; across repositories too."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TinyBase
from tests.ui.conftest import Published, Site, publish

FRESH = "acme/fresh"  # two versions no diff was asked of: r=8 on every module, then r=4 on three
FEW_TARGETS = ("q_proj", "v_proj", "o_proj")
LOST = "acme/lost"  # two versions, the second's weights then lost from the blob store
LAYERS, MODULE_TYPES = 2, 7  # the tiny Llama's: every attention and MLP projection adapted


class Elements(HTMLParser):
    """Every element of a page with its attributes, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name: value or "" for name, value in attrs}))

    def having(self, attribute: str, tag: str | None = None) -> list[dict[str, str]]:
        return [attrs for name, attrs in self.found if attribute in attrs and tag in (None, name)]


def cells(html: str) -> dict[str, dict[str, str]]:
    """The heatmap's module cells by module name."""
    return {attrs["data-name"]: attrs for attrs in Elements(html).having("data-module", "td")}


def heat(attrs: dict[str, str]) -> str:
    (level,) = [c for c in attrs["class"].split() if c.startswith("heat-")]
    return level.removeprefix("heat-")


@dataclass
class Content:
    published: Published
    report: dict[str, Any]  # the published diff job's result.report (sql-bot #1 vs #2)
    job_id: str
    lost: Path  # the adapter pushed as acme/lost#2


@pytest.fixture(scope="module")
def content(
    site: Site, tiny_base: TinyBase, adapter_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Content:
    published = publish(site, tiny_base, adapter_factory, tmp_path_factory.mktemp("publish"))
    results = tmp_path_factory.mktemp("evals") / "results.json"
    results.write_text('{"gsm8k/exact_match": 0.40}')
    site.cli("eval", f"{published.repo}#1", str(results))  # #2 has 0.42: a delta of +0.02
    site.cli("push", str(adapter_factory(seed=4)), FRESH, "--base", "tiny-llama")
    site.cli("push", str(adapter_factory(seed=5, r=4, targets=FEW_TARGETS)), FRESH, "--base", "tiny-llama")
    site.cli("push", str(adapter_factory(seed=6)), LOST, "--base", "tiny-llama")
    lost = adapter_factory(seed=7)
    site.cli("push", str(lost), LOST, "--base", "tiny-llama")
    (job,) = [
        j
        for j in site.cli_json("jobs", "--kind", "diff")
        if [i["ref"] for i in j["inputs"]] == [f"{published.repo}#1", f"{published.repo}#2"]
    ]
    shown = site.cli_json("jobs", "show", job["id"])
    return Content(published, shown["result"]["report"], job["id"], lost)


def test_heatmap_and_summary_are_the_diff_jobs(site: Site, content: Content) -> None:
    answer = site.http.get(f"/{content.published.repo}/compare/1...2")
    assert answer.status_code == 200, answer.text
    report, found = content.report, cells(answer.text)
    assert len(found) == len(report["modules"]) == LAYERS * MODULE_TYPES
    assert {(m["layer"], m["module_type"]) for m in report["modules"]} == {
        (int(c["data-layer"]), c["data-module"]) for c in found.values()
    }
    largest = max(m["relative"] for m in report["modules"])
    for module in report["modules"]:
        cell = found[module["name"]]
        assert float(cell["data-relative"]) == module["relative"]
        assert float(cell["data-distance"]) == module["distance"]
        assert float(cell["data-cosine"]) == module["cosine"]
        assert heat(cell) == str(min(9, math.floor(module["relative"] / largest * 10)))
        assert cell["title"].startswith(f"layer {module['layer']} {module['module_type']}: distance ")
    summary = {a["data-summary"]: a for a in Elements(answer.text).having("data-summary")}
    total = report["summary"]["total"]
    assert float(summary["relative"]["data-value"]) == total["relative"]
    assert float(summary["distance"]["data-value"]) == total["distance"]
    assert float(summary["cosine"]["data-value"]) == total["cosine"]
    assert f"/jobs/{content.job_id}" in answer.text
    assert 'href="/acme/sql-bot/v/1"' in answer.text and 'href="/acme/sql-bot/v/2"' in answer.text
    assert "Compute the diff" not in answer.text  # one was found: nothing to start

    by_cosine = cells(site.http.get(f"/{content.published.repo}/compare/1...2?metric=cosine").text)
    for module in report["modules"]:
        expected = min(9, math.floor((1 - module["cosine"]) / 2 * 10))
        assert heat(by_cosine[module["name"]]) == str(expected)
    wrong = site.http.get(f"/{content.published.repo}/compare/1...2?metric=size")
    assert wrong.status_code == 400 and "metric must be relative or cosine" in wrong.text


def test_the_diff_is_found_however_the_versions_are_named(site: Site, content: Content) -> None:
    """prod is #1 and latest #2: the same diff job, though `lorareg diff` named them by number."""
    digest = content.published.versions[1]["digest"]
    answer = site.http.get(f"/{content.published.repo}/compare/prod...{digest}")
    assert answer.status_code == 200 and len(cells(answer.text)) == LAYERS * MODULE_TYPES
    assert f"/jobs/{content.job_id}" in answer.text
    swapped = site.http.get(f"/{content.published.repo}/compare/2...1")  # B vs A: another diff
    assert cells(swapped.text) == {} and "No diff computed yet" in swapped.text


def test_metric_and_label_differences(site: Site, content: Content) -> None:
    page = Elements(site.http.get(f"/{content.published.repo}/compare/1...2").text)
    rows = {a["data-metric"] for a in page.having("data-metric", "tr")}
    assert rows == {"gsm8k/exact_match", "arc_easy/acc", "spider/exact_match"}
    (delta,) = [a for a in page.having("data-delta")]
    assert float(delta["data-delta"]) == pytest.approx(0.02)
    html = site.http.get(f"/{content.published.repo}/compare/1...2").text
    assert "+0.02" in html
    changed = {a["data-label"]: a.get("class") for a in page.having("data-label", "tr")}
    assert changed == {"validation": "changed"}


def _csrf(site: Site, path: str) -> str:
    site.http.get(path)
    return site.http.cookies["lorareg_csrf"]


def _wait_for_diff(site: Site, path: str) -> str:
    """The compare page once its diff job finished (following it live until then)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        html = site.http.get(path).text
        if 'id="diff-status"' not in html:
            return html
        assert 'data-refresh="2"' in html and '<meta http-equiv="refresh" content="2">' in html
        time.sleep(0.5)
    raise AssertionError(f"the diff on {path} did not finish")


def test_across_repositories(site: Site, content: Content) -> None:
    published = content.published
    path = f"/{published.repo}/compare/1...{published.other}%231"
    page = site.http.get(path)
    assert page.status_code == 200 and 'href="/acme/chat-bot/v/1"' in page.text
    assert "No diff computed yet" in page.text and "Compute the diff" in page.text
    (token,) = [a["value"] for a in Elements(page.text).having("value", "input") if a.get("name") == "csrf"]
    started = site.http.post(path, data={"csrf": token})
    assert started.status_code == 303 and started.headers["location"] == path
    html = _wait_for_diff(site, path)
    assert len(cells(html)) == LAYERS * MODULE_TYPES
    # the job the page submitted is the one `lorareg diff` would: the CLI answers from it
    made = site.cli_json("diff", f"{published.repo}#1", f"{published.other}#1")
    assert {c["data-relative"] for c in cells(html).values()} == {
        str(m["relative"]) for m in made["report"]["modules"]
    }
    forged = httpx.post(f"{site.url}{path}", data={"csrf": token})  # no CSRF cookie: another site
    assert forged.status_code == 403


def test_a_writer_starts_the_diff_and_sees_the_heatmap(site: Site, content: Content, page: Any) -> None:
    page.goto(f"{site.url}/{FRESH}/compare/1...2")
    assert page.locator("[data-testid=no-diff]").is_visible()
    page.click("form.start-diff button[type=submit]")
    page.wait_for_selector("td.cell.heat-9", timeout=120_000)
    assert page.locator("table.heatmap td[data-module]").count() == LAYERS * MODULE_TYPES
    assert page.locator("td[data-module]", has_text="A only").count() == LAYERS * (MODULE_TYPES - 3)
    only_a = page.locator("[data-summary=only_in_a]").inner_text()
    assert "model.layers.0.mlp.down_proj" in only_a and "q_proj" not in only_a
    assert page.locator("[data-testid=config-changes] tr[data-key=r] td").all_inner_texts() == ["8", "4"]


def test_a_failed_diff_says_why_and_can_be_retried(site: Site, content: Content) -> None:
    """B's weights are lost from the blob store: its diff fails, and the page says so."""
    (weights,) = content.lost.glob("*.safetensors")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (site.home / "blobs" / "sha256" / digest[:2] / digest).unlink()
    path = f"/{LOST}/compare/1...2"
    assert site.http.post(path, data={"csrf": _csrf(site, path)}).status_code == 303
    html = _wait_for_diff(site, path)
    assert cells(html) == {} and 'data-testid="diff-error"' in html and "Try the diff again" in html
    (job,) = [j for j in site.cli_json("jobs", "--status", "failed") if j["inputs"][0]["repo"] == LOST]
    assert job["error"] and job["error"] in html.replace("&#39;", "'").replace("&#34;", '"')


@pytest.fixture(scope="module")
def secured(secured_site: Site, tiny_base: TinyBase, adapter_factory: Any) -> tuple[Site, dict[str, str]]:
    """A secured site holding two private acme repositories and the headers of an acme read token."""
    site = secured_site
    site.cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    site.cli("push", str(adapter_factory(seed=1)), "acme/sql-bot", "--base", "tiny-llama")
    site.cli("push", str(adapter_factory(seed=3)), "acme/chat-bot", "--base", "tiny-llama")
    made = site.cli_json("token", "create", "acme-reader", "--scope", "read", "--namespace", "acme")
    return site, {"Authorization": f"Bearer {made['secret']}"}


def test_readers_see_the_command_and_cannot_start_a_diff(secured: tuple[Site, dict[str, str]]) -> None:
    site, reader = secured
    path = "/acme/sql-bot/compare/1...acme/chat-bot%231"
    page = site.http.get(path, headers=reader)
    assert page.status_code == 200 and "No diff computed yet" in page.text
    assert "lorareg diff acme/sql-bot#1 acme/chat-bot#1" in page.text and "Compute the diff" not in page.text
    token = site.http.cookies["lorareg_csrf"]
    refused = site.http.post(path, data={"csrf": token}, headers=reader)
    assert refused.status_code == 403 and "read scope" in refused.text
    assert site.http.get(path).status_code == 401  # anonymous: acme's repositories are private
    outsider = site.cli_json("token", "create", "beta-writer", "--scope", "write", "--namespace", "beta")
    hidden = site.http.get(path, headers={"Authorization": f"Bearer {outsider['secret']}"})
    assert hidden.status_code == 404 and "does not exist or is not readable" in hidden.text
