"""The base model pages (the list, a base's shape, SHAs and adapters, by every form a base answers to)
and the audit page (admins only, filtered, paginated), on a real server, as each kind of viewer sees them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import TinyBase
from tests.ui.conftest import Published, Site, make_tokens, publish_teams

ADAPTERS = ["/acme/blend/v/1", "/acme/chat-bot/v/1", "/acme/sql-bot/v/2", "/acme/sql-bot/v/1"]


def _section(html: str, testid: str) -> str:
    """The element marked ``data-testid=testid``, up to the end of its table (or the page)."""
    start = html.index(f'data-testid="{testid}"')
    end = html.find("</table>", start)
    return html[start : end if end != -1 else len(html)]


def _adapter_links(html: str) -> list[str]:
    return re.findall(r'class="version" href="([^"]+)"', _section(html, "adapters"))


def _row(html: str, digest: str) -> str:
    start = html.index(f'data-base="{digest}"')
    return html[start : html.index("</tr>", start)]


# Auth off: everyone is an admin ----------------------------------------------------------------


def test_bases_list_shows_shape_shas_and_adapter_count(site: Site, published: Published) -> None:
    answer = site.http.get("/bases")
    assert answer.status_code == 200 and "default-src 'self'" in answer.headers["content-security-policy"]
    row = _row(answer.text, published.base)
    assert "tiny-llama" in row and f'href="/bases/{published.base}"' in row
    assert f'title="content digest: {published.base}"' in row  # the SHAs it answers to
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", row)
    assert cells[-4:] == ["Llama-style", "2", "64", "4"]  # architecture, layers, hidden size, adapters


@pytest.mark.parametrize("form", ["name", "name@sha", "sha256", "bare digest", "prefix"])
def test_a_base_page_by_every_form_it_answers_to(site: Site, published: Published, form: str) -> None:
    digest = published.base
    spec = {
        "name": "tiny-llama",
        "name@sha": f"tiny-llama@{digest}",
        "sha256": f"sha256:{digest}",
        "bare digest": digest,
        "prefix": digest[:12],
    }[form]
    answer = site.http.get(f"/bases/{spec}")
    assert answer.status_code == 200, answer.text
    assert _adapter_links(answer.text) == ADAPTERS  # by repository, newest first
    assert "(4)" in answer.text
    assert f'<code class="sha">{digest}</code>' in _section(answer.text, "shas")
    modules = _section(answer.text, "modules")
    assert '<code>self_attn.q_proj</code></td><td class="num">64 × 64</td><td>F32</td>' in modules
    assert '<code>mlp.down_proj</code></td><td class="num">64 × 128</td>' in modules
    assert "model.embed_tokens" in _section(answer.text, "other-weights")
    assert "shapes only" in _section(answer.text, "weights")
    tags = _section(answer.text, "adapters")
    assert re.search(r'/acme/sql-bot/v/1">#1</a></td>.*?<span class="tag">prod</span>', tags, re.S)


def test_adapters_of_a_base_come_a_page_at_a_time(site: Site, published: Published) -> None:
    first = site.http.get(f"/bases/{published.base}", params={"limit": 3})
    assert _adapter_links(first.text) == ADAPTERS[:3]
    more = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert more is not None
    second = site.http.get(more.group(1).replace("&amp;", "&"))
    assert _adapter_links(second.text) == ADAPTERS[3:]
    assert 'rel="next"' not in second.text and "First page" in second.text


def test_an_unknown_base_is_a_404_page_with_the_resolvers_message(site: Site, published: Published) -> None:
    by_name = site.http.get("/bases/no-such-base")
    assert by_name.status_code == 404 and by_name.headers["content-type"].startswith("text/html")
    assert "no base model named &#39;no-such-base&#39; is registered" in by_name.text
    by_prefix = site.http.get(f"/bases/{'0' * 12}")
    assert by_prefix.status_code == 404
    assert f"no registered base model answers to a SHA starting with {'0' * 12}" in by_prefix.text
    wrong_cursor = site.http.get(f"/bases/{published.base}", params={"cursor": "acme/sql-bot#x"})
    assert wrong_cursor.status_code == 400 and "invalid cursor" in wrong_cursor.text


def test_from_the_list_to_a_base_in_the_browser(site: Site, published: Published, page: Any) -> None:
    page.goto(f"{site.url}/bases")
    page.click("[data-testid=bases] a.repo")
    assert page.url == f"{site.url}/bases/{published.base}"
    links = page.locator("[data-testid=adapters] a.version")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == ADAPTERS
    assert page.locator("[data-testid=shape] dd").first.inner_text().startswith("Llama-style")


def test_the_audit_page_lists_the_trail_and_filters_it(site: Site, published: Published) -> None:
    trail = site.http.get("/audit")
    assert trail.status_code == 200
    actions = re.findall(r'class="action" href="[^"]*">([^<]+)</a>', trail.text)
    assert {"base.register", "version.push", "label.set", "job.submit"} <= set(actions)
    pushes = site.http.get("/audit", params={"action": "version.push"})
    pushed = re.findall(r'class="action" href="[^"]*">([^<]+)</a>', pushes.text)
    assert pushed and set(pushed) == {"version.push"}
    assert 'value="version.push"' in pushes.text  # the form keeps the filter
    none = site.http.get("/audit", params={"actor": "nobody"})
    assert "No entries match." in none.text


def test_the_audit_trail_comes_a_page_at_a_time(site: Site, published: Published) -> None:
    every = re.findall(r'data-event="(\d+)"', site.http.get("/audit", params={"limit": 500}).text)
    seen, url = [], "/audit?limit=2"
    while url:
        answer = site.http.get(url)
        seen += re.findall(r'data-event="(\d+)"', answer.text)
        more = re.search(r'href="([^"]+)" rel="next"', answer.text)
        url = more.group(1).replace("&amp;", "&") if more else ""
    assert seen == every and seen == sorted(seen, key=int, reverse=True) and len(seen) > 2


# LOREG_AUTH=required: each viewer sees what its token may read ---------------------------------


@pytest.fixture(scope="module")
def teams(secured_site: Site, tiny_base: TinyBase, adapter_factory: Any) -> dict[str, str]:
    """alpha/private-bot (private), alpha/open-bot (public); tokens: alpha's and beta's readers, alpha's
    admin."""
    site = secured_site
    publish_teams(site, tiny_base, adapter_factory)
    secrets = make_tokens(
        site,
        {
            "alpha-reader": ("read", "alpha"),
            "beta-reader": ("read", "beta"),
            "alpha-admin": ("admin", "alpha"),
        },
    )
    site.cli("label", "alpha/open-bot", "team=alpha", token=secrets["alpha-admin"])
    return secrets


def _as(site: Site, token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def test_a_base_lists_only_the_adapters_the_viewer_may_read(
    secured_site: Site, teams: dict[str, str], tiny_base: TinyBase
) -> None:
    site, digest = secured_site, tiny_base.content_digest
    for token, expected in (
        (teams["alpha-reader"], ["/alpha/open-bot/v/1", "/alpha/private-bot/v/1"]),
        (teams["beta-reader"], ["/alpha/open-bot/v/1"]),
    ):
        page = site.http.get(f"/bases/{digest}", headers=_as(site, token))
        assert page.status_code == 200 and _adapter_links(page.text) == expected
        assert f"({len(expected)})" in page.text
        listed = site.http.get("/bases", headers=_as(site, token))
        assert re.findall(r"<td[^>]*>([^<]*)</td>", _row(listed.text, digest))[-1] == str(len(expected))
    anonymous = site.http.get(f"/bases/{digest}")
    assert anonymous.status_code == 401 and "private-bot" not in anonymous.text
    assert "Log in with a token" in anonymous.text  # the API's rule: base models are for tokens


def test_audit_is_for_admins_and_a_namespace_admin_sees_its_own(
    secured_site: Site, teams: dict[str, str]
) -> None:
    site = secured_site
    refused = site.http.get("/audit", headers=_as(site, teams["alpha-reader"]))
    assert refused.status_code == 403 and "this needs admin" in refused.text
    assert site.http.get("/audit").status_code == 401

    def actions(token: str | None, **params: str) -> list[str]:
        answer = site.http.get("/audit", params=params, headers=_as(site, token))
        assert answer.status_code == 200, answer.text
        return re.findall(r'class="action" href="[^"]*">([^<]+)</a>', answer.text)

    everything = actions(site.token)
    assert "base.register" in everything and "version.push" in everything
    assert set(actions(site.token, action="repo.visibility")) == {"repo.visibility"}
    assert actions(site.token, actor="alpha-admin") == ["label.set"]
    own = actions(teams["alpha-admin"])
    assert "label.set" in own and "version.push" in own
    assert "base.register" not in own  # a global entry: the unrestricted admin's only
    elsewhere = site.http.get("/audit", params={"namespace": "beta"}, headers=_as(site, teams["alpha-admin"]))
    assert elsewhere.status_code == 403
