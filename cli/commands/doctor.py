"""``doctor``: checks this client's configuration against its registry and says what to fix.

One line per check: ``ok``, ``warn`` or ``FAIL`` with the fix; checks that depend on a server that
cannot be reached are skipped. Exit 0 when nothing failed (warnings included), else 1 — an unreachable
registry too: it is a finding, not an error of the command.
"""

from __future__ import annotations

import stat
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import click
import httpx

from cli.context import AppContext, pass_app

Status = Literal["ok", "warn", "fail", "skip"]
MAX_SKEW = timedelta(seconds=30)
EXPIRY_WARNING = timedelta(days=7)
CLIENT_VERSION = version("lorareg")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    def line(self) -> str:
        label = {"fail": "FAIL"}.get(self.status, self.status)
        return f"{label:<5} {self.name:<12} {self.message}" + (f"; fix: {self.fix}" if self.fix else "")


@click.command()
@pass_app
def doctor(app: AppContext) -> None:
    """Check the registry URL, versions, token, clock, cache and credentials; print what to fix."""
    checks = [*_server_checks(app), _cache(app.settings.cache), _credentials(app.settings.credentials_file)]
    app.emit([asdict(c) for c in checks], "\n".join(c.line() for c in checks))
    if any(c.status == "fail" for c in checks):
        raise SystemExit(1)


def _server_checks(app: AppContext) -> list[Check]:
    url = app.settings.url
    http = app.client.http
    sent = datetime.now(UTC)
    try:
        health = http.get("/api/v1/health")
    except httpx.HTTPError as exc:
        unreachable = Check(
            "url",
            "fail",
            f"cannot reach {url}: {exc}",
            "start the registry (`lorareg serve`) or point at it with --url / LOREG_URL",
        )
        return [unreachable, *_skipped("registry unreachable")]
    received = datetime.now(UTC)
    body = _json(health)
    if health.status_code != 200 or body.get("status") != "ok":
        not_lorareg = Check(
            "url",
            "fail",
            f"{url}/api/v1/health answered {health.status_code}: not a lorareg registry",
            "set --url / LOREG_URL to the registry's base URL (no path after the host)",
        )
        return [not_lorareg, *_skipped("not a registry")]
    return [
        Check("url", "ok", f"{url} answers"),
        _version(body.get("version")),
        _clock(health.headers.get("date"), sent + (received - sent) / 2),
        *_token(http.get("/api/v1/whoami"), presented="authorization" in http.headers),
    ]


def _skipped(reason: str) -> list[Check]:
    """The checks that need the registry, when it cannot answer them."""
    return [Check(name, "skip", reason) for name in ("version", "clock", "token")]


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _version(server: str | None) -> Check:
    if server is None:
        return Check("version", "warn", f"the server does not say its version (client {CLIENT_VERSION})")
    if server != CLIENT_VERSION:
        return Check(
            "version",
            "warn",
            f"server {server}, client {CLIENT_VERSION}",
            f"install the server's version: pip install 'lorareg=={server}'",
        )
    return Check("version", "ok", f"server and client {server}")


def _clock(date: str | None, local: datetime) -> Check:
    """The server's ``Date`` (second resolution) against this machine's clock at the request's middle."""
    if date is None:
        return Check("clock", "warn", "the server sent no Date header: clock skew unknown")
    skew = parsedate_to_datetime(date) - local
    seconds = skew.total_seconds()
    if abs(skew) > MAX_SKEW:
        return Check(
            "clock",
            "warn",
            f"this clock is {abs(seconds):.0f} s {'behind' if seconds > 0 else 'ahead of'} the server's: "
            "token expiry and presigned URLs are judged by the server's time",
            "synchronize the clock (NTP: `timedatectl set-ntp true`, chrony)",
        )
    return Check("clock", "ok", f"within {MAX_SKEW.seconds} s of the server's ({seconds:+.0f} s)")


def _token(whoami: httpx.Response, *, presented: bool) -> list[Check]:
    body = _json(whoami)
    if whoami.status_code == 401:
        message = body.get("error", {}).get("message", "refused")
        if presented:
            return [
                Check(
                    "token",
                    "fail",
                    f"the token was refused: {message}",
                    "get a new token from an admin (`lorareg token create NAME --scope read|write`), then "
                    "`lorareg login --with-token TOKEN` or set LOREG_TOKEN",
                )
            ]
        return [
            Check(
                "token",
                "warn",
                "no token: the registry requires one, only public repositories can be read",
                "`lorareg login --with-token TOKEN` or set LOREG_TOKEN",
            )
        ]
    if whoami.status_code != 200:
        return [Check("token", "fail", f"whoami answered {whoami.status_code}: {whoami.text[:200]}")]
    if body["auth"] == "off":
        return [Check("token", "ok", "the registry needs no token (LOREG_AUTH=off): everyone is an admin")]
    namespaces = ", ".join(body["namespaces"]) if body["namespaces"] else "every namespace"
    return [Check("token", "ok", f"{body['name']}: {body['scope']} scope, {namespaces}"), _expiry(body)]


def _expiry(whoami: dict[str, Any]) -> Check:
    if whoami.get("expires_at") is None:
        return Check("expiry", "ok", "the token does not expire")
    expires = datetime.fromisoformat(whoami["expires_at"])
    left = expires - datetime.now(UTC)
    if left < EXPIRY_WARNING:
        return Check(
            "expiry",
            "warn",
            f"the token expires in {left.days} d {left.seconds // 3600} h ({expires:%Y-%m-%d %H:%M} UTC)",
            "get a new token before then and `lorareg login --with-token TOKEN`",
        )
    return Check("expiry", "ok", f"the token expires on {expires:%Y-%m-%d}")


def _cache(cache: Path) -> Check:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as exc:
        return Check(
            "cache",
            "fail",
            f"cache directory {cache} is not writable: {exc.strerror or exc}",
            "set LOREG_CACHE to a directory you can write",
        )
    return Check("cache", "ok", f"{cache} is writable")


def _credentials(path: Path) -> Check:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return Check("credentials", "ok", f"no saved tokens ({path})")
    if mode & 0o077:
        return Check(
            "credentials",
            "fail",
            f"{path} holds tokens and is mode {mode:04o}: others on this machine can read them",
            f"chmod 600 {path}",
        )
    return Check("credentials", "ok", f"{path} is private (mode {mode:04o})")


COMMANDS = [doctor]
