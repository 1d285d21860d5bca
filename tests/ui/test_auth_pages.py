"""Logging in to the web UI with a token (LOREG_AUTH=required): the session cookie, what anonymous
visitors see, logging out, revoked tokens, and forms that do not come from the registry's own pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from registry.db.models import WebSession
from tests.conftest import TinyBase
from tests.ui.conftest import Site, Watched, login, make_tokens, publish_teams


@pytest.fixture(scope="module")
def teams(secured_site: Site, tiny_base: TinyBase, adapter_factory: Any) -> dict[str, str]:
    """alpha/private-bot (private) and alpha/open-bot (public), and tokens: alpha's reader, beta's reader."""
    publish_teams(secured_site, tiny_base, adapter_factory)
    return make_tokens(secured_site, {"alpha-reader": ("read", "alpha"), "beta-reader": ("read", "beta")})


def _sessions(site: Site) -> int:
    engine = create_engine(site.database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(WebSession)) or 0
    finally:
        engine.dispose()


def test_login_shows_private_repositories_and_logout_ends_the_session(
    secured_site: Site, teams: dict[str, str], page: Any
) -> None:
    site = secured_site
    page.goto(f"{site.url}/")
    shown = page.locator("[data-testid=results] .repo").all_inner_texts()
    assert shown == ["alpha/open-bot"], "anonymous visitors see public repositories only"
    assert page.locator("text=Log in").count() == 1

    before = _sessions(site)
    login(page, site, teams["alpha-reader"])
    assert page.locator(".viewer").inner_text() == "alpha-reader"
    shown = page.locator("[data-testid=results] .repo").all_inner_texts()
    assert sorted(shown) == ["alpha/open-bot", "alpha/private-bot"]
    cookie = next(c for c in page.context.cookies() if c["name"] == "lorareg_session")
    assert (
        cookie["httpOnly"] and cookie["sameSite"] == "Strict" and teams["alpha-reader"] not in cookie["value"]
    )
    assert _sessions(site) == before + 1

    page.click("form[action='/logout'] button")
    assert page.locator("[data-testid=results] .repo").all_inner_texts() == ["alpha/open-bot"]
    assert _sessions(site) == before
    assert not [c for c in page.context.cookies() if c["name"] == "lorareg_session"]


def test_a_wrong_token_is_refused_on_the_login_page(
    secured_site: Site, teams: dict[str, str], page: Any, watched: Watched
) -> None:
    watched.expect(401)
    login(page, secured_site, "lrg_not-a-token")
    assert "unknown token" in page.locator("[data-testid=login-problem]").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "lorareg_session"]


def test_another_teams_session_sees_only_public(secured_site: Site, teams: dict[str, str], page: Any) -> None:
    login(page, secured_site, teams["beta-reader"])
    assert page.locator("[data-testid=results] .repo").all_inner_texts() == ["alpha/open-bot"]


def _logged_in(site: Site, token: str) -> httpx.Client:
    """A client holding a session opened through the login form."""
    client = httpx.Client(base_url=site.url, timeout=30)
    client.get("/login")
    answer = client.post("/login", data={"token": token, "csrf": client.cookies["lorareg_csrf"], "next": "/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    return client


def test_revoking_the_token_ends_its_sessions(secured_site: Site, tiny_base: TinyBase) -> None:
    site = secured_site
    made = site.cli_json("token", "create", "short-lived", "--scope", "read", "--namespace", "alpha")
    client = _logged_in(site, made["secret"])
    try:
        assert "alpha/private-bot" in client.get("/").text
        site.cli("token", "revoke", str(made["id"]))
        after = client.get("/")
        assert "alpha/private-bot" not in after.text and "Log in" in after.text
        assert "lorareg_session" not in client.cookies, "an ended session's cookie is cleared"
    finally:
        client.close()


def test_forms_without_the_csrf_token_or_from_another_site_are_refused(
    secured_site: Site, teams: dict[str, str]
) -> None:
    site = secured_site
    with httpx.Client(base_url=site.url, timeout=30) as client:
        client.get("/login")
        missing = client.post("/login", data={"token": teams["alpha-reader"], "next": "/"})
        assert missing.status_code == 403 and "reload the page" in missing.text
        forged = client.post(
            "/login",
            data={"token": teams["alpha-reader"], "csrf": client.cookies["lorareg_csrf"]},
            headers={"Origin": "https://evil.example"},
        )
        assert forged.status_code == 403
        assert "lorareg_session" not in client.cookies


def test_login_goes_back_only_to_this_server(secured_site: Site, teams: dict[str, str]) -> None:
    with httpx.Client(base_url=secured_site.url, timeout=30) as client:
        client.get("/login")
        for target, expected in (
            ("/alpha/open-bot", "/alpha/open-bot"),
            ("//evil.example/x", "/"),
            ("https://evil.example", "/"),
        ):
            answer = client.post(
                "/login",
                data={"token": teams["alpha-reader"], "csrf": client.cookies["lorareg_csrf"], "next": target},
            )
            assert answer.headers["location"] == expected


def test_behind_an_https_proxy_the_cookies_are_secure(secured_site: Site, teams: dict[str, str]) -> None:
    """uvicorn trusts X-Forwarded-Proto from the proxies FORWARDED_ALLOW_IPS names (loopback by default)."""
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=secured_site.url, timeout=30, headers=https) as client:
        first = client.get("/login")
        assert "secure" in first.headers["set-cookie"].lower()
        csrf = first.cookies["lorareg_csrf"]  # a Secure cookie: httpx keeps it from this http:// URL itself
        answer = client.post(
            "/login",
            data={"token": teams["alpha-reader"], "csrf": csrf, "next": "/"},
            headers={"Cookie": f"lorareg_csrf={csrf}"},
        )
        assert answer.status_code == 303
        session = answer.headers["set-cookie"].lower()
        assert "lorareg_session=" in session and "secure" in session and "httponly" in session
        assert "samesite=strict" in session
