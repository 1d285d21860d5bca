"""The jobs pages: the list (filters, links to the exact versions read and made, durations, pages), one
job whole with its result, cancelling, and what each viewer may see of them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TinyBase
from tests.ui.conftest import Published, Site


def _jobs_by_kind(site: Site) -> dict[str, dict[str, Any]]:
    return {job["kind"]: job for job in site.cli_json("jobs")}


def test_the_list_links_inputs_outputs_and_comparisons(site: Site, published: Published) -> None:
    jobs = _jobs_by_kind(site)
    merge, diff = jobs["merge"], jobs["diff"]
    listed = site.http.get("/jobs")
    assert listed.status_code == 200
    html = listed.text
    for job in (merge, diff):
        assert f'href="/jobs/{job["id"]}"' in html
        for item in job["inputs"]:  # each input: the exact version it read
            assert f'href="/{item["repo"]}/v/sha256:{item["digest"]}"' in html
    assert f'href="/{published.merged}/v/1"' in html  # the version the merge made
    assert f'href="/{published.repo}/compare/1...2"' in html  # the diff's comparison
    assert html.count(" s</td>") == 2  # both finished: how long each ran

    merges = site.http.get("/jobs", params={"kind": "merge"}).text
    assert merge["id"] in merges and diff["id"] not in merges
    assert "No job matches these filters" in site.http.get("/jobs", params={"status": "failed"}).text

    first = site.http.get("/jobs", params={"limit": 1}).text  # newest first: the diff
    assert diff["id"] in first and merge["id"] not in first
    following = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = site.http.get(following).text
    assert merge["id"] in second and diff["id"] not in second
    assert site.http.get("/jobs", params={"cursor": "nope"}).status_code == 400


def test_a_job_page_shows_the_whole_job(site: Site, published: Published) -> None:
    jobs = _jobs_by_kind(site)
    merge = site.http.get(f"/jobs/{jobs['merge']['id']}").text
    assert 'data-status="succeeded"' in merge and "data-refresh" not in merge
    assert '<dt>method</dt><dd><code>"linear"</code></dd>' in merge
    assert f'href="/{published.merged}/v/1"' in merge and "Report" in merge
    diff = site.http.get(f"/jobs/{jobs['diff']['id']}").text
    total = jobs["diff"]["result"]["report"]["summary"]["total"]
    assert f"{total['relative']:.4g}" in diff and f'href="/{published.repo}/compare/1...2"' in diff
    missing = site.http.get("/jobs/0123456789abcdef0123456789abcdef")
    assert missing.status_code == 404 and "no job" in missing.text


def test_a_finished_job_cannot_be_cancelled(site: Site, published: Published) -> None:
    job = _jobs_by_kind(site)["merge"]
    site.http.get(f"/jobs/{job['id']}")  # the CSRF cookie
    answer = site.http.post(f"/jobs/{job['id']}/cancel", data={"csrf": site.http.cookies["lorareg_csrf"]})
    assert answer.status_code == 409 and "already succeeded" in answer.text
    assert site.cli_json("jobs", "show", job["id"])["status"] == "succeeded"


def test_from_the_list_to_a_job_to_its_comparison(site: Site, published: Published, page: Any) -> None:
    diff = _jobs_by_kind(site)["diff"]
    page.goto(f"{site.url}/jobs")
    page.click(f"tr[data-job='{diff['id']}'] a[href='/jobs/{diff['id']}']")
    assert page.locator("[data-testid=result]").is_visible()
    page.click("[data-testid=compare-link]")
    page.wait_for_selector("table.heatmap td.cell")
    assert page.url.endswith(f"/{published.repo}/compare/1...2")


@pytest.fixture(scope="module")
def teams(secured_site: Site, tiny_base: TinyBase, adapter_factory: Any) -> dict[str, Any]:
    """A diff of acme's (private) versions and one of beta's public ones; tokens of each team."""
    site = secured_site
    site.cli("base", "register", str(tiny_base.path), "--name", "tiny-llama")
    for repo in ("acme/secret", "beta/open"):
        for seed in (1, 2):
            site.cli("push", str(adapter_factory(seed=seed)), repo, "--base", "tiny-llama")
        site.cli("diff", f"{repo}#1", f"{repo}#2")
    site.cli("repo", "visibility", "beta/open", "public")
    jobs = {job["inputs"][0]["repo"]: job["id"] for job in site.cli_json("jobs")}
    tokens = {
        name: site.cli_json("token", "create", name, "--scope", scope, "--namespace", namespace)["secret"]
        for name, scope, namespace in (("beta-writer", "write", "beta"), ("acme-reader", "read", "acme"))
    }
    return {"site": site, "acme": jobs["acme/secret"], "beta": jobs["beta/open"], "tokens": tokens}


def test_each_team_sees_the_jobs_of_what_it_may_read(teams: dict[str, Any]) -> None:
    site, acme, beta = teams["site"], teams["acme"], teams["beta"]
    as_beta = {"Authorization": f"Bearer {teams['tokens']['beta-writer']}"}
    as_acme = {"Authorization": f"Bearer {teams['tokens']['acme-reader']}"}
    listed = site.http.get("/jobs", headers=as_beta).text
    assert beta in listed and acme not in listed
    assert site.http.get(f"/jobs/{acme}", headers=as_beta).status_code == 404
    both = site.http.get("/jobs", headers=as_acme).text
    assert acme in both and beta in both  # beta/open is public
    anonymous = site.http.get("/jobs")  # jobs need a token, as on the API
    assert anonymous.status_code == 401 and "/login?next=/jobs" in anonymous.text
    site.http.get(f"/jobs/{acme}", headers=as_acme)
    refused = site.http.post(
        f"/jobs/{acme}/cancel", data={"csrf": site.http.cookies["lorareg_csrf"]}, headers=as_acme
    )
    assert refused.status_code == 403 and "read scope" in refused.text
