"""The front page: search with filters over what the viewer may read, counts, and its security headers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import Published, Site


def test_front_page_searches_and_filters(site: Site, published: Published, page: Any) -> None:
    answer = site.http.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert "3 repositories" in answer.text and "1 base models" in answer.text

    page.goto(f"{site.url}/")
    page.fill("input[name=q]", "warehouse")
    page.press("input[name=q]", "Enter")
    results = page.locator("[data-testid=results] .repo")
    assert results.all_inner_texts() == [published.repo]
    page.click(f"text={published.repo}")
    assert page.url.endswith(f"/{published.repo}")


def test_filters_and_refusals(site: Site, published: Published) -> None:
    labelled = site.http.get("/", params={"label": "team:data"})
    assert published.repo in labelled.text and published.other not in labelled.text
    wrong = site.http.get("/", params={"base": "no-such-base"})
    assert wrong.status_code == 400 and "no base model named" in wrong.text
    hostile = site.http.get("/", params={"q": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in hostile.text and "&lt;script&gt;" in hostile.text


def test_namespaces_of_the_ui_pages_are_reserved(
    site: Site, published: Published, adapter_factory: Any
) -> None:
    refused = site.cli("push", str(adapter_factory(seed=1)), "jobs/sneaky", "--base", "tiny-llama", check=1)
    assert "namespace 'jobs' is reserved" in refused.stderr
    assert site.http.get("/api/v1/repos/jobs/sneaky").status_code == 404, "nothing was created"


def test_a_visit_from_search_to_jobs(site: Site, published: Published, page: Any) -> None:
    """search → repository → lineage node → version → compare (the heatmap's values are the diff job's) →
    base → jobs, all by clicking links."""
    page.goto(f"{site.url}/?q=blend")
    page.click(f"[data-testid=results] a.repo:text-is('{published.merged}')")
    page.click(f".lineage a[href='/{published.repo}/v/1']")
    assert page.url.endswith(f"/{published.repo}/v/1")
    page.goto(f"{site.url}/{published.repo}/v/2")
    page.click("text=compare with #1")
    cells = page.locator("[data-testid=heatmap] td.cell")
    report = site.cli_json("jobs", "show", published.diff_job)["result"]["report"]
    modules = {m["name"]: m for m in report["modules"]}
    assert cells.count() == len(modules)
    for cell in cells.all()[:5]:
        module = modules[cell.get_attribute("data-name")]
        assert float(cell.get_attribute("data-distance")) == pytest.approx(module["distance"], rel=1e-9)
    page.click("a[href^='/bases/']")
    assert published.base in page.content()
    page.click("nav >> text=Jobs")
    assert page.locator(f"a[href='/jobs/{published.diff_job}']").count() == 1


def test_the_main_pages_fit_a_phone(site: Site, published: Published, page: Any) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (
        "/",
        f"/{published.repo}",
        f"/{published.repo}/v/1",
        f"/{published.repo}/compare/1...2",
        "/jobs",
    ):
        page.goto(f"{site.url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
